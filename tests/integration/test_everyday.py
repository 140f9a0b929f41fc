"""Living in a box: sudo when asked for, packages installed by hand reported against deepbox.lock, and
the user's dotfiles installed from a git repository. One box, made once; the tests below share it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import PREFIX, Project, remove_box

OWNER = (4242, 4243)
SUDO_OFF = (
    "sudo: sudo is off in this box; set sudo = true under [user] in deepbox.toml and run `deepbox up`, or list "
    "the system packages you need in apt = [...] there."
)
INSTALL_SH = """#!/bin/sh
set -e
echo run >>"$HOME/.dotfiles-runs"
echo 'export DOTFILES_GREETING="hello from dotfiles"' >>"$HOME/.bashrc"
echo "installed as $(id -un) in $(pwd)"
"""


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _commit_install_script(repo: Path, text: str) -> None:
    script = repo / "install.sh"
    script.write_text(text)
    script.chmod(0o755)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "install.sh")


def _config(sudo: bool, repo: Path) -> str:
    return f'dotfiles = "{repo}"\n[user]\nsudo = {"true" if sudo else "false"}'


@pytest.fixture(scope="module")
def box(tmp_path_factory, home, docker_client):
    root = tmp_path_factory.mktemp("everyday")
    repo = root / "my-dotfiles"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / ".vimrc").write_text("set number\n")  # not linked: install.sh takes precedence
    _commit_install_script(repo, INSTALL_SH)
    path = root / "everyday"
    path.mkdir()
    project = Project(path, f"{PREFIX}-everyday", home)
    project.repo = repo
    project.write_config(_config(True, repo))
    os.chown(path, *OWNER)
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    project.up = json.loads(result.out)
    yield project
    remove_box(docker_client, project.name)


def test_sudo_works_when_on_and_sshd_still_refuses_root_and_passwords(box, docker_client):
    result = box.ssh("sudo -n true && sudo -n id -u")
    assert result.code == 0, result.err
    assert result.out.strip() == "0"
    assert result.err == ""  # no warning from sudo (RLIMIT_CORE, host name)

    container = docker_client.containers.get(box.alias)
    code, output = container.exec_run(["/usr/sbin/sshd", "-T", "-f", "/run/deepbox/sshd_config"])
    assert code == 0, output
    settings = dict(line.split(" ", 1) for line in output.decode().splitlines() if " " in line)
    assert settings["permitrootlogin"] == "no"
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["authenticationmethods"] == "publickey"
    assert settings["allowusers"] == box.up["user"]
    code, output = container.exec_run(["stat", "-c", "%a %U", "/etc/sudoers.d/deepbox"])
    assert output.decode().split() == ["440", "root"]


def test_dotfiles_are_installed_on_the_first_up_as_the_box_user(box):
    assert box.up["dotfiles"] == "ran install.sh"
    result = box.ssh("cat ~/.dotfiles-runs; stat -c %U ~/dotfiles/install.sh; bash -ic 'echo $DOTFILES_GREETING'")
    assert result.code == 0, result.err
    assert result.out.split("\n")[:3] == ["run", box.up["user"], "hello from dotfiles"]
    assert box.ssh("test -L ~/.vimrc").code == 1  # an install script, so nothing is linked

    # A plain `up` leaves them; `up --dotfiles` installs them again.
    again = box.deepbox("up", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["dotfiles"] is None
    assert box.ssh("cat ~/.dotfiles-runs").out.split() == ["run"]
    forced = box.deepbox("up", "--dotfiles", "--json")
    assert forced.code == 0, forced.err
    assert json.loads(forced.out)["dotfiles"] == "ran install.sh"
    assert "Installing the dotfiles from" in forced.err
    assert box.ssh("cat ~/.dotfiles-runs").out.split() == ["run", "run"]


def test_a_failing_install_script_is_one_sentence_and_the_box_stays_up(box, docker_client):
    _commit_install_script(box.repo, "#!/bin/sh\necho 'cannot find my plugin manager'\nexit 3\n")
    try:
        failed = box.deepbox("up", "--dotfiles")
        assert failed.code == 1
        lines = failed.err.strip().splitlines()
        assert lines[-1] == (
            f"Error: The dotfiles' install.sh exited with status 3 in box '{box.name}' (its output is above); the "
            f"box is up: fix it in {box.repo}, then run `deepbox up --dotfiles`."
        )
        assert "cannot find my plugin manager" in lines[-2]
        assert docker_client.containers.get(box.alias).status == "running"
        # Tried once: a plain `up` does not run it again.
        assert box.deepbox("up").code == 0
    finally:
        _commit_install_script(box.repo, INSTALL_SH)


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A tiny pure-Python wheel, made by hand: no build backend or index needed."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"__version__ = '{version}'\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def record(data: str) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data.encode()).digest()).rstrip(b"=").decode()
        return f"sha256={digest},{len(data.encode())}"

    files[f"{dist}/RECORD"] = "".join(f"{path},{record(data)}\n" for path, data in files.items()) + f"{dist}/RECORD,,\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def test_status_name_reports_packages_installed_in_the_box(box):
    clean = box.deepbox("status", box.name)
    assert clean.code == 0, clean.err
    assert (
        f"Box '{box.name}' has the packages deepbox installed from deepbox.lock, none added or changed since."
        in clean.out
    )

    wheel = _wheel(box.path, "deepbox_drift_probe", "0.1.0")
    installed = box.ssh(f"pip install -q --no-index --no-deps /workspace/{wheel.name}")
    assert installed.code == 0, installed.err
    drifted = box.deepbox("status", box.name, "--json")
    assert drifted.code == 0, drifted.err
    (row,) = json.loads(drifted.out)
    assert row["drift"] == {"added": {"deepbox-drift-probe": "0.1.0"}, "changed": {}, "removed": {}}
    text = box.deepbox("status", box.name)
    assert (
        f"Box '{box.name}' has 1 package that differs from deepbox.lock: added deepbox-drift-probe 0.1.0; they last "
        "until the box is recreated (a settings change, `deepbox rm`): put the ones to keep in pip = [...] in "
        "deepbox.toml." in " ".join(text.out.split())
    )
    # The listing of every box stays quick: it runs nothing in the boxes.
    listing = box.deepbox("status", "--json")
    assert {row["box"]: row["drift"] for row in json.loads(listing.out)}[box.name] is None

    assert box.ssh("pip uninstall -q -y deepbox_drift_probe").code == 0
    assert "none added or changed since" in box.deepbox("status", box.name).out


def test_sudo_off_says_how_to_turn_it_on_and_the_dotfiles_stay(box, docker_client):
    runs = box.ssh("cat ~/.dotfiles-runs").out
    box.write_config(_config(False, box.repo))
    result = box.deepbox("up", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["action"] == "recreated"
    assert json.loads(result.out)["dotfiles"] is None  # the home volume remembers them

    refused = box.ssh("sudo -n true")
    assert refused.code == 1
    assert refused.err.strip() == SUDO_OFF
    container = docker_client.containers.get(box.alias)
    assert container.exec_run(["test", "-e", "/etc/sudoers.d/deepbox"]).exit_code == 1
    assert box.ssh("cat ~/.dotfiles-runs").out == runs
