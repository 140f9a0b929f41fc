"""Resolution: requested names -> a checked, ordered Plan. Every error here comes before any Docker call.

Order is canonical: topological (dependencies first, otherwise by name, whatever the order of the
request), then grouped by tier so heavy, rarely changing frameworks are installed in the early layers.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from deepbox.catalog.entries import CPU_PRESETS, ENTRIES, PRESETS
from deepbox.catalog.model import TIERS, Framework, Plan, Release, Request, Selected, distribution, version_tuple
from deepbox.errors import ConfigError

if TYPE_CHECKING:
    from deepbox.baseimage import BaseFacts

FRAMEWORKS: dict[str, Framework] = {fw.name: fw for fw in ENTRIES}
ALIASES: dict[str, str] = {alias: fw.name for fw in ENTRIES for alias in fw.aliases}

# The Python each known base ships (the box's Python unless `python` asks for another).
BASE_PYTHON: dict[str, str] = {
    "stretch": "3.5",
    "buster": "3.7",
    "bullseye": "3.9",
    "bookworm": "3.11",
    "trixie": "3.13",
    "bionic": "3.6",
    "18.04": "3.6",
    "focal": "3.8",
    "20.04": "3.8",
    "jammy": "3.10",
    "22.04": "3.10",
    "noble": "3.12",
    "24.04": "3.12",
}
DEFAULT_PYTHON = "3.11"
# CPython versions uv can install as a managed interpreter when the base has another one.
MANAGED_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
KERAS_BACKENDS = (("tensorflow", "tensorflow"), ("jax", "jax"), ("pytorch", "torch"))
DEFAULT_KERAS_BACKEND = "jax"  # the lightest backend when the box has none of them


def base_suite(base: str) -> str | None:
    """The Debian/Ubuntu release an image name points at ('debian:bookworm-slim' -> 'bookworm')."""
    tag = base.rsplit("/", 1)[-1].lower()
    for suite in BASE_PYTHON:
        if re.search(rf"(?<![0-9a-z]){re.escape(suite)}(?![0-9a-z])", tag.replace("ubuntu", "ubuntu ")):
            return suite
    return None


def base_python(base: str) -> str | None:
    suite = base_suite(base)
    return BASE_PYTHON[suite] if suite else None


def _known() -> str:
    return ", ".join(sorted([*FRAMEWORKS, *PRESETS]))


def lookup(name: str) -> Framework:
    """A framework by name or alias (any case); an unknown name lists the close and the known ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in FRAMEWORKS:
        return FRAMEWORKS[key]
    close = difflib.get_close_matches(key, [*FRAMEWORKS, *ALIASES, *PRESETS], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"Unknown framework '{name}'.{hint} Known frameworks: {_known()}.")


def _expand(names: Iterable[str]) -> list[Request]:
    """Presets replaced by their members (recursively); everything else parsed as name + specifier."""
    requests: list[Request] = []
    for text in names:
        request = Request.parse(text)
        preset = PRESETS.get(request.name.lower())
        if preset is not None:
            if request.specifier:
                raise ConfigError(f"Preset '{request.name}' cannot take a version; pin its frameworks one by one.")
            requests += _expand(preset)
        else:
            requests.append(request)
    return requests


def _refuse(fw: Framework) -> ConfigError:
    instead = FRAMEWORKS.get(fw.replacement)
    hint = f' Use {instead.name} instead: frameworks = ["{instead.name}"].' if instead else ""
    return ConfigError(f"Framework '{fw.name}' cannot be installed: {fw.refusal}{hint}")


def _series_range(releases: Iterable[Release]) -> str:
    names = [r.series for r in releases]
    if not names:
        return "none"
    return names[0] if len(names) == 1 else f"{names[0]} to {names[-1]}"


