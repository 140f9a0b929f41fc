"""Benchmark: how close `deepbox up` and the box's SSH alias come to their raw floors.

Every number is a ratio against a baseline measured in the same run (machines are noisy):

  a) warm `deepbox up` (image built, box stopped with `deepbox down`) until it returns, against
     `docker run -d` of the same image with the same ports/env/volumes plus a tight `ssh ... true`
     polling loop until the first authenticated success;
  b) `ssh <alias> true` through the multiplexed alias (ControlMaster already up) against a fresh
     connection (`-o ControlMaster=no -o ControlPath=none`);
  c) `deepbox --help` wall time (absolute target; `python -c pass` shown for reference).

Then (unless --no-phases) warm `up` runs in-process with timers around each phase, to show where
the time goes. Everything runs under a throwaway HOME with a uniquely named box; everything created
is removed at the end, also on failure or Ctrl-C. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH_LABEL = "deepbox.bench"
RUN_LABEL = "deepbox.bench.run"
DEFAULT_BASE = "deepbox/debian:bookworm"
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"
MUX_CALLS = 5  # ssh calls of each kind per repeat in (b); the repeat's sample is their median
BASELINE_POLL_S = 0.05
READY_TIMEOUT_S = 120.0
BESIDE_PROBE = (
    "framework check (beside the SSH wait)",
    "secrets hand-over (exec, beside the SSH wait)",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class BenchError(Exception):
    pass


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# Commands ---------------------------------------------------------------------------------------


def run(args: list[str], *, timeout: float = 120, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command with captured text output; a failure raises with the command's stderr tail."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    result = subprocess.run(args, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        tail = (result.stderr or result.stdout or "").strip()[-2000:]
        raise BenchError(f"`{' '.join(args[:6])} ...` failed with exit {result.returncode}:\n{tail}")
    return result


def timed_quiet(args: list[str], timeout: float = 60) -> tuple[float, int]:
    """Wall time of a command whose output goes nowhere (no pipes a ControlPersist master could hold)."""
    start = time.perf_counter()
    code = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    ).returncode
    return time.perf_counter() - start, code


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The bench --------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = secrets.token_hex(4)
        self.name = f"bench-{self.run_id}"
        self.alias = f"deepbox-{self.name}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"deepbox-bench-{self.run_id}-"))
        self.home = self.tmp / "home"
        # A name of this run's own: the Dev Containers CLI names its images after the folder.
        self.project = self.tmp / f"dbbench-{self.run_id}"
        self.home.mkdir()
        self.project.mkdir()
        self.deepbox = args.deepbox
        self.baseline_containers: list[str] = []
        self.baseline_volumes: list[str] = []
        self.master_pid: int | None = None
        self.results: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {"box": self.name, "repeat": args.repeat}
        self.box_settings: dict[str, Any] = {}
        self.up_samples: list[float] = []
        self.baseline_split: list[tuple[float, float, int]] = []  # docker run -d, ssh polling, attempts
        self.devcontainer_images: list[str] = []

    # Environment ------------------------------------------------------------------------------

    def isolate(self) -> None:
        """This process and every child see the temp HOME (deepbox keeps keys and ssh config there)."""
        self.saved_env = dict(os.environ)
        os.environ["HOME"] = str(self.home)
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
            os.environ.pop(name, None)
        os.environ.pop("SSH_AUTH_SOCK", None)  # only the box's own key, never the user's agent
        os.environ["DEEPBOX_BENCH_PROJECT"] = str(self.project)

    def restore(self) -> None:
        os.environ.clear()
        os.environ.update(self.saved_env)

    def write_config(self) -> None:
        lines = [f'name = "{self.name}"', f'base = "{self.args.base}"']
        if self.args.frameworks is not None:
            names = [n.strip() for n in self.args.frameworks.split(",") if n.strip()]
            lines.append("frameworks = [" + ", ".join(f'"{n}"' for n in names) + "]")
        lines += ["", "[build]", f'ca_certificates = ["{self.args.ca}"]', ""]
        (self.project / "deepbox.toml").write_text("\n".join(lines))

    def ssh_base(self) -> list[str]:
        from deepbox.ssh import ssh_base_args

        return ssh_base_args()

    def key(self) -> Path:
        from deepbox import paths

        return paths.keys_dir() / self.name / "id_ed25519"

    # deepbox commands ---------------------------------------------------------------------------

    def deepbox_cmd(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run([self.deepbox, "-C", str(self.project), *args], timeout=timeout)

    def cold_up(self) -> None:
        log(f"cold `deepbox up` of box {self.name} (builds the image; minutes on a fresh cache)")
        start = time.perf_counter()
        self.deepbox_cmd("up", "--json", timeout=self.args.build_timeout)
        self.info["cold_up_s"] = round(time.perf_counter() - start, 3)
        log(f"cold up took {self.info['cold_up_s']:.1f} s")

    def timed_up(self) -> float:
        start = time.perf_counter()
        result = self.deepbox_cmd("up", "--json")
        elapsed = time.perf_counter() - start
        action = json.loads(result.stdout).get("action")
        if action != "started":
            raise BenchError(f"warm `deepbox up` was expected to start the stopped box, but it was {action!r}")
        return elapsed

    def down(self) -> None:
        self.deepbox_cmd("down")

    # Baseline: docker run -d + ssh polling ------------------------------------------------------

    def read_box_settings(self) -> None:
        """The box container's image, env, mounts, tmpfs, init and shm size, from `docker inspect`."""
        data = json.loads(run(["docker", "inspect", self.alias]).stdout)[0]
        config, host = data["Config"], data["HostConfig"]
        env = list(config.get("Env") or [])
        user = next((e.split("=", 1)[1] for e in env if e.startswith("DEEPBOX_USER=")), "")
        if not user:
            raise BenchError("the box container has no DEEPBOX_USER in its environment")
        self.box_settings = {
            "image": config["Image"],
            "env": env,
            "user": user,
            "bind": ((host.get("PortBindings") or {}).get("22/tcp") or [{}])[0].get("HostIp") or "127.0.0.1",
            "mounts": [(m["Type"], m.get("Source", ""), m["Destination"], m.get("RW", True)) for m in data["Mounts"]],
            "tmpfs": host.get("Tmpfs") or {},
            "init": bool(host.get("Init")),
            "shm": host.get("ShmSize") or 0,
        }
        self.info["image"] = config["Image"]

    def baseline_prepare(self, index: int) -> tuple[list[str], list[str]]:
        """The `docker run -d` and the ssh probe commands; fresh labelled volumes made beforehand."""
        settings = self.box_settings
        name = f"dbbench-{self.run_id}-{index}"
        port = free_port()
        command = [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--label",
            f"{BENCH_LABEL}=1",
            "--label",
            f"{RUN_LABEL}={self.run_id}",
            "-p",
            f"{settings['bind']}:{port}:22",
        ]
        if settings["init"]:
            command.append("--init")
        if settings["shm"]:
            command += ["--shm-size", str(settings["shm"])]
        for entry in settings["env"]:
            command += ["-e", entry]
        for number, (kind, source, destination, writable) in enumerate(settings["mounts"]):
            suffix = "" if writable else ":ro"
            if kind == "volume":
                volume = f"{name}-v{number}"
                run(
                    [
                        "docker",
                        "volume",
                        "create",
                        "--label",
                        f"{BENCH_LABEL}=1",
                        "--label",
                        f"{RUN_LABEL}={self.run_id}",
                        volume,
                    ]
                )
                self.baseline_volumes.append(volume)
                command += ["-v", f"{volume}:{destination}{suffix}"]
            elif kind == "bind":
                command += ["-v", f"{source}:{destination}{suffix}"]
        for destination, options in settings["tmpfs"].items():
            command += ["--tmpfs", f"{destination}:{options}" if options else destination]
        command.append(settings["image"])
        probe = [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(self.key()),
            "-p",
            str(port),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            f"{settings['user']}@127.0.0.1",
            "true",
        ]
        return command, probe

    def timed_baseline(self, index: int) -> float:
        command, probe = self.baseline_prepare(index)
        start = time.perf_counter()
        container = run(command).stdout.strip()
        self.baseline_containers.append(container)
        started = time.perf_counter()
        attempts = 0
        while True:
            attempts += 1
            result = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
            if result.returncode == 0:
                break
            if time.perf_counter() > start + READY_TIMEOUT_S:
                raise BenchError(f"the baseline container {container[:12]} never answered ssh")
            time.sleep(BASELINE_POLL_S)
        elapsed = time.perf_counter() - start
        self.baseline_split.append((started - start, elapsed - (started - start), attempts))
        self.remove_baseline()
        return elapsed

    def remove_baseline(self) -> None:
        while self.baseline_containers:
            run(["docker", "rm", "-f", self.baseline_containers[-1]], check=False)
            self.baseline_containers.pop()
        while self.baseline_volumes:
            run(["docker", "volume", "rm", "-f", self.baseline_volumes[-1]], check=False)
            self.baseline_volumes.pop()

    # Measurements ---------------------------------------------------------------------------------

    def measure_up(self) -> None:
        repeat = self.args.repeat
        log("warm-up round (not counted): deepbox down/up and one baseline container")
        self.down()
        self.timed_up()
        self.timed_baseline(0)
        ups: list[float] = []
        floors: list[float] = []
        for index in range(repeat):
            self.down()
            # Alternate the order so that drift on the machine hits both sides alike.
            if index % 2 == 0:
                ups.append(self.timed_up())
                floors.append(self.timed_baseline(index + 1))
            else:
                floors.append(self.timed_baseline(index + 1))
                ups.append(self.timed_up())
            log(f"(a) {index + 1}/{repeat}: deepbox up {ups[-1]:.3f} s, docker run + ssh {floors[-1]:.3f} s")
        self.up_samples = ups
        counted = self.baseline_split[-repeat:]
        self.info["baseline_split"] = {
            "docker_run_s": round(median([c[0] for c in counted]), 4),
            "ssh_poll_s": round(median([c[1] for c in counted]), 4),
            "ssh_attempts": median([float(c[2]) for c in counted]),
        }
        self.add_result("a) warm `deepbox up` vs docker run -d + ssh poll", ups, floors, 1.3, "ratio")

    def measure_mux(self) -> None:
        # The box is running (the last step of (a) left it up). Start the alias's ControlMaster.
        base = self.ssh_base()
        elapsed, code = timed_quiet([*base, self.alias, "true"])
        if code != 0:
            raise BenchError(f"`ssh {self.alias} true` failed (exit {code}) after `deepbox up`")
        check = run([*base, "-O", "check", self.alias], check=False)
        text = check.stderr + check.stdout
        if check.returncode != 0 or "pid=" not in text:
            raise BenchError(f"no ControlMaster runs for {self.alias} after the first ssh: {text.strip()}")
        self.master_pid = int(text.split("pid=", 1)[1].split(")", 1)[0])
        log(f"ControlMaster for {self.alias} is up (pid {self.master_pid}, first ssh took {elapsed:.3f} s)")
        mux_cmd = [*base, self.alias, "true"]
        fresh_cmd = [*base, "-o", "ControlMaster=no", "-o", "ControlPath=none", self.alias, "true"]
        mux: list[float] = []
        fresh: list[float] = []
        for index in range(self.args.repeat):
            m_calls: list[float] = []
            f_calls: list[float] = []
            for _ in range(MUX_CALLS):
                for cmd, into in ((mux_cmd, m_calls), (fresh_cmd, f_calls)):
                    elapsed, code = timed_quiet(cmd)
                    if code != 0:
                        raise BenchError(f"`{' '.join(cmd[-4:])}` failed with exit {code}")
                    into.append(elapsed)
            mux.append(median(m_calls))
            fresh.append(median(f_calls))
            log(
                f"(b) {index + 1}/{self.args.repeat}: "
                f"multiplexed {mux[-1] * 1000:.1f} ms, fresh {fresh[-1] * 1000:.1f} ms"
            )
        self.add_result("b) `ssh <alias> true` multiplexed vs fresh", mux, fresh, 0.2, "ratio")

    def measure_devcontainer(self) -> None:
        """(d) and (e): against the Dev Containers CLI, on the Dockerfile `deepbox export devcontainer` writes."""
        cli = shutil.which("devcontainer")
        if cli is None:
            log("no Dev Containers CLI (npm install -g @devcontainers/cli): skipping (d) and (e)")
            return
        self.deepbox_cmd("export", "devcontainer")
        labels = ["--id-label", f"{BENCH_LABEL}=1", "--id-label", f"{RUN_LABEL}={self.run_id}"]
        command = [cli, "up", "--workspace-folder", str(self.project), *labels]
        log("first `devcontainer up` (builds its image from the exported Dockerfile)")
        first = run(command, timeout=self.args.build_timeout)
        container = json.loads(first.stdout.strip().splitlines()[-1])["containerId"]
        image = json.loads(run(["docker", "inspect", container]).stdout)[0]["Config"]["Image"]
        self.devcontainer_images = [image]
        self.info["devcontainer_cli"] = run([cli, "--version"]).stdout.strip()

        def timed(args: list[str], action: str = "") -> float:
            start = time.perf_counter()
            result = run(args, timeout=300)
            elapsed = time.perf_counter() - start
            if action and json.loads(result.stdout).get("action") != action:
                raise BenchError(f"`deepbox up` was expected to find the box {action}")
            return elapsed

        ours_up = [self.deepbox, "-C", str(self.project), "up", "--json"]
        # No ControlMaster: where `up` logs in to a running box (with --check), a fresh login, the slower case.
        run([*self.ssh_base(), "-O", "exit", self.alias], check=False, timeout=10)
        running: tuple[list[float], list[float]] = ([], [])
        restart: tuple[list[float], list[float]] = ([], [])
        timed(ours_up, "running")
        timed(command)  # not counted
        for index in range(self.args.repeat):
            pair = [(lambda: timed(ours_up, "running"), running[0]), (lambda: timed(command), running[1])]
            for measure, into in pair if index % 2 == 0 else reversed(pair):
                into.append(measure())
            run(["docker", "stop", self.alias, container], timeout=120)
            pair = [(lambda: timed(ours_up, "started"), restart[0]), (lambda: timed(command), restart[1])]
            for measure, into in pair if index % 2 == 0 else reversed(pair):
                into.append(measure())
            log(
                f"(d) {index + 1}/{self.args.repeat}: up on a running box {running[0][-1]:.3f} s vs "
                f"{running[1][-1]:.3f} s; (e) restart {restart[0][-1]:.3f} s vs {restart[1][-1]:.3f} s"
            )
        self.add_result("d) `up` on a running box vs `devcontainer up`", *running, 1.0, "ratio")
        self.add_result("e) `docker stop` + `up` vs the same with `devcontainer up`", *restart, 1.0, "ratio")

    def measure_help(self) -> None:
        helps: list[float] = []
        floors: list[float] = []
        timed_quiet([self.deepbox, "--help"])  # warm the page cache
        timed_quiet([sys.executable, "-c", "pass"])
        for _ in range(self.args.repeat):
            elapsed, code = timed_quiet([self.deepbox, "--help"])
            if code != 0:
                raise BenchError(f"`deepbox --help` failed with exit {code}")
            helps.append(elapsed)
            floors.append(timed_quiet([sys.executable, "-c", "pass"])[0])
        log(f"(c) deepbox --help median {median(helps) * 1000:.1f} ms (python -c pass {median(floors) * 1000:.1f} ms)")
        self.add_result("c) `deepbox --help` (baseline: python -c pass)", helps, floors, 0.150, "seconds")

    def add_result(self, name: str, ours: list[float], base: list[float], target: float, kind: str) -> None:
        ours_m, base_m = median(ours), median(base)
        ratio = ours_m / base_m if base_m else float("nan")
        passed = (ratio <= target) if kind == "ratio" else (ours_m <= target)
        self.results.append(
            {
                "measurement": name,
                "deepbox_s": round(ours_m, 4),
                "baseline_s": round(base_m, 4),
                "ratio": round(ratio, 3),
                "target": f"<= {target}" if kind == "ratio" else f"<= {target * 1000:.0f} ms",
                "target_kind": kind,
                "target_value": target,
                "pass": passed,
                "deepbox_samples_s": [round(v, 4) for v in ours],
                "baseline_samples_s": [round(v, 4) for v in base],
            }
        )

    # Phase breakdown ------------------------------------------------------------------------------

    def measure_phases(self) -> None:
        log("phase breakdown: warm `up` in-process with timers around each phase")
        result = run(
            [sys.executable, str(Path(__file__).resolve()), "--phase-worker", "--repeat", str(self.args.repeat)],
            timeout=900,
        )
        phases = json.loads(result.stdout)
        # What a `deepbox` process pays besides its work: the interpreter, the imports, and its end, which
        # deepbox.cli.main makes as a command does (no pydantic plugin search, no interpreter teardown).
        imports = (
            "import os; os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'; "
            "import deepbox.cli, deepbox.box, deepbox.config, deepbox.engine.docker; "
            "deepbox.config.BoxConfig.model_validate({}); os._exit(0)"
        )
        startup = [timed_quiet([sys.executable, "-c", imports])[0] for _ in range(self.args.repeat)]
        phases["process_start_and_imports_s"] = round(median(startup), 4)
        if self.up_samples:
            phases["up_wall_s"] = round(median(self.up_samples), 4)
        self.info["phases"] = phases

    # Cleanup ----------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Remove what this run made, and nothing else; every step is tried even if one fails."""
        steps = [
            ("baseline containers and volumes", self.cleanup_baseline),
            ("ControlMaster", self.cleanup_master),
            ("box", self.cleanup_box),
            ("images", self.cleanup_images),
            ("Dev Containers image", self.cleanup_devcontainer),
            ("temp files", self.cleanup_files),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as exc:
                log(f"cleanup of {what} failed: {exc}")

    def cleanup_baseline(self) -> None:
        self.remove_baseline()
        # Anything labelled with this run's id (e.g. a `docker run` interrupted before it printed its id).
        label = ["--filter", f"label={RUN_LABEL}={self.run_id}"]
        containers = run(["docker", "ps", "-aq", *label], check=False).stdout.split()
        if containers:
            run(["docker", "rm", "-f", *containers], check=False)
        volumes = run(["docker", "volume", "ls", "-q", *label], check=False).stdout.split()
        if volumes:
            run(["docker", "volume", "rm", "-f", *volumes], check=False)

    def cleanup_master(self) -> None:
        if not (self.home / ".ssh" / "config").exists():
            return
        from deepbox.ssh import control_dir

        base = self.ssh_base()
        check = run([*base, "-O", "check", self.alias], check=False, timeout=10)
        text = check.stderr + check.stdout
        pid = int(text.split("pid=", 1)[1].split(")", 1)[0]) if "pid=" in text else self.master_pid
        run([*base, "-O", "exit", self.alias], check=False, timeout=10)
        if pid is None:
            return
        time.sleep(0.2)
        # Our master's command line names our own control directory; only then is it ours to stop.
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if str(control_dir()) in cmdline:
                os.kill(pid, signal.SIGTERM)

    def cleanup_box(self) -> None:
        result = run([self.deepbox, "-C", str(self.project), "rm", self.name, "--volumes"], check=False, timeout=120)
        if result.returncode == 0:
            return
        # deepbox could not remove it (never created, or deepbox broke): remove by our labels only.
        labels = ["--filter", f"label=deepbox.box={self.name}", "--filter", f"label=deepbox.project={self.project}"]
        containers = run(["docker", "ps", "-aq", *labels], check=False).stdout.split()
        if containers:
            run(["docker", "rm", "-f", *containers], check=False)
        volumes = run(["docker", "volume", "ls", "-q", *labels], check=False).stdout.split()
        if volumes:
            run(["docker", "volume", "rm", "-f", *volumes], check=False)

    def cleanup_devcontainer(self) -> None:
        # Its container carries this run's labels (--id-label) and went with the baseline's.
        for image in self.devcontainer_images:
            run(["docker", "rmi", image], check=False)
        tags = run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], check=False).stdout.split()
        for tag in tags:
            if tag.startswith(f"vsc-{self.project.name}-"):
                run(["docker", "rmi", tag], check=False)

    def cleanup_images(self) -> None:
        repository = f"deepbox/{self.name}"
        tags = run(["docker", "images", repository, "--format", "{{.Repository}}:{{.Tag}}"], check=False)
        for tag in tags.stdout.split():
            if tag.startswith(f"{repository}:"):
                run(["docker", "rmi", tag], check=False)

    def cleanup_files(self) -> None:
        from deepbox.ssh import control_dir

        shutil.rmtree(control_dir(), ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # Report ---------------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        return {**self.info, "results": self.results}


def print_table(report: dict[str, Any]) -> None:
    rows = [("measurement", "deepbox", "baseline", "ratio", "target", "result")]
    for r in report["results"]:
        ms = r["target_kind"] == "seconds" or r["deepbox_s"] < 1
        fmt = (lambda s: f"{s * 1000:.1f} ms") if ms else (lambda s: f"{s:.3f} s")
        rows.append(
            (
                r["measurement"],
                fmt(r["deepbox_s"]),
                fmt(r["baseline_s"]),
                f"{r['ratio']:.2f}",
                r["target"],
                "PASS" if r["pass"] else "FAIL",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))
    print(f"\nbox {report['box']}, image {report.get('image', '?')}, medians of {report['repeat']} repeats")
    if "cold_up_s" in report:
        print(f"cold `deepbox up` (image build included, not a target): {report['cold_up_s']:.1f} s")
    split = report.get("baseline_split")
    if split:
        print(
            f"baseline (a) split: docker run -d {split['docker_run_s'] * 1000:.0f} ms, then ssh polling "
            f"{split['ssh_poll_s'] * 1000:.0f} ms ({split['ssh_attempts']:g} attempt(s))"
        )
    phases = report.get("phases")
    if phases:
        print(f"\nwarm `deepbox up`, in-process phase breakdown (median of {phases['repeat']}):")
        for name, seconds in phases["phases_s"].items():
            print(f"  {name:<52} {seconds * 1000:8.1f} ms")
        print(f"  {'= total in-process box.up()':<52} {phases['total_s'] * 1000:8.1f} ms")
        startup = phases["process_start_and_imports_s"] * 1000
        print(f"  {'python start + imports + exit (as `deepbox` does)':<52} {startup:8.1f} ms")
        if "up_wall_s" in phases:
            print(f"  {'`deepbox up` wall time, from (a)':<52} {phases['up_wall_s'] * 1000:8.1f} ms")
        attempts = phases["probe_attempts"]
        if attempts["median_count"]:
            print(
                f"  probe: median {attempts['median_count']:g} ssh attempt(s) per up; failed attempts "
                f"{attempts['failed_median_ms']:.1f} ms each, the successful one {attempts['ok_median_ms']:.1f} ms"
            )
        else:
            print("  probe: no ssh login (the box was logged in to before, with the same settings)")
        print(f"  host key: median {phases['host_key_exec_calls_median']:g} docker exec call(s)")
        print("  floors inside the running box (docker exec as the box user):")
        for name, seconds in phases["box_floors_s"].items():
            print(f"    {name:<50} {seconds * 1000:8.1f} ms")


# Phase worker (runs in a child process, HOME already isolated) ------------------------------------


def phase_worker(repeat: int) -> dict[str, Any]:
    start = time.perf_counter()
    import deepbox.cli  # noqa: F401 - what the CLI imports before it gets to work
    from deepbox import box, config, engine, ssh
    from deepbox.engine.docker import DockerEngine
    from deepbox.site import site_for

    import_s = time.perf_counter() - start
    project = Path(os.environ["DEEPBOX_BENCH_PROJECT"])
    sums: dict[str, float] = defaultdict(float)
    state = {"in_probe": False, "in_host_key": False, "exec_calls": 0}
    nesting = threading.local()
    attempts: list[tuple[float, int]] = []

    def wrap(owner: Any, attr: str, label: str, flag: str | None = None) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def wrapper(*a: Any, **k: Any) -> Any:
            began = time.perf_counter()
            if flag:
                state[flag] = True
            # A phase inside another (the container lookups of the host-key read) counts once, in the outer.
            # (per thread: the framework check runs beside the ssh probe).
            depth = getattr(nesting, "depth", 0)
            nesting.depth = depth + 1
            try:
                return original(*a, **k)
            finally:
                nesting.depth = depth
                if flag:
                    state[flag] = False
                if depth == 0:
                    sums[label] += time.perf_counter() - began

        setattr(owner, attr, wrapper)

    original_exec = DockerEngine.exec

    def counted_exec(self: Any, *a: Any, **k: Any) -> Any:
        if state["in_host_key"]:
            state["exec_calls"] += 1
        return original_exec(self, *a, **k)

    DockerEngine.exec = counted_exec  # type: ignore[method-assign]
    wrap(engine, "connect", "engine connect (client + ping)")
    wrap(DockerEngine, "info", "engine info (kind, rootless)")
    wrap(DockerEngine, "container", "container lookup (inspect)")
    wrap(DockerEngine, "image", "image check (inspect tag)")
    wrap(DockerEngine, "start", "docker start")
    wrap(box, "render", "catalog + render Dockerfile (spec hash)")
    wrap(box.lock, "ensure", "lock freshness (read deepbox.lock, digest)")
    wrap(ssh, "ensure_client_key", "client key check")
    wrap(box, "_host_key", "host key read (docker exec cat, polled 0.1 s)", "in_host_key")
    wrap(ssh, "pin_host_key", "pin host key + write ssh config")
    wrap(ssh, "write_host", "pin host key + write ssh config")
    wrap(ssh, "probe", "ssh login probe loop (polled 0.02 s for 1 s, then 0.3 s)", "in_probe")
    wrap(ssh, "await_greeting", "wait for sshd's greeting (box logged in to before)")
    wrap(box, "verify", BESIDE_PROBE[0])
    wrap(box, "_hand_over", BESIDE_PROBE[1])

    real_run = subprocess.run

    class SubprocessShim:
        def __getattr__(self, name: str) -> Any:
            return getattr(subprocess, name)

        @staticmethod
        def run(*a: Any, **k: Any) -> Any:
            began = time.perf_counter()
            result = real_run(*a, **k)
            if state["in_probe"]:
                attempts.append((time.perf_counter() - began, result.returncode))
            return result

    ssh.subprocess = SubprocessShim()

    class QuietReporter:
        def step(self, message: str) -> None:
            pass

        def build_line(self, line: str) -> None:
            pass

        def build_progress(self) -> Any:
            return contextlib.nullcontext(lambda _event: None)

    per_run: list[dict[str, float]] = []
    totals: list[float] = []
    counts: list[int] = []
    exec_counts: list[int] = []
    failed: list[float] = []
    succeeded: list[float] = []
    floors: dict[str, list[float]] = defaultdict(list)
    location = engine.locate()
    for _ in range(repeat):
        spec = config.load_spec(project)
        site = site_for(location)
        box.down(spec.name, site, QuietReporter())
        site.close()
        sums.clear()
        attempts.clear()
        state["exec_calls"] = 0
        began = time.perf_counter()
        spec = config.load_spec(project)
        sums["load config (deepbox.toml -> Spec)"] += time.perf_counter() - began
        site = site_for(location)
        spec = site.bind(spec)
        result = box.up(spec, site, QuietReporter())
        total = time.perf_counter() - began
        if result.action != "started":
            raise BenchError(f"in-process up was {result.action!r}, expected 'started'")
        # The phases beside the probe run in threads: the time they take is not on top of the probe's.
        serial = sum(seconds for label, seconds in sums.items() if label not in BESIDE_PROBE)
        sums["other (lock, labels, bookkeeping)"] = total - serial
        per_run.append(dict(sums))
        totals.append(total)
        counts.append(len(attempts))
        exec_counts.append(state["exec_calls"])
        failed += [t for t, code in attempts if code != 0]
        succeeded += [t for t, code in attempts if code == 0]
        # What the framework check costs, split up: one docker exec, python's start, each import.
        running = site.engine()
        container = running.container(spec.container_name)
        assert container is not None
        python = f"{box.VENV}/bin/python"
        commands = {"docker exec true": ["true"], "docker exec python -c pass": [python, "-c", "pass"]}
        for framework in box.catalog.resolve(spec.frameworks):
            commands[f"docker exec python -c 'import {framework.module}'"] = [
                python,
                "-c",
                f"import {framework.module}",
            ]
        for name, command in commands.items():
            began = time.perf_counter()
            code, output = running.exec(container, command, user=spec.user.name)
            floors[name].append(time.perf_counter() - began)
            if code != 0:
                raise BenchError(f"`{' '.join(command)}` failed in the box: {output.strip()[-300:]}")
        site.close()
    labels = list(per_run[0])
    return {
        "repeat": repeat,
        "import_s": round(import_s, 4),
        "total_s": round(median(totals), 4),
        "phases_s": {label: round(median([r.get(label, 0.0) for r in per_run]), 4) for label in labels},
        "probe_attempts": {
            "median_count": median([float(c) for c in counts]),
            "failed_median_ms": round(median(failed) * 1000, 1) if failed else 0.0,
            "ok_median_ms": round(median(succeeded) * 1000, 1) if succeeded else 0.0,
        },
        "host_key_exec_calls_median": median([float(c) for c in exec_counts]),
        "box_floors_s": {name: round(median(values), 4) for name, values in floors.items()},
    }


# Entry point ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="repeats per measurement; medians are reported")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"base image of the box [{DEFAULT_BASE}]")
    parser.add_argument("--ca", default=DEFAULT_CA, help=f"CA bundle added at build time [{DEFAULT_CA}]")
    parser.add_argument("--frameworks", default=None, help="comma-separated frameworks for the box [deepbox's default]")
    default_deepbox = Path(sys.executable).with_name("deepbox")
    parser.add_argument(
        "--deepbox",
        default=str(default_deepbox) if default_deepbox.exists() else (shutil.which("deepbox") or "deepbox"),
        help="the deepbox executable [the one beside this python]",
    )
    parser.add_argument("--build-timeout", type=float, default=1800, help="seconds allowed for the cold build")
    parser.add_argument("--no-phases", action="store_true", help="skip the in-process phase breakdown")
    parser.add_argument(
        "--no-devcontainer", action="store_true", help="skip (d) and (e), the Dev Containers CLI comparison"
    )
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--phase-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase_worker:
        print(json.dumps(phase_worker(args.repeat)))
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    bench = Bench(args)
    bench.isolate()
    code = 0
    try:
        log(f"HOME={bench.home}, project {bench.project}, box {bench.name}")
        bench.write_config()
        bench.measure_help()
        bench.cold_up()
        bench.read_box_settings()
        bench.measure_up()
        bench.measure_mux()
        if not args.no_devcontainer:
            bench.measure_devcontainer()
        if not args.no_phases:
            bench.measure_phases()
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    except (BenchError, subprocess.TimeoutExpired) as exc:
        log(f"failed: {exc}")
        code = 1
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            log("cleaning up")
            bench.cleanup()
        finally:
            bench.restore()
            signal.signal(signal.SIGINT, previous)
    report = bench.report()
    if bench.results:
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_table(report)
    if code == 0 and args.fail_on_miss and not all(r["pass"] for r in bench.results):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
