"""CUDA versions and the NVIDIA driver each needs (Linux x86_64).

From the CUDA Toolkit release notes ("CUDA Toolkit and Corresponding Driver Versions"): the driver
a toolkit's GA release requires. Since CUDA 11.1 a driver of the same major family also runs newer
minor versions ("minor version compatibility", without PTX JIT of newer code), so the floor per
major is kept as well. Used by verification (is the box's CUDA usable?) and by `doctor`.
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
MIN_DRIVER_COMPAT: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

SUPPORTED = tuple(MIN_DRIVER)


def normalize(cuda: str) -> str:
    """'12.4.1' -> '12.4'; an unknown version is a ConfigError naming the known ones."""
    version = version_tuple(cuda)
    key = ".".join(str(n) for n in version[:2])
    if len(version) < 2 or key not in MIN_DRIVER:
        raise ConfigError(
            f"Unknown CUDA version '{cuda}'; use one of {', '.join(SUPPORTED)} (for example cuda = \"12.4\")."
        )
    return key


def min_driver(cuda: str, *, compat: bool = False) -> str:
    """The minimum driver for a CUDA version; with compat=True the minor-version-compatibility floor."""
    key = normalize(cuda)
    if compat:
        return MIN_DRIVER_COMPAT[int(key.split(".")[0])]
    return MIN_DRIVER[key]


def driver_supports(driver: str, cuda: str, *, compat: bool = True) -> bool:
    """Whether an installed driver (as nvidia-smi prints it) runs code built for this CUDA version."""
    return version_tuple(driver) >= version_tuple(min_driver(cuda, compat=compat))


def max_cuda(driver: str) -> str | None:
    """The newest CUDA version a driver fully supports, or None when it is older than CUDA 11.0's."""
    supported = [cuda for cuda, floor in MIN_DRIVER.items() if version_tuple(driver) >= version_tuple(floor)]
    return max(supported, key=version_tuple) if supported else None


def tag(cuda: str) -> str:
    """'12.4' -> 'cu124', the name vendor indexes use."""
    major, minor = normalize(cuda).split(".")
    return f"cu{major}{minor}"


def pick_tag(cuda: str, offered: tuple[str, ...]) -> str | None:
    """The newest vendor build not newer than the box's CUDA, within the same major version."""
    wanted = version_tuple(normalize(cuda))
    candidates = []
    for name in offered:
        digits = name.removeprefix("cu")
        version = (int(digits[:-1]), int(digits[-1])) if len(digits) >= 3 else (int(digits), 0)
        if version[0] == wanted[0] and version <= wanted:
            candidates.append((version, name))
    return max(candidates)[1] if candidates else None
