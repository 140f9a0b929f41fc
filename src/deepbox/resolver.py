"""Resolving a box's packages with uv: what it is asked (a Job), what it answers (a Resolution).

`uv pip compile` resolves for a target Python and platform from wheel metadata alone, so no big
wheel is downloaded and any host OS can lock for a Linux box. It runs twice: annotated (who needs
what: the tiers, and what a wrong CUDA is blamed on), then as pylock.toml (the file and hash of
every package for that platform), the second held to the first's pins. Vendor indexes serve only
their own packages (uv's explicit indexes with per-package sources).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deepbox.catalog.model import TIERS, distribution, normalize
from deepbox.errors import DeepboxError
from deepbox.fsutil import temporary_folder

PYPI = "https://pypi.org/simple"
PIP_TIERS = ("pip", "requirements")  # the project's own packages, after the catalog's tiers
ALL_TIERS = (*TIERS, *PIP_TIERS)


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    tier: str
    url: str  # the wheel (or sdist) for the box's platform
    sha256: str


@dataclass(frozen=True)
class Job:
    """One resolution: requirements per tier, the sources they come from, the target."""

    python: str
    platform: str
    tiers: dict[str, tuple[str, ...]]
    requirements_file: bytes | None  # the project's requirements.txt, as it is
    vendor: dict[str, str]  # package name -> the vendor index it must come from
    index_url: str
    extra_index_urls: tuple[str, ...]
    find_links: tuple[str, ...]  # URLs, or local folders on this machine
    provided: tuple[str, ...]  # the base image's own packages ("name==version"): constraints, never locked
    exclude_newer: str
    preferences: dict[str, str] = field(default_factory=dict)  # the previous lock's pins, kept if they fit
    upgrade: tuple[str, ...] | bool = False  # True: everything; names: those only
    ca_certificates: tuple[str, ...] = ()  # the CA files to trust (build.ca_certificates)


@dataclass(frozen=True)
class Resolution:
    packages: tuple[Package, ...]
    warnings: tuple[str, ...] = ()
    # package -> the requirements of the box that bring it in (what a wrong CUDA is blamed on)
    roots: dict[str, frozenset[str]] = field(default_factory=dict)


Resolver = Callable[[Job], Resolution]


# Tiers from uv's annotations ----------------------------------------------------------------------


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_ROOT = "deepbox-box (pyproject.toml)"  # how uv annotates a requirement of the generated project


def parse_annotated(text: str) -> dict[str, tuple[str, list[str]]]:
    """`uv pip compile` output (annotations on) -> name -> (version, what it is required by)."""
    found: dict[str, tuple[str, list[str]]] = {}
    current = ""
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        match = _PIN.match(raw)
        if match:
            current = normalize(match.group(1))
            found[current] = (match.group(2).rstrip("\\").strip(), [])
            in_via = False
            continue
        if not current or not line.startswith("#"):
            continue
        comment = line.lstrip("#").strip()
        if comment.startswith("via"):
            rest = comment.removeprefix("via").strip()
            in_via = not rest
            if rest:
                found[current][1].append(rest)
        elif in_via and raw.lstrip().startswith("#   "):
            found[current][1].append(comment)
        else:
            in_via = False
    return found


def assign_tiers(graph: dict[str, tuple[str, list[str]]], tiers: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Each package's tier: the earliest tier that needs it, directly or through what it is required by."""
    order = {tier: index for index, tier in enumerate(ALL_TIERS)}
    direct: dict[str, int] = {}
    for tier, requirements in tiers.items():
        for requirement in requirements:
            name = distribution(requirement)
            direct[name] = min(direct.get(name, len(ALL_TIERS)), order[tier])
    rank = {name: len(ALL_TIERS) for name in graph}
    for name, (_, via) in graph.items():
        if _ROOT in via:
            rank[name] = direct.get(name, order["pip"])
        if any(entry.startswith("-r ") for entry in via):
            rank[name] = min(rank[name], order["requirements"])
    changed = True
    while changed:  # a dependency sits no later than anything that needs it
        changed = False
        for name, (_, via) in graph.items():
            for parent in via:
                parent_rank = rank.get(normalize(parent))
                if parent_rank is not None and parent_rank < rank[name]:
                    rank[name] = parent_rank
                    changed = True
    return {name: ALL_TIERS[min(value, len(ALL_TIERS) - 1)] for name, value in rank.items()}


