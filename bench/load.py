"""Load: N boxes (default 20) up concurrently on one engine from a small image (no frameworks).

Checks that every box answers `ssh ALIAS true` through its own alias, that their ssh ports are
distinct, times `deepbox status`, measures an idle box's memory (the container's cgroup
memory.current, through `docker stats`), then removes every box with `deepbox rm --volumes` and
checks nothing is left (containers, volumes, Host blocks, pinned host keys). All boxes share one
throwaway HOME, as one user's boxes do; the image is built once, by the first box, before the rest
start. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_BASE = "deepbox/debian:bookworm"
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"


class Fleet:
    """N projects under one HOME whose boxes share one image (same settings, so the same spec hash)."""

    def __init__(self, root: Path, count: int, base: str, ca: str, prefix: str) -> None:
        self.home = root / "home"
        self.home.mkdir()
        self.prefix = prefix
        self.projects = [root / f"p{n}" for n in range(count)]
        ca_line = f'\n[build]\nca_certificates = ["{ca}"]\n' if ca and Path(ca).exists() else ""
        for number, project in enumerate(self.projects):
            project.mkdir()
            (project / "deepbox.toml").write_text(
                f'name = "{self.prefix}-{number}"\nbase = "{base}"\nframeworks = []\n{ca_line}'
            )

    def name(self, number: int) -> str:
        return f"{self.prefix}-{number}"

    def deepbox(self, number: int, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "SSH_AUTH_SOCK"}
        return subprocess.run(
            [sys.executable, "-m", "deepbox.cli", "-C", str(self.projects[number]), *args],
            capture_output=True, text=True, env={**env, "HOME": str(self.home)}, timeout=timeout, check=False,
        )  # fmt: skip

    def ssh(self, number: int, *options: str) -> subprocess.CompletedProcess[str]:
        config = self.home / ".ssh" / "config"
        return subprocess.run(
            ["ssh", "-F", str(config), "-o", "BatchMode=yes", *options, f"deepbox-{self.name(number)}", "true"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def engine_objects(self) -> list[str]:
        found = []
        for listing in (["ps", "-a", "--format", "{{.Names}}"], ["volume", "ls", "--format", "{{.Name}}"]):
            out = subprocess.run(["docker", *listing], capture_output=True, text=True, check=True).stdout
            found += [name for name in out.split() if name.startswith(f"deepbox-{self.prefix}-")]
        return found

    def clean(self) -> None:
        config = self.home / ".ssh" / "config"
        for number in range(len(self.projects)):
            subprocess.run(["ssh", "-F", str(config), "-O", "exit", f"deepbox-{self.name(number)}"],
                           capture_output=True, check=False, timeout=10)  # fmt: skip
        for listing, remove in ((["ps", "-aq"], ["rm", "-f"]), (["volume", "ls", "-q"], ["volume", "rm", "-f"])):
            for number in range(len(self.projects)):
                ids = subprocess.run(["docker", *listing, "--filter", f"label=deepbox.box={self.name(number)}"],
                                     capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
                if ids:
                    subprocess.run(["docker", *remove, *ids], capture_output=True, check=False)
        images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                                capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
        mine = [tag for tag in images if tag.startswith(f"deepbox/{self.prefix}-")]
        if mine:
            subprocess.run(["docker", "rmi", "-f", *mine], capture_output=True, check=False)


def idle_memory_mib(container: str) -> float:
    """The container's memory use as `docker stats` reads it (cgroup v2 memory.current less inactive file)."""
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{json .}}", container],
                         capture_output=True, text=True, check=True, timeout=60).stdout  # fmt: skip
    used = json.loads(out)["MemUsage"].split("/")[0].strip()
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024 / 1024}
    for unit, factor in units.items():
        if used.endswith(unit):
            return float(used.removesuffix(unit)) * factor
    raise ValueError(f"unexpected docker stats figure {used!r}")


def run(count: int, base: str, ca: str, prefix: str = "", log=print) -> dict:
    """Bring COUNT boxes up concurrently, check them, remove them; returns the figures (problems among
    them). The boxes are named PREFIX-0 ... (default: load + random)."""
    root = Path(tempfile.mkdtemp(prefix="deepbox-load-"))
    fleet = Fleet(root, count, base, ca, prefix or f"load{secrets.token_hex(3)}")
    problems: list[str] = []
    figures: dict = {"boxes": count}
    try:
        first = fleet.deepbox(0, "up")  # builds the image the others reuse
        if first.returncode != 0:
            raise RuntimeError(f"the first box's up failed: {first.stderr.strip()[-600:]}")
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=count) as pool:
            ups = list(pool.map(lambda n: fleet.deepbox(n, "up"), range(1, count)))
        figures["concurrent_up_s"] = round(time.perf_counter() - start, 1)
        problems += [f"box {n + 1}: up failed: {r.stderr.strip()[-300:]}" for n, r in enumerate(ups) if r.returncode]
        log(f"{count - 1} concurrent ups took {figures['concurrent_up_s']} s")
        unreachable = [n for n in range(count) if fleet.ssh(n, "-o", "ControlMaster=no").returncode != 0]
        problems += [f"box {n} does not answer ssh through its alias" for n in unreachable]
        listed = json.loads(fleet.deepbox(0, "status", "--json").stdout)  # every box on the engine
        ports = [box["port"] for box in listed if box["box"].startswith(f"{fleet.prefix}-")]
        if len(set(ports)) != count:
            problems.append(f"ssh ports are not {count} distinct ones: {sorted(ports)}")
        times = []
        for _ in range(5):
            begin = time.perf_counter()
            fleet.deepbox(0, "status")
            times.append(time.perf_counter() - begin)
        figures["status_s"] = round(statistics.median(times), 2)
        time.sleep(5)  # let the boxes settle into idle
        memory = [idle_memory_mib(f"deepbox-{fleet.name(n)}") for n in range(count)]
        figures["idle_memory_mib_median"] = round(statistics.median(memory), 1)
        figures["idle_memory_mib_max"] = round(max(memory), 1)
        with ThreadPoolExecutor(max_workers=count) as pool:
            removed = list(pool.map(lambda n: fleet.deepbox(n, "rm", "--volumes"), range(count)))
        problems += [f"box {n}: rm failed: {r.stderr.strip()[-300:]}" for n, r in enumerate(removed) if r.returncode]
        left = fleet.engine_objects()
        if left:
            problems.append(f"left on the engine after rm --volumes: {left}")
        data = fleet.home / ".local" / "share" / "deepbox"
        for owned in (data / "ssh_config", data / "known_hosts"):
            if owned.exists() and fleet.prefix in owned.read_text():
                problems.append(f"{owned} still names a removed box")
    finally:
        fleet.clean()
        shutil.rmtree(root, ignore_errors=True)
    figures["problems"] = problems
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--base", default=DEFAULT_BASE)
    parser.add_argument("--ca", default=DEFAULT_CA)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    figures = run(options.boxes, options.base, options.ca, log=lambda m: print(m, file=sys.stderr, flush=True))
    if options.json:
        print(json.dumps(figures, indent=1))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 1 if figures["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