def _matching(fw: Framework, specifier: str) -> list[Release]:
    """The known release series a specifier admits (compared at major.minor, which is what pins name)."""
    result = []
    for release in fw.releases:
        have = version_tuple(release.series)
        ok = True
        for clause in filter(None, specifier.split(",")):
            match = re.fullmatch(r"(===|==|~=|!=|>=|<=|>|<)\s*([0-9][0-9a-zA-Z.*+!-]*)", clause)
            if not match:
                raise ConfigError(
                    f"Framework '{fw.name}': cannot read the version '{specifier}'; write it as pip does, "
                    f'for example "{fw.name}=={fw.version or "1.0"}.*".'
                )
            op, text = match.groups()
            want = version_tuple(text)
            want2 = want[:2]
            if op in ("==", "===", "~="):
                ok &= have == want2 if op != "~=" or len(want) > 2 else have[:1] == want[:1] and have >= want2
            elif op == "!=":
                ok &= not (text.endswith("*") and have == want2)
            elif op == ">=" or op == ">":
                ok &= have >= want2 if op == ">=" or len(want) > 2 else have > want2
            elif op == "<=":
                ok &= have <= want2
            else:  # '<'
                ok &= have < want if len(want) > 2 else have < want2
        if ok:
            result.append(release)
    return result


def _pin(fw: Framework, request: Request) -> tuple[str, Release | None]:
    """The specifier to install and the release series it selects (None when the catalog cannot tell)."""
    if not request.specifier:
        if not fw.version:
            return "", None
        return f"=={fw.version}.*", fw.default_release
    if not fw.pip:
        raise ConfigError(
            f"Framework '{fw.name}' comes from Debian packages and cannot be pinned; drop the version from "
            f"'{request.name}{request.specifier}'."
        )
    if not fw.releases:
        return request.specifier, None
    matching = _matching(fw, request.specifier)
    # A release the catalog does not know (newer than its records) is the resolver's to judge.
    return request.specifier, matching[-1] if matching else None


def _order(roots: list[Framework]) -> list[Framework]:
    """Dependencies first, stable in request order; a cycle in the catalog is an error naming it."""
    ordered: list[Framework] = []
    done: set[str] = set()

    def visit(fw: Framework, path: tuple[str, ...]) -> None:
        if fw.name in done:
            return
        if fw.name in path:
            cycle = " -> ".join([*path[path.index(fw.name) :], fw.name])
            raise ConfigError(f"The catalog has a dependency cycle ({cycle}); fix the depends of those entries.")
        for dependency in fw.depends:
            if dependency not in FRAMEWORKS:
                raise ConfigError(f"Catalog entry '{fw.name}' depends on unknown '{dependency}'; fix its depends.")
            visit(FRAMEWORKS[dependency], (*path, fw.name))
        done.add(fw.name)
        ordered.append(fw)

    # Roots in name order, so the same set in any order gives the same plan, Dockerfile and image.
    for fw in sorted(roots, key=lambda fw: fw.name):
        visit(fw, ())
    # Group by tier (heavy, rarely changing first); stable, and dependencies never sit in a later tier.
    return sorted(ordered, key=lambda fw: TIERS.index(fw.tier))


def _requests(names: Iterable[str]) -> tuple[list[Framework], dict[str, Request]]:
    roots: list[Framework] = []
    pins: dict[str, Request] = {}
    for request in _expand(names):
        fw = lookup(request.name)
        if fw.status == "refused":
            raise _refuse(fw)
        earlier = pins.get(fw.name)
        if earlier is not None and earlier.specifier and request.specifier and earlier.specifier != request.specifier:
            raise ConfigError(
                f"Framework '{fw.name}' is pinned twice ('{earlier.specifier}' and '{request.specifier}'); keep one."
            )
        if earlier is None or request.specifier:
            pins[fw.name] = request
        if fw not in roots:
            roots.append(fw)
    # Keras 3 needs a backend: use one the box already has, else add the lightest.
    if any(fw.name == "keras" for fw in roots) and not any(
        FRAMEWORKS[backend] in roots or _depends_on(roots, backend) for backend, _ in KERAS_BACKENDS
    ):
        roots.insert(0, FRAMEWORKS[DEFAULT_KERAS_BACKEND])
    return roots, pins


def _depends_on(roots: list[Framework], name: str) -> bool:
    return any(name in fw.depends for fw in roots)


def _check_conflicts(frameworks: list[Framework]) -> None:
    names = {fw.name for fw in frameworks}
    for fw in frameworks:
        for other in fw.conflicts:
            if other in names:
                raise ConfigError(
                    f"Frameworks '{fw.name}' and '{other}' conflict (they install the same module "
                    f"'{fw.module}'); keep one of them."
                )


def canonical_names(names: Iterable[str]) -> list[str]:
    """The request with presets expanded and aliases resolved, as 'name' or 'name<specifier>', in name
    order: the same frameworks written any way give the same list."""
    return sorted({f"{lookup(request.name).name}{request.specifier}" for request in _expand(names)})


