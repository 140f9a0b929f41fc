"""CUDA versions and the NVIDIA driver each needs (Linux x86_64).

From the CUDA Toolkit release notes ("CUDA Toolkit and Corresponding Driver Versions"): the driver
a toolkit's GA release requires. Since CUDA 11.1 a driver of the same major family also runs newer
minor versions ("minor version compatibility", without PTX JIT of newer code), so the floor per
major is kept as well. Used by the lock's CUDA choice (cuda = "auto") and by `doctor`. These are the
only hand-kept CUDA facts: what a framework release ships for which CUDA is found by resolving.
"""

from __future__ import annotations

from deepbox.catalog.model import version_tuple
from deepbox.errors import ConfigError

# CUDA major.minor -> minimum Linux driver for full support.
MIN_DRIVER: dict[str, str] = {
    "11.0": "450.51.05",
    "11.1": "455.23",
    "11.2": "460.27.03",
    "11.3": "465.19.01",
    "11.4": "470.42.01",
    "11.5": "495.29.05",
    "11.6": "510.39.01",
    "11.7": "515.43.04",
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}

# CUDA major -> the oldest driver that runs any minor of it through minor version compatibility.
# Framework wheels carry their own CUDA runtime, so this floor is what a box's CUDA major needs.
MIN_DRIVER_COMPAT: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

# CUDA major -> the oldest GPU architecture (compute capability) its toolkit still builds for.
# CUDA 13.0 release notes: Maxwell, Pascal and Volta (sm_50-sm_72) are no longer supported, so sm_75
# (Turing) is the floor; CUDA 12.0 dropped Kepler (sm_35, sm_37), leaving sm_50; CUDA 11.0 dropped
# sm_30, leaving sm_35.
MIN_COMPUTE_CAPABILITY: dict[int, str] = {11: "3.5", 12: "5.0", 13: "7.5"}
MAJORS: tuple[int, ...] = tuple(sorted(MIN_DRIVER_COMPAT, reverse=True))  # newest first

# CUDA toolkit releases (major.minor), from NVIDIA's CUDA Toolkit Archive: the tags vendor indexes
# name their builds by (cu118, cu128, cu130). Which of them a framework release has is found by
# resolving against the index, never from a table.
RELEASES: tuple[str, ...] = (
    *(f"11.{minor}" for minor in range(0, 9)),
    *(f"12.{minor}" for minor in (0, 1, 2, 3, 4, 5, 6, 8, 9)),
    *(f"13.{minor}" for minor in range(0, 6)),
)

SUPPORTED = tuple(MIN_DRIVER)


def major_of(cuda: str) -> int:
    return version_tuple(cuda)[0]


def parse_setting(cuda: str) -> tuple[int, str | None]:
    """The cuda setting: "13" -> (13, None), "12.8" -> (12, "12.8"); unknown majors are a ConfigError."""
    version = version_tuple(cuda)
    if not version or version[0] not in MIN_DRIVER_COMPAT:
        known = ", ".join(str(m) for m in sorted(MIN_DRIVER_COMPAT))
        raise ConfigError(
            f"Unknown CUDA version '{cuda}'; use cuda = \"auto\" (chosen from the driver), a major ({known}) "
            'or a version such as "12.8".'
        )
    return version[0], ".".join(str(n) for n in version[:2]) if len(version) > 1 else None


def tag(cuda: str) -> str:
    """'12.8' -> 'cu128', the name vendor indexes use."""
    major, minor = version_tuple(cuda)[:2]
    return f"cu{major}{minor}"


def vendor_tags(major: int, driver: str | None = None, exact: str | None = None) -> list[str]:
    """Vendor index tags to try for a CUDA major, newest first: those the driver fully supports first,
    then those it runs only through minor version compatibility. `exact` ('12.8'): that one only."""
    if exact is not None:
        return [tag(exact)]
    releases = sorted((r for r in RELEASES if major_of(r) == major), key=version_tuple, reverse=True)
    if driver is None:
        return [tag(r) for r in releases]
    full = [r for r in releases if r in MIN_DRIVER and driver_supports(driver, r, compat=False)]
    return [tag(r) for r in full] + [tag(r) for r in releases if r not in full]


def runs_major(driver: str, major: int) -> bool:
    """Whether a driver runs a CUDA major's framework wheels (minor version compatibility)."""
    return version_tuple(driver) >= version_tuple(MIN_DRIVER_COMPAT[major])


def cc_runs_major(compute_capability: str, major: int) -> bool:
    return version_tuple(compute_capability) >= version_tuple(MIN_COMPUTE_CAPABILITY[major])


def normalize(cuda: str) -> str:
    """'12.4.1' -> '12.4'; a version the driver table does not know is a ConfigError naming the known ones."""
    version = version_tuple(cuda)
    key = ".".join(str(n) for n in version[:2])
    if len(version) < 2 or key not in MIN_DRIVER:
        raise ConfigError(
            f"Unknown CUDA version '{cuda}'; use one of {', '.join(SUPPORTED)} (for example cuda = \"12.8\")."
        )
    return key


def min_driver(cuda: str, *, compat: bool = False) -> str:
    """The minimum driver for a CUDA version; with compat=True the minor-version-compatibility floor."""
    if compat:
        return MIN_DRIVER_COMPAT[major_of(cuda)]
    return MIN_DRIVER[normalize(cuda)]


def driver_supports(driver: str, cuda: str, *, compat: bool = True) -> bool:
    """Whether an installed driver (as nvidia-smi prints it) runs code built for this CUDA version."""
    if not compat and ".".join(str(n) for n in version_tuple(cuda)[:2]) not in MIN_DRIVER:
        return False  # a release the table has no GA driver for: only minor version compatibility tells
    return version_tuple(driver) >= version_tuple(min_driver(cuda, compat=compat))


def max_cuda(driver: str) -> str | None:
    """The newest CUDA version a driver fully supports, or None when it is older than CUDA 11.0's."""
    supported = [cuda for cuda, floor in MIN_DRIVER.items() if version_tuple(driver) >= version_tuple(floor)]
    return max(supported, key=version_tuple) if supported else None
