"""What a base image already has: its distribution, PATH, Python and Python packages.

A Deepo image, an NVIDIA or PyTorch image or a snapshot already carries a Python with frameworks;
the box uses those instead of installing a second copy. What an image has is read once, by a
throwaway container of it (no network, removed at once), and kept per image id in deepbox's data
folder: an image id names fixed content, so the facts never go stale.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from deepbox import paths
from deepbox.catalog.model import normalize
from deepbox.errors import DeepboxError

if TYPE_CHECKING:
    from deepbox.engine import Engine, Image
    from deepbox.site import Site

# An image reference as Docker reads it (distribution/reference): [registry[:port]/]name[:tag][@digest],
# the name's components lowercase.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"  # one part of a host name
_REGISTRY = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])"
_REFERENCE = re.compile(
    rf"(?:{_REGISTRY}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*(?::\w[\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's, for images without one

# Runs in the base image with /bin/sh. The Python part stays valid for Python 3.5 (Ubuntu 16.04's).
PROBE = r"""
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "os=${ID:-}"
echo "os_like=${ID_LIKE:-}"
echo "codename=${VERSION_CODENAME:-${UBUNTU_CODENAME:-}}"
echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/^glibc //')"
echo "arch=$(uname -m)"
python=$(command -v python3 || true)
echo "python_path=$python"
if [ -n "$python" ]; then "$python" - <<'EOF'
import sys
print("python=%d.%d.%d" % sys.version_info[:3])
try:
    from importlib import metadata
    found = [(d.metadata["Name"], d.version) for d in metadata.distributions()]
except ImportError:
    try:
        import pkg_resources
        found = [(d.project_name, d.version) for d in pkg_resources.working_set]
    except ImportError:
        found = []
for name, version in found:
    if name:
        print("package=%s %s" % (name, version))
EOF
fi
"""


@dataclass(frozen=True)
class BaseFacts:
    """What one base image has. `python` is None when it has no python3 (deepbox then installs one)."""

    image_id: str
    path: str = DEFAULT_PATH
    os: str = ""  # debian, ubuntu, ...
    os_like: str = ""  # ID_LIKE of os-release: "debian" for Ubuntu and other derivatives
    codename: str = ""  # bookworm, focal, ...
    glibc: str = ""  # "2.36"
    arch: str = "x86_64"  # the engine's machine, as uname -m says
    python: str | None = None  # "3.11.2"
    python_path: str = ""
    packages: dict[str, str] = field(default_factory=dict)  # normalized distribution name -> version

    @property
    def apt_based(self) -> bool:
        """Debian, Ubuntu or a derivative: deepbox installs sshd and Python with apt-get."""
        return "debian" in (self.os, *self.os_like.split()) or "ubuntu" in self.os_like.split()

    @property
    def python_series(self) -> str | None:
        return ".".join(self.python.split(".")[:2]) if self.python else None


def check_reference(base: str, source: str) -> None:
    """Refuse a base that is not an image reference, before an engine is asked about it (Docker answers
    such a name with a 400, which reads like an engine fault)."""
    if _REFERENCE.fullmatch(base):
        return
    lowered = base.lower()
    hint = f'; did you mean "{lowered}"?' if lowered != base and _REFERENCE.fullmatch(lowered) else "."
    raise DeepboxError(
        f'base = "{base}" in {source} is not an image reference: write it as [REGISTRY/]NAME[:TAG], the name in '
        f'lowercase letters, digits and . _ - (such as "debian:bookworm-slim"){hint}'
    )


def parse(image_id: str, env: list[str], output: str) -> BaseFacts:
    """BaseFacts from the image's configured environment and the probe's output."""
    path = next((entry.split("=", 1)[1] for entry in env if entry.startswith("PATH=")), DEFAULT_PATH)
    values: dict[str, str] = {}
    packages: dict[str, str] = {}
    for line in output.splitlines():
        key, _, value = line.partition("=")
        if key == "package":
            name, _, version = value.partition(" ")
            packages[normalize(name)] = version.strip()
        elif key in ("os", "os_like", "codename", "glibc", "arch", "python", "python_path"):
            values[key] = value.strip()
    return BaseFacts(
        image_id=image_id,
        path=path or DEFAULT_PATH,
        os=values.get("os", ""),
        os_like=values.get("os_like", ""),
        codename=values.get("codename", ""),
        glibc=values.get("glibc", ""),
        arch=values.get("arch") or "x86_64",
        python=values.get("python") or None,
        python_path=values.get("python_path", ""),
        packages=packages,
    )


def facts(engine: Engine, base: str, image: Image | None = None) -> BaseFacts:
    """The facts of a base image on the engine (read once per image id, then from deepbox's data folder).
    `image`: the base as the caller already looked it up."""
    image = image or engine.image(base)
    if image is None:
        raise DeepboxError(f"Base image '{base}' is not on the engine; `deepbox up` pulls it.")
    image_id = str(image.id)
    cache = paths.base_facts(image_id)
    try:
        return BaseFacts(**json.loads(cache.read_text()))
    except (OSError, ValueError, TypeError):
        pass  # not read yet (or from an older deepbox): probe the image
    try:
        output = engine.run_once(
            image_id,
            [PROBE],
            entrypoint=["/bin/sh", "-c"],
            user="0",
            network="none",
            labels={"deepbox.probe": "1"},
        )
    except DeepboxError as exc:
        raise DeepboxError(
            f"Base image '{base}' could not be inspected ({exc.message.rstrip('.')}); deepbox needs a Debian or "
            "Ubuntu based image with /bin/sh: set base in deepbox.toml to one."
        ) from exc
    found = parse(image_id, list(image.env), output)
    if not found.apt_based:
        raise DeepboxError(
            f"Base image '{base}' is {found.os or 'not a Linux distribution deepbox knows'}, not Debian or Ubuntu "
            "based, and deepbox installs the box's SSH server with apt-get: set base in deepbox.toml to a Debian "
            "or Ubuntu based image."
        )
    from deepbox.fsutil import atomic_write

    atomic_write(cache, json.dumps(asdict(found), sort_keys=True))
    return found


def known_facts(site: Site, base: str) -> BaseFacts | None:
    """The facts when the engine answers and already has the base image; None otherwise. Pulls nothing,
    so `deepbox dockerfile` works offline (it then says the base was not read)."""
    try:
        engine = site.engine()
        image = engine.image(base)
        return facts(engine, base, image) if image is not None else None
    except DeepboxError:
        return None
