"""Which CUDA a box gets: from the host's driver and GPUs, and from what really resolves.

The only hand-kept facts are the driver and GPU generation each CUDA major needs (catalog.cuda).
Which CUDA a framework release ships is learned from the resolved packages themselves (nvidia-*-cu12,
jax-cuda13-plugin, the CUDA runtime's version, torch's +cu128).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from deepbox import catalog
from deepbox.catalog import cuda as cuda_versions
from deepbox.catalog.model import distribution, version_tuple
from deepbox.errors import DeepboxError
from deepbox.resolver import Job, NoSolution, Package, Resolution, Resolver

if TYPE_CHECKING:
    from deepbox.gpu import Gpu

T = TypeVar("T")


# CUDA from the packages ------------------------------------------------------------------------------


_CU_SUFFIX = re.compile(r"-cu(\d+)$")
_CUDA_IN_NAME = re.compile(r"cuda(\d+)")


def cuda_majors(packages: Iterable[Package]) -> set[int]:
    """The CUDA majors a resolved set carries: nvidia-*-cu12, jax-cuda13-plugin, cupy-cuda12x, the
    CUDA runtime's own version, a vendor build's local version (torch 2.13.0+cu128)."""
    majors: set[int] = set()
    for package in packages:
        if match := _CU_SUFFIX.search(package.name):
            majors.add(int(match.group(1)[:2]) if len(match.group(1)) > 2 else int(match.group(1)))
        elif (match := _CUDA_IN_NAME.search(package.name)) and not package.name.startswith("cuda-"):
            majors.add(int(match.group(1)))
        elif package.name in ("nvidia-cuda-runtime", "cuda-toolkit"):
            majors.add(version_tuple(package.version)[0])
        if local := re.search(r"\+cu(\d+)$", package.version):
            majors.add(int(local.group(1)[:-1]))
    return majors


def cuda_version(packages: Iterable[Package]) -> str:
    """The CUDA version the set's runtime library is ('13.0'), or '' when it carries none."""
    for package in packages:
        if package.name.startswith("nvidia-cuda-runtime") or package.name == "cuda-toolkit":
            return ".".join(str(n) for n in version_tuple(package.version)[:2])
    for package in packages:
        if local := re.search(r"\+cu(\d+)(\d)$", package.version):
            return f"{local.group(1)}.{local.group(2)}"
    return ""


def missing_extras(warnings: Iterable[str]) -> list[str]:
    """uv's warnings about an extra a package does not have (jax==0.6.2 has no 'cuda13'): such a set
    would install a CPU build in silence."""
    return [line.removeprefix("warning: ") for line in warnings if "does not have an extra" in line]


# Choosing and making a variant ---------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """What the box's GPU host has (from nvidia-smi there); None fields when there is no driver."""

    driver: str | None = None
    compute_capability: str | None = None

    @classmethod
    def of(cls, gpus: list[Gpu] | None) -> Host:
        if not gpus:
            return cls()
        capabilities = [g.compute_capability for g in gpus if g.compute_capability]
        return cls(gpus[0].driver, min(capabilities, key=version_tuple) if capabilities else None)


@dataclass(frozen=True)
class Attempt:
    major: int
    vendor_tag: str | None  # None: PyPI's CUDA builds


def candidate_majors(setting: str, host: Host) -> tuple[list[int], list[str]]:
    """The CUDA majors to try, newest first, and why the others were left out."""
    if setting != "auto":
        return [cuda_versions.parse_setting(setting)[0]], []
    majors, reasons = [], []
    for major in cuda_versions.MAJORS:
        if host.driver and not cuda_versions.runs_major(host.driver, major):
            floor = cuda_versions.MIN_DRIVER_COMPAT[major]
            reasons.append(f"CUDA {major} needs driver {floor} or newer (the host has {host.driver})")
        elif host.compute_capability and not cuda_versions.cc_runs_major(host.compute_capability, major):
            floor = cuda_versions.MIN_COMPUTE_CAPABILITY[major]
            reasons.append(
                f"CUDA {major} needs a GPU of compute capability {floor} or newer (the host's is "
                f"{host.compute_capability})"
            )
        else:
            majors.append(major)
    return majors, reasons


