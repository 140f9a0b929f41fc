"""Locks: how long locking takes, and building from a lock against today's unlocked build.

    .venv/bin/python bench/lock.py [--base deepbox/debian:bookworm] [--repeat 3] [--wheels DIR]

a) `deepbox lock` wall time (the CLI, as a user runs it) for the scientific preset (CPU), PyTorch
   (CUDA, PyPI's build) and `all` (CPU; PyTorch's CPU wheel from --wheels when given, since
   download.pytorch.org may be unreachable), with uv's cache cold (a new cache folder) and warm;
   medians of --repeat runs.
b) cold build (no layer cache) of the scientific preset from its lock vs the same set unlocked (the
   Dockerfile installing from specifiers, as deepbox did before locks), same base, same run:
   time and image size.
c) rebuild after adding one pip package, locked: the re-lock plus the cached build, against the
   cold locked build. Target <= 0.15x.

HOME and uv's cache live in a temp folder; every image is labelled deepbox.bench=lock and removed at
the end, with the build cache the run added.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import buildcache

from deepbox import baseimage, lock
from deepbox.config import load_spec
from deepbox.dockerfile import render
from deepbox.engine import Engine, connect, locate
from deepbox.model import BuildContext

LABEL = {"deepbox.bench": "lock"}
CA = "/etc/ssl/certs/ca-certificates.crt"


def log(message: str) -> None:
    print(f"[lock {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def project(root: Path, name: str, body: str, base: str, wheels: str | None) -> Path:
    folder = root / name
    folder.mkdir()
    links = f'find_links = ["{wheels}"]\n' if wheels else ""
    (folder / "deepbox.toml").write_text(
        f'name = "{name}"\nbase = "{base}"\nrequirements = "off"\n{body}\n[build]\nca_certificates = ["{CA}"]\n{links}'
    )
    return folder


def timed_lock(folder: Path, env: dict[str, str]) -> float:
    (folder / "deepbox.lock").unlink(missing_ok=True)
    deepbox = str(Path(sys.executable).parent / "deepbox")
    started = time.monotonic()
    done = subprocess.run([deepbox, "-C", str(folder), "lock"], capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"deepbox lock in {folder.name} failed: {done.stderr.strip()[-400:]}")
    return elapsed


def build(engine: Engine, context: BuildContext, tag: str, nocache: bool) -> float:
    started = time.monotonic()
    engine.build(context, tag, LABEL, None, lambda _line: None, no_cache=nocache)
    return time.monotonic() - started


class Quiet:
    def step(self, message: str) -> None:
        log(message)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="deepbox/debian:bookworm")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--wheels",
        default=os.environ.get("DEEPBOX_BENCH_WHEELS") or None,
        metavar="DIR",
        help="a folder with PyTorch's CPU wheel for `all` (default: $DEEPBOX_BENCH_WHEELS; none: the indexes)",
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    client = connect(locate())
    rows: list[tuple[str, str, str, str]] = []
    results: dict[str, object] = {}
    cache_before = buildcache.record_ids(client)
    with tempfile.TemporaryDirectory(prefix="deepbox-bench-lock-") as scratch:
        root = Path(scratch)
        home = root / "home"
        home.mkdir()
        env = {**os.environ, "HOME": str(home)}
        for name in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "UV_CACHE_DIR"):
            env.pop(name, None)
        os.environ.update(HOME=str(home))
        try:
            # a) lock time ---------------------------------------------------------------------------
            sets = {
                "scientific (cpu)": 'frameworks = ["scientific"]',
                "pytorch (cuda, PyPI)": 'frameworks = ["pytorch"]\ndevice = "cuda"',
                "all (cpu)": 'frameworks = ["all"]' + ("\nframework_indexes = false" if args.wheels else ""),
            }
            for index, (label, body) in enumerate(sets.items()):
                folder = project(root, f"set{index}", body, args.base, args.wheels if "all" in label else None)
                cold, warm = [], []
                for attempt in range(args.repeat):
                    cold_env = {**env, "UV_CACHE_DIR": str(root / f"uv-cold-{index}-{attempt}")}
                    cold.append(timed_lock(folder, cold_env))
                    warm.append(timed_lock(folder, {**env, "UV_CACHE_DIR": str(root / "uv-warm")}))
                (variant,) = lock.read(folder).values()
                packages = len(variant.packages)
                log(f"{label}: {packages} packages, cold {min(cold):.2f}-{max(cold):.2f}s, warm {min(warm):.2f}s")
                rows.append((f"lock {label}, {packages} packages", f"{statistics.median(cold):.2f} s cold",
                             f"{statistics.median(warm):.2f} s warm", ""))  # fmt: skip
                results[label] = {"packages": packages, "cold": cold, "warm": warm}

            # b) cold build from the lock vs unlocked ------------------------------------------------
            folder = project(root, "build", 'frameworks = ["scientific"]', args.base, None)
            spec = load_spec(folder)
            facts = baseimage.facts(client, args.base)
            variant = lock.ensure(spec, facts, Quiet())
            locked_context = render(spec, facts=facts, lock=variant)
            unlocked_context = render(spec, facts=facts)
            times: dict[str, list[float]] = {"locked": [], "unlocked": []}
            for attempt in range(2):  # alternate the order so drift hits both sides
                order = ["locked", "unlocked"] if attempt % 2 == 0 else ["unlocked", "locked"]
                for side in order:
                    context = locked_context if side == "locked" else unlocked_context
                    log(f"cold build, {side} (round {attempt + 1})")
                    times[side].append(build(client, context, f"deepbox-bench/lock-{side}:cold", True))
            sizes = {side: client.image(f"deepbox-bench/lock-{side}:cold").size / 1e6 for side in times}
            locked, unlocked = statistics.median(times["locked"]), statistics.median(times["unlocked"])
            rows.append(("cold build, scientific preset", f"{locked:.1f} s locked", f"{unlocked:.1f} s unlocked",
                         f"{locked / unlocked:.2f}x"))  # fmt: skip
            rows.append(("image size", f"{sizes['locked']:.0f} MB locked", f"{sizes['unlocked']:.0f} MB unlocked",
                         f"{sizes['locked'] / sizes['unlocked']:.2f}x"))  # fmt: skip
            results["build"] = {"times": times, "sizes": sizes}

            # c) one more pip package ----------------------------------------------------------------
            (folder / "deepbox.toml").write_text((folder / "deepbox.toml").read_text().replace(
                'frameworks = ["scientific"]', 'frameworks = ["scientific"]\npip = ["rich"]'))  # fmt: skip
            started = time.monotonic()
            spec = load_spec(folder)
            variant = lock.ensure(spec, facts, Quiet())
            relock = time.monotonic() - started
            rebuild = build(client, render(spec, facts=facts, lock=variant), "deepbox-bench/lock-locked:plus", False)
            rows.append(("re-lock + rebuild after adding one pip package", f"{relock + rebuild:.1f} s",
                         f"{locked:.1f} s cold", f"{(relock + rebuild) / locked:.2f}x (target <= 0.15x)"))  # fmt: skip
            results["plus_one"] = {"relock": relock, "rebuild": rebuild}
        finally:
            for image in client.images("deepbox.bench=lock"):
                for tag in image.tags:
                    client.untag(tag)
                if not image.tags:  # an earlier round's build, whose tag the next round took
                    client.untag(image.id)
            log(f"removed this run's build cache: {buildcache.remove_new(client, cache_before):.1f} GB")
            client.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| measure | deepbox | baseline | ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
