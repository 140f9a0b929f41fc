"""Shared by the IDE and dev-container tests: a box endpoint, file snapshots, golden-file comparison."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from deepbox.model import UpResult


def up_result(**changes: object) -> UpResult:
    """What `deepbox up` reports for the box 'demo' (changes override fields)."""
    result = UpResult(
        box="demo",
        alias="deepbox-demo",
        action="running",
        image="deepbox/demo:0123456789ab",
        host="127.0.0.1",
        port=2222,
        user="alice",
        workspace="/workspace",
        key=str(Path.home() / ".local/share/deepbox/keys/demo/id_ed25519"),
        python="/opt/venv/bin/python",
        python_version="3.11.2",
    )
    return dataclasses.replace(result, **changes)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under folder: its bytes, inode and mtime (a rewrite, even of the same bytes, changes them)."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def check_golden(golden: Path, case: str, files: dict[str, bytes]) -> None:
    """Compare files with golden/case/; DEEPBOX_UPDATE_GOLDEN=1 rewrites the golden files instead."""
    folder = golden / case
    if os.environ.get("DEEPBOX_UPDATE_GOLDEN"):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            stale.unlink()
        for name, data in files.items():
            (folder / name).write_bytes(data)
    assert folder.is_dir(), f"no golden folder {folder}: run with DEEPBOX_UPDATE_GOLDEN=1"
    assert sorted(path.name for path in folder.iterdir()) == sorted(files)
    for name, data in files.items():
        expected = (folder / name).read_bytes()
        assert data == expected, f"{case}/{name} changed; review and regenerate with DEEPBOX_UPDATE_GOLDEN=1"