def attempts(major: int, setting: str, host: Host, plan_has_vendor: bool) -> list[Attempt]:
    exact = cuda_versions.parse_setting(setting)[1] if setting != "auto" else None
    tries = [Attempt(major, None)]
    if plan_has_vendor:
        tries += [Attempt(major, tag) for tag in cuda_versions.vendor_tags(major, host.driver, exact)]
    return tries


PlanFor = Callable[[int | None, str | None], catalog.Plan]  # (cuda major, vendor tag) -> plan
JobFor = Callable[[catalog.Plan], Job]


def lock_variant(
    key_device: str,
    setting: str,
    host: Host,
    plan_for: PlanFor,
    job_for_plan: JobFor,
    resolver: Resolver,
    make: Callable[[str, Resolution, str], T],
) -> T:
    """Resolve the CPU variant, or the CUDA variant: the newest CUDA major the host can run for which
    every framework resolves to that one major with no missing extra (PyPI's builds first, then the
    vendor index's, newest tag first). A refusal names, for each major, why; an explicit cuda setting
    that fails also names the majors that would work."""
    if key_device == "cpu":
        return make("cpu", resolver(job_for_plan(plan_for(None, None))), "")
    majors, reasons = candidate_majors(setting, host)
    for major in majors:
        found, why = _try_major(major, setting, host, plan_for, job_for_plan, resolver)
        if found is not None:
            return make(f"cuda{major}", found, host.driver or "")
        reasons.append(f"CUDA {major}: {why}")
    detail = "; ".join(reasons) if reasons else "no CUDA major is known"
    if setting != "auto":
        others = [m for m in cuda_versions.MAJORS if m not in majors]
        working = [m for m in others if _try_major(m, "auto", host, plan_for, job_for_plan, resolver)[0] is not None]
        instead = (
            f'; CUDA {working[0]} resolves: set cuda = "{working[0]}" or "auto"'
            if working
            else "; no other CUDA major resolves either"
        )
        raise DeepboxError(f'cuda = "{setting}" does not fit these frameworks ({detail}){instead}.')
    raise DeepboxError(f"No CUDA build of these frameworks fits: {detail}.")


def _try_major(
    major: int, setting: str, host: Host, plan_for: PlanFor, job_for_plan: JobFor, resolver: Resolver
) -> tuple[Resolution | None, str]:
    """The resolution for one CUDA major, or why there is none. Vendor tags are tried only when what
    carries another CUDA comes from a framework with a vendor index (torch on PyPI is CUDA 13)."""
    plan = plan_for(major, None)
    vendor = {
        distribution(package)
        for item in plan.selected
        if item.framework.cuda_index_url
        for package in item.framework.packages("cuda", major)
    }
    why = ""
    for attempt in attempts(major, setting, host, bool(vendor)):
        try:
            resolution = resolver(job_for_plan(plan_for(attempt.major, attempt.vendor_tag)))
        except NoSolution as exc:
            why = exc.message.rstrip(".")
            continue
        missing = missing_extras(resolution.warnings)
        if missing:
            return None, f"{missing[0].rstrip('.')} (it would install a CPU build)"
        wrong = [p for p in resolution.packages if cuda_majors([p]) - {major}]
        if not wrong:
            return resolution, ""
        blamed = set().union(*(resolution.roots.get(p.name, frozenset({p.name})) for p in wrong))
        carried = ", ".join(f"CUDA {m}" for m in sorted(cuda_majors(wrong)))
        why = f"{', '.join(sorted(blamed))} bring{'s' if len(blamed) == 1 else ''} {carried}"
        if not blamed <= vendor:
            break  # no vendor index changes what the others bring
    return None, why or "nothing resolves"


def choose_existing(variants: Iterable[str], setting: str, host: Host) -> list[str]:
    """The locked CUDA variants this host could use, best first (for `up` without resolving)."""
    majors, _ = candidate_majors(setting, host)
    return [f"cuda{major}" for major in majors if f"cuda{major}" in variants]