def check_names(names: Iterable[str]) -> None:
    """The checks that need nothing but the names: unknown, refused and conflicting frameworks."""
    roots, _ = _requests(names)
    _check_conflicts(_order(roots))


def resolve(names: Iterable[str]) -> list[Framework]:
    """Requested names (aliases, presets, 'name==version' pins) plus dependencies, ordered for layers."""
    roots, pins = _requests(names)
    ordered = _order(roots)
    _check_conflicts(ordered)
    for fw in ordered:
        _pin(fw, pins.get(fw.name, Request(fw.name)))
    return ordered


def plan(
    names: Iterable[str],
    *,
    device: str = "cpu",
    cuda_major: int | None = None,
    vendor_tag: str | None = None,
    python: str | None = None,
    base: str = "",
    facts: BaseFacts | None = None,
) -> Plan:
    """resolve() plus the box's facts: Python, CPU/CUDA packages and indexes, base suite.

    On a cuda box, `cuda_major` names the CUDA builds ('jax[cuda13]') and `vendor_tag` ('cu128') the
    vendor index of frameworks that have one; without a tag they come from PyPI. Whether that set
    resolves, and to which CUDA, is for the lock to find out. With the base image's facts, packages
    its Python already has are used, not installed again."""
    names = list(names)
    roots, pins = _requests(names)
    ordered = _order(roots)
    _check_conflicts(ordered)
    if device not in ("cpu", "cuda"):
        raise ConfigError(f'Unknown device \'{device}\'; use device = "cpu" or "cuda".')
    if device == "cuda":
        _check_cpu_presets(names)
    if device == "cpu":
        cuda_major = vendor_tag = None
    own_python = _own_python(base, facts)
    box_python = python or own_python or DEFAULT_PYTHON
    suite = (facts.codename if facts and facts.codename else None) or base_suite(base)
    # The base's packages serve the box only when the box runs the base's own Python.
    installed = facts.packages if facts and facts.python and (not python or python == own_python) else {}
    selected: list[Selected] = []
    for fw in ordered:
        request = pins.get(fw.name, Request(fw.name))
        provided = _provided(fw, request, installed, base)
        # A framework the base has keeps the base's version, not the catalog's default.
        specifier, release = ("", None) if provided else _pin(fw, request)
        _check_python(fw, release, box_python)
        if fw.suites and suite is not None and suite not in fw.suites:
            raise ConfigError(
                f"Framework '{fw.name}' is packaged only in Debian/Ubuntu {', '.join(fw.suites)}, and the base "
                f"'{base}' is {suite}; make such a base with `deepbox base bootstrap --suite {fw.suites[0]}` and "
                f'set base = "deepbox/debian:{fw.suites[0]}".'
            )
        if fw.system_site_packages and python and own_python and python != own_python:
            raise ConfigError(
                f"Framework '{fw.name}' comes from Debian's python3 packages, so the box must use the base's "
                f"own Python {own_python}, not {python}; remove the python setting."
            )
        index_urls: tuple[str, ...] = ()
        if device == "cuda":
            index_urls = _check_cuda(fw, vendor_tag)
        elif fw.cpu_index_url:
            index_urls = (fw.cpu_index_url,)
        packages = fw.packages(device, cuda_major)
        if packages and specifier:
            packages = (packages[0] + specifier, *packages[1:])
        if provided:
            packages = tuple(p for p in packages[1:] if distribution(p) not in installed)
            index_urls = index_urls if packages else ()
        selected.append(Selected(fw, specifier, packages, index_urls, fw.apt, provided))
    env: list[tuple[str, str]] = []
    if any(fw.name == "keras" for fw in ordered):
        have = {fw.name for fw in ordered}
        backend = next(module for name, module in KERAS_BACKENDS if name in have)
        env.append(("KERAS_BACKEND", backend))
    for fw in ordered:
        env += [pair for pair in fw.env if pair not in env]
    return Plan(
        selected=tuple(selected),
        device=device,
        cuda_major=cuda_major,
        python=box_python,
        env=tuple(env),
        ports=tuple(sorted({port for fw in ordered for port in fw.ports})),
        system_site_packages=any(fw.system_site_packages for fw in ordered) or any(i.provided for i in selected),
    )


