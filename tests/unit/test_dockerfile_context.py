"""dockerfile.write_context: the complete build context as a folder, never over the user's own files."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest

from deepbox import dockerfile
from deepbox.cli import main
from deepbox.config import load_spec
from deepbox.dockerfile import CONTEXT_LIST, render, write_context
from deepbox.errors import DeepboxError

from .helpers import snapshot


@pytest.fixture
def context(make_project, tmp_path):
    cert = tmp_path / "corp.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n")
    project = make_project(
        f'frameworks = ["numpy", "darknet"]\njupyter = true\n[build]\nca_certificates = ["{cert}"]\n'
    )
    (project / "requirements.txt").write_text("rich\n")
    return render(load_spec(project))


def files_in(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def copy_sources(text: str) -> list[str]:
    """The context paths the Dockerfile's COPY instructions read."""
    sources = []
    for line in text.splitlines():
        if line.startswith("COPY "):
            words = [word for word in shlex.split(line)[1:] if not word.startswith("--")]
            sources += words[:-1]
    return sources


def test_the_folder_holds_the_dockerfile_and_every_file_it_copies(context, tmp_path):
    folder = tmp_path / "out" / "context"

    written = write_context(context, folder)

    assert written == sorted(["Dockerfile", *context.files])
    assert files_in(folder) == {**dockerfile.context_files(context), CONTEXT_LIST: (folder / CONTEXT_LIST).read_bytes()}
    assert {"deepbox/requirements.txt", "deepbox/certs/extra-0.crt", "deepbox/jupyter.sh"} <= set(written)
    sources = copy_sources(context.dockerfile)
    assert len(sources) >= 8
    for source in sources:
        assert (folder / source).exists(), source
    assert stat.S_IMODE((folder / "deepbox/entrypoint.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "Dockerfile").stat().st_mode) == 0o644
    assert (folder / CONTEXT_LIST).read_text().splitlines()[2:] == written
    assert [path.name for path in folder.parent.iterdir()] == ["context"], "no staging folder is left"


def test_a_second_output_replaces_the_first_and_drops_files_no_longer_copied(context, make_project, tmp_path):
    folder = tmp_path / "context"
    write_context(context, folder)
    smaller = render(load_spec(make_project('frameworks = ["numpy"]\n', folder="small")))

    write_context(smaller, folder)

    assert set(files_in(folder)) == {"Dockerfile", CONTEXT_LIST, *smaller.files}
    assert not (folder / "deepbox/jupyter.sh").exists()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".context")) == []


def test_an_empty_folder_is_used(context, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    write_context(context, folder)
    assert (folder / "Dockerfile").read_text() == context.dockerfile


def test_a_folder_of_the_users_is_refused_and_left_alone(context, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = snapshot(folder)

    with pytest.raises(DeepboxError) as caught:
        write_context(context, folder)

    assert str(caught.value) == (
        f"{folder} is not empty and is not a build context deepbox wrote; name a new or empty folder."
    )
    assert snapshot(folder) == before


@pytest.mark.parametrize("extra", ["notes.txt", "deepbox/mine.sh", "deepbox/certs/mine/"])
def test_a_file_added_to_a_written_context_is_never_overwritten(context, tmp_path, extra):
    folder = tmp_path / "context"
    write_context(context, folder)
    if extra.endswith("/"):
        (folder / extra).mkdir()
    else:
        (folder / extra).write_text("mine")
    before = snapshot(folder)

    with pytest.raises(DeepboxError) as caught:
        write_context(context, folder)

    assert str(caught.value) == (
        f"{folder} holds {extra.rstrip('/')}, which deepbox did not write there; move it away or name another folder."
    )
    assert snapshot(folder) == before


def test_a_file_in_place_of_the_folder_is_refused(context, tmp_path):
    target = tmp_path / "context"
    target.write_text("mine")
    with pytest.raises(DeepboxError) as caught:
        write_context(context, target)
    assert str(caught.value) == f"{target} is a file, not a folder; name a new or empty folder."
    assert target.read_text() == "mine"


def test_a_failed_write_keeps_the_previous_context(context, make_project, tmp_path, monkeypatch):
    folder = tmp_path / "context"
    write_context(context, folder)
    before = snapshot(folder)
    smaller = render(load_spec(make_project('frameworks = ["numpy"]\n', folder="small")))
    original = Path.write_bytes
    calls = []

    def fail_on_the_third(self, data):
        calls.append(self)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", fail_on_the_third)

    with pytest.raises(DeepboxError) as caught:
        write_context(smaller, folder)

    assert str(caught.value) == (
        f"Cannot write the build context to {folder} (No space left on device); it is unchanged: fix that and "
        "run the command again."
    )
    monkeypatch.undo()
    assert snapshot(folder) == before
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".context")] == []


def test_dockerfile_output_writes_the_context_for_frameworks(tmp_path, capsys):
    folder = tmp_path / "numpy-context"
    assert main(["dockerfile", "--frameworks", "numpy", "--output", str(folder)]) == 0
    out, err = capsys.readouterr()
    files = (folder / CONTEXT_LIST).read_text().splitlines()[2:]
    assert out == (
        f"Wrote the build context to {folder} (the Dockerfile and {len(files) - 1} files it copies); "
        f"`docker build {folder}` builds it.\n"
    )
    assert err == ""
    for source in copy_sources((folder / "Dockerfile").read_text()):
        assert (folder / source).exists(), source
