"""The catalog's data model: one frozen record per framework, and small version helpers.

Everything here is plain data and pure functions, so the whole catalog is unit-testable without
Docker or a network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["ok", "refused"]
Tier = Literal["base", "heavy", "library", "tool"]

# Layer order: what is heavy and rarely changes first, so a change near the end rebuilds only the end.
TIERS: tuple[Tier, ...] = ("base", "heavy", "library", "tool")


def version_tuple(text: str) -> tuple[int, ...]:
    """'3.11' -> (3, 11); '2.5.*' -> (2, 5); leading digits of each part only ('1rc1' -> 1)."""
    parts: list[int] = []
    for part in text.split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: 'Scikit_Learn' -> 'scikit-learn'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution(requirement: str) -> str:
    """'tensorflow[and-cuda]==2.21.*' -> 'tensorflow' (normalized)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    return normalize(match.group() if match else requirement)


def series(text: str) -> str:
    """The major.minor series of a version: '2.5.1' -> '2.5'."""
    return ".".join(str(n) for n in version_tuple(text)[:2])


@dataclass(frozen=True)
class Release:
    """One release series the catalog knows (major.minor), and the Pythons it has wheels for."""

    series: str
    python_min: str = "3.8"
    python_max: str | None = None  # None: no known upper bound

    def supports_python(self, python: str) -> bool:
        version = version_tuple(python)[:2]
        if version < version_tuple(self.python_min):
            return False
        return self.python_max is None or version <= version_tuple(self.python_max)

    @property
    def python_range(self) -> str:
        return f"Python {self.python_min}" + (f"-{self.python_max}" if self.python_max else "+")


@dataclass(frozen=True)
class Framework:
    """A catalog entry: what to install for CPU and for CUDA, and how `up` checks it.

    `pip` is a tuple of requirement names; the first one is the framework's own package and
    carries the version pin ({pin} is replaced by the chosen specifier, e.g. '==2.5.*').
    """

    name: str
    description: str
    module: str  # imported by the verification step
    pip: tuple[str, ...] = ()
    cuda_pip: tuple[str, ...] | None = None  # None: the CPU packages also serve CUDA boxes; '{major}': 12, 13
    apt: tuple[str, ...] = ()  # Debian packages (system libraries, or the real source of the framework)
    depends: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    # Other distributions that provide the same module in a base image (tensorflow-gpu, opencv-contrib-python).
    dists: tuple[str, ...] = ()
    tier: Tier = "library"
    version: str = ""  # default series pin ('2.13' -> '==2.13.*'); '' leaves the choice to the resolver
    releases: tuple[Release, ...] = ()  # known series, oldest first; empty: any version, any Python 3.8+
    # The vendor index of its packages per device: 'cpu', or a CUDA tag such as 'cu128' ({cu} is
    # replaced). Which CUDA versions a release has there is found by resolving, never by a table.
    cpu_index_url: str | None = None
    cuda_index_url: str | None = None
    cuda_on_pypi: bool = False  # PyPI carries a CUDA build too (one CUDA version per release)
    cuda_devel: bool = False  # compiles CUDA code at build time: needs an nvidia/cuda devel base
    cuda_supported: bool = True
    # Python expression (with the module imported as `m`) telling whether a GPU is visible.
    gpu_check: str | None = None
    version_attr: str = "__version__"
    ports: tuple[int, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # Debian suites whose packages provide it (apt-sourced frameworks); empty: any base.
    suites: tuple[str, ...] = ()
    system_site_packages: bool = False  # its Python module comes from a Debian package
    # Constraints for building its sdist (old setup.py files import pkg_resources, gone in setuptools 81).
    build_constraints: tuple[str, ...] = ()
    status: Status = "ok"
    refusal: str = ""  # the sentence `up` says when it refuses the entry
    replacement: str = ""  # the modern framework to use instead (a catalog name)
    notes: str = ""

    def packages(self, device: str, cuda_major: int | None = None) -> tuple[str, ...]:
        """Its requirements for a device; '{major}' in a CUDA one becomes the CUDA major ('jax[cuda13]')."""
        if device == "cuda" and self.cuda_pip is not None:
            return tuple(p.replace("{major}", str(cuda_major or 12)) for p in self.cuda_pip)
        return self.pip

    def release(self, version: str) -> Release | None:
        wanted = series(version)
        return next((r for r in self.releases if r.series == wanted), None)

    @property
    def default_release(self) -> Release | None:
        return self.release(self.version) if self.version else None


@dataclass(frozen=True)
class Request:
    """One `frameworks` entry as the user wrote it: a name and an optional pip specifier."""

    name: str
    specifier: str = ""  # '==2.5.*', '>=2.4,<2.6', '' for the catalog's default

    @classmethod
    def parse(cls, text: str) -> Request:
        match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*", text)
        if not match:
            return cls(text.strip())
        return cls(match.group(1), match.group(2).replace(" ", ""))


@dataclass(frozen=True)
class Selected:
    """A framework as it goes into the box: its record, the chosen pin and concrete packages."""

    framework: Framework
    specifier: str  # '' when neither the user nor the catalog pins it
    packages: tuple[str, ...]
    index_urls: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()
    provided: str = ""  # the version the base image's Python already has; "" when deepbox installs it

    @property
    def name(self) -> str:
        return self.framework.name


@dataclass(frozen=True)
class Plan:
    """The resolved catalog for one box: what the Dockerfile installs, layer by layer."""

    selected: tuple[Selected, ...]
    device: str = "cpu"
    cuda_major: int | None = None  # the CUDA major the CUDA packages were chosen for
    python: str = "3.11"
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()
    system_site_packages: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def frameworks(self) -> list[Framework]:
        return [item.framework for item in self.selected]

    def tier(self, tier: Tier) -> list[Selected]:
        return [item for item in self.selected if item.framework.tier == tier]
