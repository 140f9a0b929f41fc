"""dotfiles.py: cloning the repository here, what installing it does, and its errors."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from deepbox import dotfiles
from deepbox.cli import main
from deepbox.config import load_spec
from deepbox.errors import ConfigError, DeepboxError


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "dots"
    folder.mkdir()
    _git(folder, "init", "-q")
    (folder / ".bashrc").write_text("alias ll='ls -l'\n")
    (folder / ".config").mkdir()
    (folder / ".config" / "tool.toml").write_text("x = 1\n")
    (folder / "README.md").write_text("my dotfiles\n")
    _git(folder, "add", "-A")
    _git(folder, "commit", "-q", "-m", "dots")
    return folder


def test_without_an_install_script_the_top_level_dotfiles_are_linked(repo):
    plan = dotfiles.plan(repo)
    assert plan == dotfiles.Plan(links=(".bashrc", ".config"))
    assert plan.describe() == "linked .bashrc, .config into ~"


def test_the_first_install_script_in_the_dev_containers_order_runs(repo):
    (repo / "script").mkdir()
    (repo / "script" / "setup").write_text("#!/bin/sh\n")
    (repo / "bootstrap.sh").write_text("#!/bin/sh\n")
    (repo / "bootstrap.sh").chmod(0o755)
    assert dotfiles.plan(repo) == dotfiles.Plan(installer="bootstrap.sh", executable=True)
    assert dotfiles.plan(repo).command("/home/a") == "./bootstrap.sh"
    (repo / "install").write_text("echo not executable\n")
    assert dotfiles.plan(repo).command("/home/a") == "sh install"


def test_the_link_commands_replace_files_and_keep_real_folders(repo, tmp_path):
    home = tmp_path / "box-home"
    (home / ".config").mkdir(parents=True)
    (home / ".bashrc").write_text("the skeleton's\n")
    (home / "dotfiles").symlink_to(repo)
    done = subprocess.run(
        ["sh", "-c", dotfiles.plan(repo).command(str(home))], capture_output=True, text=True, check=True
    )
    assert (home / ".bashrc").resolve() == (repo / ".bashrc").resolve()
    assert (home / ".config").is_dir() and not (home / ".config").is_symlink()
    assert done.stdout == "deepbox: kept the folder ~/.config\n"


def test_urls_and_paths():
    assert dotfiles.is_url("https://github.com/me/dotfiles")
    assert dotfiles.is_url("git@github.com:me/dotfiles.git")
    assert not dotfiles.is_url("~/src/dotfiles")
    assert not dotfiles.is_url("../dotfiles")


def test_a_local_repository_is_cloned_with_its_committed_files(repo, make_project, tmp_path):
    (repo / "uncommitted.txt").write_text("not in the clone\n")
    spec = load_spec(make_project(f'dotfiles = "{repo}"\n'))
    clone = dotfiles.fetch(spec, tmp_path / "clone")
    assert (clone / ".bashrc").read_text() == "alias ll='ls -l'\n"
    assert not (clone / "uncommitted.txt").exists()
    with tarfile.open(fileobj=io.BytesIO(dotfiles.archive(clone))) as archive:
        names = archive.getnames()
    assert "dotfiles/.bashrc" in names and "dotfiles/.config/tool.toml" in names


def test_a_folder_that_is_not_a_repository_is_one_sentence(make_project, tmp_path):
    project = make_project('dotfiles = "my-dots"\n')
    (project / "my-dots").mkdir()
    with pytest.raises(ConfigError) as caught:
        dotfiles.fetch(load_spec(project), tmp_path)
    assert caught.value.message == (
        f"{project / 'deepbox.toml'}: dotfiles = 'my-dots' is not a git repository ({project / 'my-dots'} has no "
        ".git); name your dotfiles repository's folder or its URL."
    )


def test_a_url_that_does_not_clone_is_one_sentence(make_project, tmp_path):
    project = make_project(f'dotfiles = "file://{tmp_path}/nothing-here"\n')
    with pytest.raises(DeepboxError) as caught:
        dotfiles.fetch(load_spec(project), tmp_path)
    message = caught.value.message
    assert message.startswith(f"Cannot clone the dotfiles from file://{tmp_path}/nothing-here (")
    assert message.endswith(f"); fix dotfiles in {project / 'deepbox.toml'}, then run `deepbox up --dotfiles`.")


def test_up_dotfiles_without_the_setting_is_refused_before_anything_is_built(make_project, capsys):
    project = make_project("")
    assert main(["-C", str(project), "up", "--dotfiles"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"Error: `deepbox up --dotfiles` installs the dotfiles setting, and {project / 'deepbox.toml'} has none: "
        'set dotfiles = "URL or path of your dotfiles repository" there.'
    )