def roots_of(graph: dict[str, tuple[str, list[str]]]) -> dict[str, frozenset[str]]:
    """Each package's direct requirements that bring it in (itself, when it is one)."""
    direct = {name for name, (_, via) in graph.items() if _ROOT in via or any(v.startswith("-r ") for v in via)}
    found: dict[str, set[str]] = {name: ({name} if name in direct else set()) for name in graph}
    changed = True
    while changed:
        changed = False
        for name, (_, via) in graph.items():
            for parent in via:
                extra = found.get(normalize(parent), set()) - found[name]
                if extra:
                    found[name] |= extra
                    changed = True
    return {name: frozenset(value) for name, value in found.items()}


# uv ------------------------------------------------------------------------------------------------


def uv_binary() -> str:
    """uv as installed with deepbox (the PyPI package ships the binary), else one on PATH."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        from uv import find_uv_bin

        return str(find_uv_bin())
    found = shutil.which("uv")
    if found is None:
        raise DeepboxError("uv is not installed (it comes with deepbox): reinstall deepbox, or `pip install uv`.")
    return found


def uv_version() -> str:
    done = subprocess.run([uv_binary(), "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "uv"


def _pyproject(job: Job) -> str:
    import tomli_w

    requirements = [requirement for tier in (*TIERS, "pip") for requirement in job.tiers.get(tier, ())]
    indexes = {url: f"vendor-{index}" for index, url in enumerate(dict.fromkeys(job.vendor.values()))}
    data: dict[str, object] = {
        "project": {"name": "deepbox-box", "version": "0", "dependencies": requirements},
    }
    if indexes:
        data["tool"] = {
            "uv": {
                "sources": {name: {"index": indexes[url]} for name, url in sorted(job.vendor.items())},
                "index": [{"name": name, "url": url, "explicit": True} for url, name in indexes.items()],
            }
        }
    return tomli_w.dumps(data)


def resolve_uv(job: Job) -> Resolution:
    """Resolve with uv: once annotated (who needs what, for the tiers), once as pylock.toml (the file
    and hash of every package for the target platform), the second held to the first's pins."""
    with temporary_folder("deepbox-lock-") as work:
        (work / "pyproject.toml").write_text(_pyproject(job))
        if job.ca_certificates:  # one bundle for uv, gone with the folder
            (work / _CA_BUNDLE).write_bytes(b"\n".join(Path(cert).read_bytes() for cert in job.ca_certificates))
        inputs = ["pyproject.toml"]  # relative, run in `work`: the annotations name them so
        if job.requirements_file is not None:
            (work / "requirements.txt").write_bytes(job.requirements_file)
            inputs.append("requirements.txt")
        args = [
            uv_binary(), "pip", "compile", *inputs,
            "--python-version", job.python, "--python-platform", job.platform,
            "--exclude-newer", job.exclude_newer, "--index-url", job.index_url, "--no-header",
        ]  # fmt: skip
        for url in job.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in job.find_links:
            args += ["--find-links", link]
        if job.provided:
            (work / "base.txt").write_text("\n".join(job.provided) + "\n")
            args += ["--constraints", str(work / "base.txt")]
        annotated = work / "annotated.txt"
        if job.preferences and job.upgrade is not True:
            # uv keeps the versions already in its output file unless told to upgrade them.
            annotated.write_text("".join(f"{name}=={version}\n" for name, version in job.preferences.items()))
        upgrade = ["--upgrade"] if job.upgrade is True else [f"--upgrade-package={name}" for name in job.upgrade or ()]
        first = _run_uv([*args, *upgrade, "--output-file", str(annotated)], job, work)
        graph = parse_annotated(annotated.read_text())
        (work / "pins.txt").write_text("".join(f"{name}=={version}\n" for name, (version, _) in graph.items()))
        pylock = work / "pylock.toml"
        _run_uv(
            [*args, "--constraints", str(work / "pins.txt"), "--format", "pylock.toml", "-o", str(pylock)], job, work
        )
        files = _files(tomllib.loads(pylock.read_text()))
    tiers = assign_tiers(graph, job.tiers)
    packages = []
    provided = set(job.provided)
    for name, (version, _) in sorted(graph.items()):
        if f"{name}=={version}" in provided:
            continue  # the base image has it: used from there, not locked or installed again
        url, sha256 = files.get(name, ("", ""))
        if not url:
            raise DeepboxError(
                f"The resolver found no file of {name} {version} for {job.platform}; pin another version."
            )
        packages.append(Package(name, version, tiers[name], url, sha256))
    warnings = tuple(line.strip() for line in first.splitlines() if line.strip().startswith("warning:"))
    return Resolution(tuple(packages), warnings, roots_of(graph))


