"""GPUs: which ones a box asks for, what the host has, and whether the driver runs the box's CUDA.

Pure functions over recorded inputs (`nvidia-smi` output, `docker info`), so every decision is
unit-tested without a GPU; `read_nvidia_smi` gathers the live output for `doctor` and `up`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from deepbox.catalog import cuda as cuda_versions
from deepbox.errors import ConfigError

# What `doctor` and the CUDA choice ask nvidia-smi for; one CSV line per GPU. Drivers before ~510 do
# not know compute_cap, so the same query without it follows when the first fails.
_FIELDS = "index,name,driver_version,memory.total"
NVIDIA_SMI = (
    f"nvidia-smi --query-gpu={_FIELDS},compute_cap --format=csv,noheader 2>/dev/null"
    f" || nvidia-smi --query-gpu={_FIELDS} --format=csv,noheader"
)


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    driver: str
    memory_mib: int | None
    compute_capability: str | None = None  # "9.0"; None where the driver cannot tell


@dataclass(frozen=True)
class GpuRequest:
    """The GPUs a box asks Docker for: all of them, a count, or device ids (indexes or UUIDs)."""

    count: int = 0  # -1: all
    device_ids: tuple[str, ...] = ()

    @property
    def wanted(self) -> bool:
        return self.count != 0 or bool(self.device_ids)

    def describe(self) -> str:
        if self.device_ids:
            return "GPU " + ", ".join(self.device_ids)
        if self.count == -1:
            return "all GPUs"
        return f"{self.count} GPU{'s' if self.count != 1 else ''}" if self.count else "no GPU"

    def docker(self) -> list[dict[str, object]]:
        """Keyword arguments of the Docker SDK's DeviceRequest (what `docker run --gpus` sends)."""
        if not self.wanted:
            return []
        if self.device_ids:
            return [{"count": 0, "device_ids": list(self.device_ids), "capabilities": [["gpu"]]}]
        return [{"count": self.count, "capabilities": [["gpu"]]}]


def parse_request(value: str | int | list[str] | None, device: str) -> GpuRequest:
    """The `gpus` setting: "all", "none", a count, or a list of ids; "auto" (or unset): all GPUs on a cuda box."""
    if value is None or value == "auto":
        return GpuRequest(count=-1) if device == "cuda" else GpuRequest()
    if isinstance(value, bool):  # TOML true/false would pass as int
        raise ConfigError('gpus must be "all", "none", a number of GPUs or a list of GPU ids such as ["0", "2"].')
    if isinstance(value, int):
        if value < 0:
            raise ConfigError('gpus must be 0 or more (or "all").')
        return GpuRequest(count=value)
    if isinstance(value, str):
        if value == "all":
            return GpuRequest(count=-1)
        if value in ("none", ""):
            return GpuRequest()
        if value.isdigit():
            return GpuRequest(count=int(value))
        raise ConfigError(f'gpus = "{value}" is not understood; use "auto", "all", "none", a number or ids ("0").')
    ids = tuple(str(item).strip() for item in value)
    if not all(ids) or len(set(ids)) != len(ids):
        raise ConfigError('gpus lists empty or repeated GPU ids; list each GPU once, e.g. gpus = ["0", "2"].')
    return GpuRequest(device_ids=ids)


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """GPUs from `nvidia-smi --query-gpu=index,name,driver_version,memory.total[,compute_cap]
    --format=csv,noheader`."""
    gpus = []
    for row in csv.reader(io.StringIO(output)):
        if len(row) < 3 or not row[0].strip().isdigit():
            continue  # blank lines, or messages such as "No devices were found"
        memory = row[3].strip().split()[0] if len(row) > 3 and row[3].strip() else ""
        capability = row[4].strip() if len(row) > 4 else ""
        gpus.append(
            Gpu(
                index=row[0].strip(),
                name=row[1].strip(),
                driver=row[2].strip(),
                memory_mib=int(memory) if memory.isdigit() else None,
                compute_capability=capability if capability[:1].isdigit() else None,
            )
        )
    return gpus


def read_nvidia_smi() -> str | None:
    """nvidia-smi's GPU list on this machine; None when there is no working driver. The one function
    here that looks at a live machine (a server's is read by site.ServerSite)."""
    import subprocess

    try:
        done = subprocess.run(["sh", "-c", NVIDIA_SMI], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def nvidia_runtime(docker_info: dict[str, object]) -> bool:
    """Whether the engine can hand GPUs to containers: the NVIDIA runtime, or CDI devices from the toolkit."""
    runtimes = docker_info.get("Runtimes") or {}
    if isinstance(runtimes, dict) and "nvidia" in runtimes:
        return True
    cdi = docker_info.get("DiscoveredDevices") or []
    return any(isinstance(d, dict) and str(d.get("ID", "")).startswith("nvidia.com/gpu") for d in cdi)


@dataclass(frozen=True)
class DriverVerdict:
    level: str  # ok | warning | error
    message: str


def driver_verdict(driver: str, cuda: str) -> DriverVerdict:
    """Can this driver run a box built for this CUDA version? Says which CUDA the driver allows if not."""
    needed = cuda_versions.min_driver(cuda)
    if cuda_versions.driver_supports(driver, cuda, compat=False):
        return DriverVerdict("ok", f"NVIDIA driver {driver} runs CUDA {cuda} (needs {needed} or newer).")
    newest = cuda_versions.max_cuda(driver)
    instead = f'set cuda = "{newest}" or older, or ' if newest else ""
    if cuda_versions.driver_supports(driver, cuda, compat=True):
        return DriverVerdict(
            "warning",
            f"NVIDIA driver {driver} runs CUDA {cuda} only through minor-version compatibility (code compiled "
            f"just in time for newer GPUs fails); {instead}update the driver to {needed} or newer.",
        )
    return DriverVerdict(
        "error",
        f"NVIDIA driver {driver} is too old for CUDA {cuda} (needs {needed} or newer); {instead}update the driver.",
    )


def mismatched_ids(request: GpuRequest, gpus: list[Gpu]) -> list[str]:
    """Requested device ids that the host does not have (indexes only; UUIDs are left to Docker)."""
    present = {gpu.index for gpu in gpus}
    return [gid for gid in request.device_ids if gid.isdigit() and gid not in present]
