"""Offline base images: a minimal Debian or Ubuntu root file system from the distribution's packages,
imported into Docker.

For hosts that cannot reach a container registry (air-gapped servers, locked-down CI). The image
gets the apt sources the distribution's own images have (updates and security included), so the
box's `apt-get install` finds every package and its security fixes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepbox import hostos
from deepbox.engine import Engine
from deepbox.errors import DeepboxError

DEBIAN_SUITES = ("bullseye", "bookworm", "trixie")
UBUNTU_SUITES = ("bionic", "focal", "jammy", "noble")  # 18.04, 20.04, 22.04, 24.04
SUITES = (*DEBIAN_SUITES, *UBUNTU_SUITES)
UBUNTU_KEYRING = Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg")
SCRIPTS = Path("/usr/share/debootstrap/scripts")


@dataclass(frozen=True)
class Distribution:
    name: str  # debian | ubuntu
    mirror: str
    components: str
    keyring: Path | None = None  # None: debootstrap's default (Debian's archive keyring)


DEBIAN = Distribution("debian", "http://deb.debian.org/debian", "main")
UBUNTU = Distribution(
    "ubuntu", "http://archive.ubuntu.com/ubuntu", "main restricted universe multiverse", UBUNTU_KEYRING
)
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"


def distribution(suite: str) -> Distribution:
    return UBUNTU if suite in UBUNTU_SUITES else DEBIAN


def default_tag(suite: str) -> str:
    return f"deepbox/{distribution(suite).name}:{suite}"


def debootstrap_script(suite: str, scripts: Path = SCRIPTS) -> str | None:
    """The script to pass when the installed debootstrap predates an Ubuntu release (bookworm's knows
    no noble): Ubuntu's releases all use its generic script, gutsy. None: debootstrap's own choice."""
    if distribution(suite) is not UBUNTU or (scripts / suite).exists():
        return None
    return str(scripts / "gutsy")


def sources_list(suite: str, mirror: str | None = None) -> str:
    """/etc/apt/sources.list as the distribution's own images have it: release, updates, security.

    With a mirror of one's own, security updates come from that mirror too for Ubuntu (its mirrors
    carry -security); Debian's security archive is separate, so it is listed only with the default."""
    dist = distribution(suite)
    base = mirror or dist.mirror
    lines = [f"deb {base} {suite} {dist.components}", f"deb {base} {suite}-updates {dist.components}"]
    if dist is UBUNTU:
        lines.append(f"deb {base} {suite}-security {dist.components}")
    elif mirror is None or mirror == dist.mirror:
        lines.append(f"deb {DEBIAN_SECURITY} {suite}-security {dist.components}")
    return "\n".join(lines) + "\n"


def bootstrap(
    engine: Engine,
    suite: str,
    tag: str,
    mirror: str | None,
    on_line: Callable[[str], None],
    keyring: Path | None = None,
) -> str:
    """debootstrap --variant=minbase SUITE, then `docker import` it as TAG; returns the tag."""
    dist = distribution(suite)
    if shutil.which("debootstrap") is None:
        raise DeepboxError("debootstrap is not installed: run `sudo apt-get install debootstrap` and try again.")
    if not hostos.is_root():
        raise DeepboxError(
            "debootstrap needs root: run `sudo deepbox base bootstrap` (the image is then on the engine for everyone)."
        )
    keyring = keyring or dist.keyring
    if keyring is not None and not keyring.is_file():
        raise DeepboxError(
            f"{dist.name.capitalize()}'s archive key {keyring} is missing, so the packages cannot be verified: "
            "install the ubuntu-keyring package, or pass --keyring with a copy of "
            "ubuntu-archive-keyring.gpg (from the ubuntu-keyring package)."
        )
    engine.info()  # fail early, before minutes of downloads, when there is no engine
    source = mirror or dist.mirror
    with tempfile.TemporaryDirectory(prefix="deepbox-rootfs-") as workdir:
        root = Path(workdir) / "rootfs"
        args = ["debootstrap", "--variant=minbase"]
        if keyring is not None:
            args.append(f"--keyring={keyring}")
        script = debootstrap_script(suite)
        process = subprocess.Popen(
            [*args, suite, str(root), source, *([script] if script else [])],
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
                f"debootstrap of {dist.name.capitalize()} {suite} from {source} failed; check that the suite name "
                "and the mirror are right (--mirror) and that the mirror is reachable.",
                detail="\n".join(tail),
            )
        (root / "etc/apt/sources.list").write_text(sources_list(suite, mirror))
        archive = Path(workdir) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        on_line(f"Importing {archive.stat().st_size // 2**20} MB as {tag}")
        with archive.open("rb") as stream:
            engine.import_image(stream, tag)
    return tag