def _files(pylock: dict[str, object]) -> dict[str, tuple[str, str]]:
    """name -> (URL, SHA-256) of the file to install: the first wheel, else the sdist."""
    found = {}
    for entry in pylock.get("packages", []):  # type: ignore[union-attr]
        chosen = (entry.get("wheels") or [None])[0] or entry.get("sdist")
        if chosen:
            location = chosen.get("url") or Path(chosen.get("path", "")).resolve().as_uri()
            found[normalize(entry["name"])] = (location, chosen["hashes"]["sha256"])
    return found


_CA_BUNDLE = "ca-certificates.pem"


def _run_uv(args: list[str], job: Job, cwd: Path) -> str:
    env = {
        **os.environ,
        "UV_HTTP_RETRIES": "0",  # an unreachable index fails in seconds, not after minutes of retries
        "UV_HTTP_TIMEOUT": "30",
        "UV_NO_CONFIG": "1",  # the machine's uv.toml must not change what a lock means
    }
    if job.ca_certificates:
        env["SSL_CERT_FILE"] = str(cwd / _CA_BUNDLE)
    try:
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DeepboxError("Resolving the box's packages took over 10 minutes; check the package indexes.") from exc
    if done.returncode != 0:
        raise _uv_error(done.stderr, job)
    return done.stderr


class NoSolution(DeepboxError):
    """The requirements do not resolve (as opposed to an index that cannot be reached)."""


def _uv_error(stderr: str, job: Job) -> DeepboxError:
    fetch = re.search(r"Failed to fetch: [`']?(\S+?)[`']?\s*$", stderr, re.MULTILINE)
    if fetch and re.search(r"dns error|Connect|timed out|connection|certificate|tls", stderr, re.IGNORECASE):
        url = fetch.group(1)
        index = next(
            (i for i in [*job.vendor.values(), job.index_url, *job.extra_index_urls] if url.startswith(i)), url
        )
        if index in job.vendor.values():
            fix = "set framework_indexes = false to take those packages from your own indexes, or make it reachable"
        elif "certificate" in stderr.lower():
            fix = "add its CA to build.ca_certificates (a TLS-intercepting proxy?)"
        else:
            fix = "set build.index_url to a mirror you can reach, or check the network"
        return DeepboxError(f"The package index {index} cannot be reached; {fix}.", detail=stderr.strip()[-1500:])
    reason = next(
        (line for line in stderr.splitlines() if "Because" in line or "no version of" in line),
        stderr.strip().splitlines()[-1] if stderr.strip() else "uv failed",
    )
    reason = re.sub(r"^[^A-Za-z]*(cause:\s*)?", "", reason.strip())
    return NoSolution(
        f"The box's packages do not resolve for Python {job.python} on {job.platform}: {reason.rstrip('.')}.",
        detail=stderr.strip()[-3000:],
    )
