"""Locks: exactly what a box installs, resolved at once for its Python, platform and device.

`deepbox.lock`, in the project and meant to be committed, holds one variant per device the box was
locked for: "cpu", or "cuda13", "cuda12"... A variant records what it was resolved from (a digest
of the settings, the Python, the platform, the base image's own packages), the date the resolver
was held to (nothing uploaded later is seen, so a re-lock is reproducible) and every package with
its tier, file URL and SHA-256. Each tier's layer installs exactly its part, hashes required.

Resolving is resolver.py's (uv); which CUDA a variant gets, cudachoice.py's. This module decides
when to resolve (missing, stale, --upgrade, --frozen) and keeps the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepbox import catalog, hostos
from deepbox.catalog import cuda as cuda_versions
from deepbox.catalog.model import TIERS, distribution, version_tuple
from deepbox.cudachoice import Host, choose_existing, cuda_version, lock_variant
from deepbox.errors import DeepboxError
from deepbox.resolver import PYPI, Job, Package, Resolution, Resolver, resolve_uv, uv_version

if TYPE_CHECKING:
    from deepbox.baseimage import BaseFacts
    from deepbox.config import Spec
    from deepbox.gpu import Gpu

LOCK_FILE = "deepbox.lock"
FORMAT = 1
# glibc versions uv names platforms by (x86_64-manylinux_2_36); the base's glibc picks the newest <= it.
MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
HEADER = (
    "# {file}: exactly what box '{box}' installs, per variant. Written by `deepbox lock` (and by\n"
    "# `deepbox up` when missing or stale); commit it. `deepbox lock --check` fails when deepbox.toml\n"
    "# changed since; `deepbox lock --upgrade [PACKAGE]` moves forward. Do not edit by hand.\n"
)


@dataclass(frozen=True)
class Variant:
    """One locked environment: for the CPU, or for one CUDA major."""

    key: str  # cpu | cuda13 | cuda12 | ...
    config: str  # digest of the settings it was resolved from (see config_digest)
    python: str
    platform: str
    base: str  # digest of the base image's packages it was resolved against ("" when none)
    cuda: str  # the CUDA version its packages carry ("13.0"); "" on the CPU
    driver: str  # the NVIDIA driver the CUDA choice was made for ("" when none was seen)
    exclude_newer: str  # the resolver saw nothing uploaded after this moment
    resolver: str
    packages: tuple[Package, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "packages": [asdict(package) for package in self.packages]}

    def tier(self, tier: str) -> tuple[Package, ...]:
        return tuple(package for package in self.packages if package.tier == tier)

    @property
    def pins(self) -> dict[str, str]:
        return {package.name: package.version for package in self.packages}

    @property
    def cuda_major(self) -> int | None:
        return int(self.key.removeprefix("cuda")) if self.key.startswith("cuda") else None

    @property
    def min_driver(self) -> str:
        major = self.cuda_major
        return cuda_versions.MIN_DRIVER_COMPAT[major] if major else ""


# The lock file -----------------------------------------------------------------------------------


def path(project: Path, name: str = LOCK_FILE) -> Path:
    """The lock file `name` in the project: deepbox.lock, or a [box.NAME] box's own (Spec.lock_file)."""
    return project / name


def read(project: Path, name: str = LOCK_FILE) -> dict[str, Variant]:
    """The variants in the project's lock file; {} when there is none."""
    file = path(project, name)
    if not file.exists():
        return {}
    try:
        data = tomllib.loads(file.read_text())
        if data.get("version") != FORMAT:
            raise DeepboxError(f"{file} is from another deepbox version; delete it and run `deepbox lock`.")
        variants = {}
        for key, raw in (data.get("variants") or {}).items():
            packages = tuple(Package(**item) for item in raw.pop("packages", []))
            variants[key] = Variant(key=key, packages=packages, **raw)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, TypeError) as exc:
        raise DeepboxError(
            f"{file} cannot be read ({exc}); delete it and run `deepbox lock` to write it again."
        ) from exc
    return variants


def write(project: Path, box: str, variants: dict[str, Variant], name: str = LOCK_FILE) -> None:
    import tomli_w

    from deepbox.fsutil import atomic_write

    data = {
        "version": FORMAT,
        "variants": {
            key: {k: v for k, v in variant.as_dict().items() if k != "key"} for key, variant in sorted(variants.items())
        },
    }
    target = path(project, name)
    atomic_write(target, HEADER.format(file=name, box=box) + "\n" + tomli_w.dumps(data))
    if hostos.is_root():  # root locking someone's project: the file is theirs, like the project
        owner = project.stat()
        os.chown(target, owner.st_uid, owner.st_gid)


# What a variant is resolved from ------------------------------------------------------------------