def _check_cpu_presets(names: Iterable[str]) -> None:
    for text in names:
        name = Request.parse(text).name.lower()
        if name in CPU_PRESETS:
            raise ConfigError(
                f"Preset '{name}' stands for CPU builds, and this is a cuda box; use \"{CPU_PRESETS[name]}\" "
                'for the CUDA builds of the same frameworks, or device = "cpu".'
            )


def _own_python(base: str, facts: BaseFacts | None) -> str | None:
    """The Python the box gets without a python setting: the base's python3, else the one apt installs."""
    if facts is not None:
        if facts.python_series:
            return facts.python_series
        if facts.codename in BASE_PYTHON:
            return BASE_PYTHON[facts.codename]
    return base_python(base)


def _provided(fw: Framework, request: Request, installed: Mapping[str, str], base: str) -> str:
    """The version of the framework the base image's Python already has ('' when it has none).

    A pin the base's version does not meet is refused: a second copy would shadow the base's."""
    if not fw.pip or not installed:
        return ""
    names = dict.fromkeys(distribution(p) for p in (fw.pip[0], *(fw.cuda_pip or ())[:1], *fw.dists))
    found = next(((name, installed[name]) for name in names if name in installed), None)
    if found is None:
        return ""
    name, version = found
    if request.specifier and not _satisfies(version, request.specifier):
        raise ConfigError(
            f"The base image '{base}' already has {name} {version}, which does not match "
            f"'{request.name}{request.specifier}'; drop the version to use the base's, or choose a base without "
            f"{name} (a second copy would hide the base's)."
        )
    return version


def _satisfies(version: str, specifier: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion

    try:
        return SpecifierSet(specifier).contains(version, prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


def _check_python(fw: Framework, release: Release | None, python: str) -> None:
    if release is None or release.supports_python(python):
        return
    fitting = [r for r in fw.releases if r.supports_python(python)]
    other = f"pin {fw.name} to {_series_range(fitting)}" if fitting else f"no release of {fw.name} supports it"
    raise ConfigError(
        f"Framework '{fw.name}' {release.series} has wheels for {release.python_range}, not the box's "
        f"Python {python}: {other}, or set python to a version in that range."
    )


def _check_cuda(fw: Framework, vendor_tag: str | None) -> tuple[str, ...]:
    """The vendor index a CUDA box takes this framework from (none: PyPI); a framework without a CUDA
    build is an error."""
    if not fw.cuda_supported:
        instead = f" (or use {fw.replacement}, which has CUDA builds)" if fw.replacement else ""
        raise ConfigError(
            f"Framework '{fw.name}' has no CUDA build{': ' + fw.notes if fw.notes else ''}; "
            f'use device = "cpu" for it{instead}.'
        )
    if fw.cuda_devel:
        raise ConfigError(
            f"Framework '{fw.name}' compiles CUDA code while building, which needs a CUDA devel base: "
            'set base = "nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04" or another devel image.'
        )
    if not fw.cuda_index_url or vendor_tag is None:
        return ()
    return (fw.cuda_index_url.format(cu=vendor_tag),)


def table() -> list[dict[str, object]]:
    """One row per entry for `deepbox catalog` (and its --json): name, version, cpu/cuda, status."""
    return [_row(fw) for fw in sorted(FRAMEWORKS.values(), key=lambda fw: fw.name)]


def _row(fw: Framework) -> dict[str, object]:
    return {
        "name": fw.name,
        "aliases": list(fw.aliases),
        "version": fw.version or ("(debian)" if fw.apt and not fw.pip else "latest"),
        "cpu": list(fw.pip or fw.apt),
        "cuda": list(fw.packages("cuda")) if fw.cuda_supported and fw.status == "ok" else [],
        "depends": list(fw.depends),
        "status": fw.status,
        "description": fw.description,
        "refusal": fw.refusal,
        "replacement": fw.replacement,
        "ports": list(fw.ports),
    }


def entry(name: str) -> dict[str, object]:
    """One entry in full for `deepbox catalog NAME` (by name or alias): its table row, plus the system
    packages, conflicts, the release series it knows with their Pythons, and its notes."""
    fw = lookup(name)
    return {
        **_row(fw),
        "apt": list(fw.apt),
        "conflicts": list(fw.conflicts),
        "releases": {release.series: release.python_range for release in fw.releases},
        "notes": fw.notes,
    }


def presets() -> dict[str, list[str]]:
    """Preset name -> the framework names it stands for (presets inside presets expanded)."""
    return {name: [r.name for r in _expand([name])] for name in sorted(PRESETS)}
