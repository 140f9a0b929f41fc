"""Offline base images: a minimal Debian root file system from Debian's packages, imported into Docker.

For hosts that cannot reach a container registry (air-gapped servers, locked-down CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from deepbox.engine import Engine
from deepbox.errors import DeepboxError

DEFAULT_MIRROR = "http://deb.debian.org/debian"
ARCHIVE_MIRROR = "http://archive.debian.org/debian"
SUITES = ("bookworm", "bullseye", "trixie")


def default_tag(suite: str) -> str:
    return f"deepbox/debian:{suite}"


def bootstrap(suite: str, tag: str, mirror: str, on_line: Callable[[str], None]) -> str:
    """debootstrap --variant=minbase SUITE, then `docker import` it as TAG; returns the tag."""
    if shutil.which("debootstrap") is None:
        raise DeepboxError("debootstrap is not installed: run `sudo apt-get install debootstrap` and try again.")
    if os.geteuid() != 0:
        raise DeepboxError(
            "debootstrap needs root: run `sudo deepbox base bootstrap` (the image is then on the engine for everyone)."
        )
    engine = Engine()  # fail early, before minutes of downloads, when there is no engine
    with tempfile.TemporaryDirectory(prefix="deepbox-rootfs-") as workdir:
        root = Path(workdir) / "rootfs"
        process = subprocess.Popen(
            ["debootstrap", "--variant=minbase", suite, str(root), mirror],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        tail: list[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            tail = [*tail[-19:], line.rstrip()]
            on_line(line.rstrip())
        if process.wait() != 0:
            raise DeepboxError(
                f"debootstrap of Debian {suite} from {mirror} failed; check that the suite name and "
                "the mirror are right (--mirror) and that the mirror is reachable.",
                detail="\n".join(tail),
            )
        archive = Path(workdir) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        on_line(f"Importing {archive.stat().st_size // 2**20} MB as {tag}")
        with archive.open("rb") as stream:
            engine.import_image(stream, tag)
    return tag