def config_digest(spec: Spec) -> str:
    """A digest of the settings that decide what is installed: only deepbox.toml and the project's
    requirements, so `deepbox lock --check` needs neither Docker nor the network."""
    from deepbox.dockerfile import project_requirements

    requirements = project_requirements(spec)
    wheels = sorted(
        f"{link}/{wheel.name}"
        for link in spec.find_links
        if "://" not in link and spec.project_path(link).is_dir()
        for wheel in spec.project_path(link).iterdir()
    )
    material = {
        "frameworks": sorted(catalog.canonical_names(spec.framework_names)),
        "device": spec.device,
        "cuda": spec.cuda if spec.device == "cuda" else "",
        "python": spec.python or "",
        "pip": list(spec.pip),
        "requirements": requirements[1].decode(errors="replace") if requirements else "",
        "index_url": spec.index_url or "",
        "extra_index_urls": list(spec.extra_index_urls),
        "find_links": [link for link in spec.find_links if "://" in link] + wheels,
        "framework_indexes": spec.framework_indexes,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def base_digest(facts: BaseFacts | None, plan: catalog.Plan) -> str:
    """The base image's own packages, when the box uses its Python (they constrain the resolution)."""
    if facts is None or not plan.system_site_packages or not facts.packages:
        return ""
    return hashlib.sha256(json.dumps(facts.packages, sort_keys=True).encode()).hexdigest()[:16]


def platform_for(facts: BaseFacts | None) -> str:
    """uv's platform for the base: its architecture and the newest manylinux tag its glibc runs
    (without facts: x86_64 and bookworm's glibc, the default base's)."""
    arch = facts.arch if facts else "x86_64"
    glibc = version_tuple(facts.glibc) if facts and facts.glibc else (2, 36)
    tag = max((minor for minor in MANYLINUX if (2, minor) <= glibc), default=MANYLINUX[0])
    return f"{'aarch64' if arch in ('aarch64', 'arm64') else 'x86_64'}-manylinux_2_{tag}"


def _plain_version(version: str) -> bool:
    """A version an index can have (Debian's '1.24.2' yes, '1.24.2+dfsg' or '0.0.0-unknown' no)."""
    from packaging.version import InvalidVersion, Version

    try:
        return not Version(version).local
    except InvalidVersion:
        return False


def job_for(
    spec: Spec,
    plan: catalog.Plan,
    facts: BaseFacts | None,
    target_python: str,
    platform: str,
    exclude_newer: str,
    previous: Variant | None = None,
    upgrade: tuple[str, ...] | bool = False,
) -> Job:
    from deepbox.dockerfile import project_requirements

    tiers: dict[str, tuple[str, ...]] = {}
    vendor: dict[str, str] = {}
    for tier in TIERS:
        tiers[tier] = tuple(package for item in plan.tier(tier) for package in item.packages)
    for item in plan.selected:
        if item.index_urls and spec.framework_indexes:
            for package in item.packages:
                vendor[distribution(package)] = item.index_urls[0]
    tiers["pip"] = tuple(spec.pip)
    requirements = project_requirements(spec)
    installed = facts.packages if facts is not None and plan.system_site_packages else {}
    provided = tuple(f"{name}=={version}" for name, version in sorted(installed.items()) if _plain_version(version))
    return Job(
        python=target_python,
        platform=platform,
        tiers=tiers,
        requirements_file=requirements[1] if requirements else None,
        vendor=vendor,
        index_url=spec.index_url or PYPI,
        extra_index_urls=tuple(spec.extra_index_urls),
        find_links=tuple(link if "://" in link else str(spec.project_path(link)) for link in spec.find_links),
        provided=provided,
        exclude_newer=exclude_newer,
        preferences=previous.pins if previous is not None else {},
        upgrade=upgrade,
        ca_certificates=tuple(str(cert) for cert in spec.ca_certificates),
    )


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def changes(old: Variant | None, new: Variant) -> list[str]:
    """What moved between two variants, one short item per package: 'numpy 2.4.5 -> 2.4.6', '+ rich 15.0.0'."""
    before = old.pins if old is not None else {}
    after = new.pins
    moved = [
        f"{name} {before[name]} -> {after[name]}"
        for name in sorted(after)
        if name in before and before[name] != after[name]
    ]
    added = [f"+ {name} {after[name]}" for name in sorted(after) if name not in before]
    removed = [f"- {name} {before[name]}" for name in sorted(before) if name not in after]
    return moved + added + removed


def summary(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


class Reporter:
    """What ensure() says while it works (the CLI's reporter has this method)."""

    def step(self, message: str) -> None: ...


@dataclass(frozen=True)
class Target:
    """What a fresh variant must have been resolved for: these settings, this Python, platform, base."""

    config: str
    python: str
    platform: str
    base: str

    @classmethod
    def of(cls, spec: Spec, facts: BaseFacts | None) -> Target:
        from deepbox.dockerfile import plan_for

        plan = plan_for(spec, facts)
        return cls(config_digest(spec), plan.python, platform_for(facts), base_digest(facts, plan))

    def fits(self, variant: Variant) -> bool:
        return (variant.config, variant.python, variant.platform, variant.base) == (
            self.config, self.python, self.platform, self.base,
        )  # fmt: skip


def device_variants(spec: Spec, variants: dict[str, Variant]) -> list[str]:
    """The variants for the box's device: "cpu", or every CUDA one."""
    return [key for key in variants if (key == "cpu") == (spec.device == "cpu")]


def _keys(spec: Spec, variants: dict[str, Variant], host: Host) -> list[str]:
    """The variants this box could use on this host, best first."""
    return ["cpu"] if spec.device == "cpu" else choose_existing(variants, spec.cuda or "auto", host)


def _fresh(spec: Spec, variants: dict[str, Variant], target: Target, host: Host) -> Variant | None:
    return next(
        (variants[key] for key in _keys(spec, variants, host) if key in variants and target.fits(variants[key])), None
    )


def current(spec: Spec, facts: BaseFacts | None, host: Host | None = None) -> Variant | None:
    """The fresh variant the box would be built from, without resolving anything (None: lock first)."""
    return _fresh(spec, read(spec.project, spec.lock_file), Target.of(spec, facts), host or Host())


def ensure(
    spec: Spec,
    facts: BaseFacts | None,
    reporter: Reporter,
    *,
    gpus: list[Gpu] | None = None,
    frozen: bool = False,
    upgrade: tuple[str, ...] | bool = False,
    resolver: Resolver = resolve_uv,
) -> Variant:
    """The variant the box is built from: the locked one while it is fresh for these settings, this
    base and this host; otherwise a new resolution, written to the lock file (what moved is said).
    With `frozen`, a missing or stale lock is an error instead."""
    from deepbox.dockerfile import plan_for

    host = Host.of(gpus)
    variants = read(spec.project, spec.lock_file)
    target = Target.of(spec, facts)
    if upgrade is False and (fit := _fresh(spec, variants, target, host)) is not None:
        return fit
    previous = next((variants[key] for key in _keys(spec, variants, host) if key in variants), None)
    if frozen:
        what = "is stale (deepbox.toml, the base image or the Python changed since)" if previous else "has no variant"
        raise DeepboxError(
            f"{path(spec.project, spec.lock_file)} {what} for this box ({spec.device}), and --frozen forbids locking "
            f"again: run `{lock_command(spec)}`, commit the lock, then `deepbox up{_box_option(spec)} --frozen`."
        )
    # The same settings resolve as of the same moment (a reproducible re-lock); changed ones as of now,
    # keeping every locked version that still fits.
    same_settings = previous is not None and previous.config == target.config and upgrade is False
    exclude_newer = previous.exclude_newer if previous is not None and same_settings else now()
    device = " (CUDA)" if spec.device == "cuda" else ""
    reporter.step(f"Locking the box's packages for Python {target.python} on {target.platform}{device}")
    name = uv_version()

    def make(key: str, resolution: Resolution, driver: str) -> Variant:
        return Variant(key, target.config, target.python, target.platform, target.base,
                       cuda_version(resolution.packages), driver, exclude_newer, name, resolution.packages)  # fmt: skip

    variant = lock_variant(
        spec.device,
        spec.cuda or "auto",
        host,
        lambda major, tag: plan_for(spec, facts, cuda_major=major, vendor_tag=tag),
        lambda chosen: job_for(spec, chosen, facts, target.python, target.platform, exclude_newer, previous, upgrade),
        resolver,
        make,
    )
    moved = changes(previous, variant)
    variants[variant.key] = variant
    write(spec.project, spec.name, variants, spec.lock_file)
    what = f"{len(variant.packages)} packages" + (f", CUDA {variant.cuda}" if variant.cuda else "")
    reporter.step(
        f"Locked {variant.key} ({what}) in {spec.lock_file}"
        + (f": {summary(moved)}" if previous is not None and moved else "")
    )
    return variant


def _box_option(spec: Spec) -> str:
    return f" --box {spec.box}" if spec.box else ""


def lock_command(spec: Spec) -> str:
    """The command that locks this box: `deepbox lock`, or `deepbox lock --box NAME` for a [box.NAME] box."""
    return f"deepbox lock{_box_option(spec)}"


def up_command(spec: Spec) -> str:
    """The command that brings this box up: `deepbox up`, or `deepbox up --box NAME`."""
    return f"deepbox up{_box_option(spec)}"


def check(spec: Spec) -> list[str]:
    """What makes the lock unfit for deepbox.toml, one sentence each; [] when it fits. Pure: no engine,
    no network (for CI)."""
    variants = read(spec.project, spec.lock_file)
    name = spec.lock_file
    if not variants:
        return [f"{name} is missing: run `{lock_command(spec)}` and commit it."]
    config = config_digest(spec)
    problems = (
        [] if device_variants(spec, variants) else [f"{name} has no {spec.device} variant: run `{lock_command(spec)}`."]
    )
    stale = sorted(key for key, variant in variants.items() if variant.config != config)
    if stale:
        problems.append(
            f"{name} ({', '.join(stale)}) no longer matches deepbox.toml or the project's requirements: "
            f"run `{lock_command(spec)}` and commit it."
        )
    return problems
