"""`deepbox status` with many boxes: N small boxes up (one spec, so one set of cached layers), then
`deepbox status` and `deepbox status --json` timed; target <= 0.5 s with 20 boxes.

    .venv/bin/python bench/status.py [--boxes 20] [--repeat 5] [--base deepbox/debian:bookworm] [--json]

The boxes have no frameworks (`frameworks = []`); each is a real `deepbox up` in its own project
folder, so the first builds the image and the others reuse its layers. Status lists every box on the
engine, so the table also says how many rows it printed. HOME is a temp folder; the boxes are named
bench-<run id>-<i> and removed at the end (`deepbox rm NAME --volumes`, then their image tags).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from deepbox.engine import connect, locate

CA = "/etc/ssl/certs/ca-certificates.crt"


def log(message: str) -> None:
    print(f"[status {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def deepbox(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "deepbox"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def timed(*args: str) -> tuple[float, str]:
    started = time.monotonic()
    done = deepbox(*args, timeout=120)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"deepbox {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return elapsed, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, default=20, help="how many boxes to bring up (default 20)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls of each kind; the median counts")
    parser.add_argument("--base", default="deepbox/debian:bookworm")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix=f"deepbox-bench-status-{run_id}-"))
    saved = dict(os.environ)
    os.environ["HOME"] = str(tmp / "home")
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "SSH_AUTH_SOCK"):
        os.environ.pop(name, None)
    names = [f"bench-{run_id}-{index}" for index in range(args.boxes)]
    made: list[str] = []
    report: dict[str, float | int] = {}
    try:
        started = time.monotonic()
        for name in names:
            project = tmp / name
            project.mkdir(parents=True)
            certs = f'\n[build]\nca_certificates = ["{CA}"]\n' if Path(CA).is_file() else "\n"
            (project / "deepbox.toml").write_text(f'name = "{name}"\nbase = "{args.base}"\nframeworks = []{certs}')
            log(f"up {name}")
            made.append(name)
            up = deepbox("-C", str(project), "up")
            if up.returncode != 0:
                raise RuntimeError(f"deepbox up {name} failed: {up.stderr.strip()[-400:]}")
        report["boxes up s"] = round(time.monotonic() - started, 1)
        plain, listed = [], 0
        as_json = []
        for _ in range(args.repeat):
            elapsed, _out = timed("status")
            plain.append(elapsed)
            elapsed, out = timed("status", "--json")
            as_json.append(elapsed)
            listed = len(json.loads(out))
        report |= {
            "boxes listed": listed,
            "status s": round(statistics.median(plain), 3),
            "status --json s": round(statistics.median(as_json), 3),
        }
    finally:
        for name in made:
            deepbox("-C", str(tmp / name), "rm", "--volumes", timeout=120)
        engine = connect(locate())
        try:
            for name in made:
                for image in engine.images(f"deepbox.box={name}"):
                    for tag in image.tags:
                        engine.untag(tag)
        finally:
            engine.close()
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"| measure ({args.boxes} boxes) | value | target |\n|---|---|---|")
        for key, value in report.items():
            target = "<= 0.5 s" if key.startswith("status") else ""
            print(f"| {key} | {value} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
