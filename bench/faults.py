"""Fault injection: SIGKILL `deepbox up`, `rm` and `lock` at random moments, then check what they left.

Each trial starts the command as its own process (in its own process group), sleeps a random time
within the command's measured duration, and SIGKILLs deepbox alone, as the OOM killer would. Then:

- children: every process left in the command's process group exits within 15 s (the ssh probes
  up starts are short-lived); none may linger;
- orphans: the engine holds at most the box's container `deepbox-NAME`, and no volume but the box's
  two; a container the next `up` cannot adopt counts as an orphan (the recovery below finds it);
- temp files: none of deepbox's temporary names (`.FILE.*.tmp`, `.FOLDER.new-*`, `.FOLDER.old-*`) in
  HOME or the project, and nothing in its TMPDIR (a folder of its own) but the ControlMaster folder;
- files deepbox owns: the ssh config it owns and ~/.ssh/config parse (`ssh -G ALIAS` exits 0), every
  known_hosts line has three fields, every JSON/TOML/XML file under deepbox's data folder and the
  project's deepbox.lock parses;
- recovery: a plain `deepbox up` (no flag; after a killed `lock --upgrade`, that command again first) exits 0
  and `ssh ALIAS true` answers through the alias; then the checks above run again, TMPDIR's included.

The seed is printed; `--seed N` repeats a run. Everything runs under a throwaway HOME with a box named
`faults-<random>`, removed at the end (also on failure). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BASE = "deepbox/debian:bookworm"
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"
TEMP_NAME = re.compile(r"^\..+\.(tmp|new-\w+|old-\w+)$")
CONTROL_DIR = re.compile(r"^deepbox-[^-]+-[0-9a-f]{8}$")
CHILDREN_GRACE_S = 15.0


@dataclass
class Box:
    """A project folder with a small box (no frameworks) under a private HOME."""

    project: Path
    home: Path
    name: str
    base: str = DEFAULT_BASE
    ca: str = DEFAULT_CA
    env: dict[str, str] = field(default_factory=dict)  # more environment for deepbox

    @property
    def alias(self) -> str:
        return f"deepbox-{self.name}"

    def write_config(self, env_value: str = "0") -> None:
        # A changed env value makes `up` recreate the box: the kill then lands in remove/create/start too.
        ca = f'\n[build]\nca_certificates = ["{self.ca}"]\n' if self.ca and Path(self.ca).exists() else ""
        (self.project / "deepbox.toml").write_text(
            f'name = "{self.name}"\nbase = "{self.base}"\nframeworks = []\n[env]\nFAULT_TRIAL = "{env_value}"\n{ca}'
        )

    @property
    def tmp(self) -> Path:
        """deepbox's TMPDIR here: a folder of its own, so what a killed command left there shows."""
        return self.home.parent / f"{self.name}-tmp"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "SSH_AUTH_SOCK"}
        self.tmp.mkdir(exist_ok=True)
        return {**env, "HOME": str(self.home), "TMPDIR": str(self.tmp), **self.env}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "deepbox.cli", "-C", str(self.project), *args]

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, env=self.environ(), timeout=timeout, check=False
        )

    def ssh(self, command: str = "true") -> subprocess.CompletedProcess[str]:
        config = self.home / ".ssh" / "config"
        return subprocess.run(
            ["ssh", "-F", str(config), "-o", "BatchMode=yes", self.alias, command],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip


@dataclass
class Trial:
    command: str
    delay: float
    problems: list[str] = field(default_factory=list)


def kill_at(box: Box, args: list[str], delay: float) -> list[str]:
    """Run deepbox ARGS, SIGKILL it after DELAY seconds (if still running); what its children left."""
    proc = subprocess.Popen(
        box.command(*args),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env=box.environ(), start_new_session=True,
    )  # fmt: skip
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)  # deepbox alone, not its process group
        proc.wait()
    deadline = time.monotonic() + CHILDREN_GRACE_S
    while (left := group_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [f"a child still runs {CHILDREN_GRACE_S:.0f} s after the kill: {line}" for line in left]


def group_members(pgid: int) -> list[str]:
    """Processes of the process group, as 'pid: command line'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command.strip()}")
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


def leftovers(box: Box, recovered: bool) -> list[str]:
    """What a killed command may have left: orphans on the engine, temp files, broken files. A killed
    process cannot remove its temp folder in TMPDIR: the next command of its kind does (recovered)."""
    problems: list[str] = []
    containers = docker_names("ps", "-a", "--filter", f"label=deepbox.box={box.name}")
    if set(containers) - {f"deepbox-{box.name}"}:
        problems.append(f"orphan containers: {containers}")
    volumes = docker_names("volume", "ls", "--filter", f"label=deepbox.box={box.name}")
    if set(volumes) - {f"deepbox-{box.name}-home", f"deepbox-{box.name}-hostkeys"}:
        problems.append(f"orphan volumes: {volumes}")
    for folder in (box.home, box.project) if recovered else ():  # the next write of that file removes it
        for path in folder.rglob("*"):
            if TEMP_NAME.match(path.name):
                problems.append(f"temp file left: {path}")
    # The one thing deepbox keeps in TMPDIR is the folder of ControlMaster sockets (deepbox-USER-HASH).
    if recovered:
        problems += [f"temp file left: {p}" for p in box.tmp.glob("*") if not CONTROL_DIR.match(p.name)]
    problems += broken_files(box)
    return problems


def broken_files(box: Box) -> list[str]:
    problems = []
    data = box.home / ".local" / "share" / "deepbox"
    config = box.home / ".ssh" / "config"
    if config.exists():
        check = subprocess.run(
            ["ssh", "-F", str(config), "-G", box.alias], capture_output=True, text=True, timeout=10, check=False
        )
        if check.returncode != 0:
            problems.append(f"ssh -G {box.alias} fails: {check.stderr.strip()}")
    known = data / "known_hosts"
    if known.exists() and any(len(line.split()) != 3 for line in known.read_text().splitlines()):
        problems.append(f"a malformed line in {known}")
    owned = data / "ssh_config"
    if owned.exists() and owned.read_text().count("# deepbox box: ") != owned.read_text().count("# end deepbox box: "):
        problems.append(f"an unterminated Host block in {owned}")
    parsers = {".json": json.loads, ".toml": tomllib.loads, ".lock": tomllib.loads, ".xml": ElementTree.fromstring}
    files = [
        *data.rglob("*"),
        box.project / "deepbox.lock",
        *box.project.glob(".vscode/*"),
        *box.project.glob(".idea/*"),
    ]
    for path in files:
        parse = parsers.get(path.suffix)
        if parse is None or not path.is_file() or path.parent.name == "locks":
            continue  # locks/*.lock are filelock's empty files, not deepbox.lock
        try:
            parse(path.read_text())
        except Exception as exc:
            problems.append(f"{path} does not parse: {exc}")
    return problems


def recovers(box: Box, command: str) -> list[str]:
    if command.startswith("lock"):  # the user runs it again: its resolve removes the killed one's temp folder
        again = box.run(*command.split())
        if again.returncode != 0:
            return [f"the next `deepbox {command}` failed (exit {again.returncode}): {again.stderr.strip()[-400:]}"]
    up = box.run("up")
    if up.returncode != 0:
        return [f"the next `deepbox up` failed (exit {up.returncode}): {up.stderr.strip()[-400:]}"]
    answer = box.ssh()
    if answer.returncode != 0:
        return [f"ssh {box.alias} true fails after the recovering up: {answer.stderr.strip()[-300:]}"]
    return []


def docker_names(*args: str) -> list[str]:
    out = subprocess.run(["docker", *args, "--format", "{{.Names}}" if args[0] == "ps" else "{{.Name}}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    return out.split()


def timed(box: Box, *args: str) -> float:
    start = time.perf_counter()
    result = box.run(*args)
    if result.returncode != 0:
        raise RuntimeError(f"deepbox {' '.join(args)} failed: {result.stderr.strip()[-600:]}")
    return time.perf_counter() - start


COMMANDS = ("up", "up", "rm", "rm --volumes", "lock --upgrade")


def run_trials(box: Box, trials: int, rng: random.Random, log=print, commands=COMMANDS) -> list[Trial]:
    """Killed `up`s (each recreating the box), `rm`s and `lock --upgrade`s (a full re-resolve), drawn at random."""
    timed(box, "up")  # builds the image: not a duration to aim the kills at
    box.write_config("measure")
    durations = {"up": timed(box, "up")}  # a recreating up, as the trials' are
    durations["rm"] = timed(box, "rm")
    durations["lock"] = timed(box, "lock", "--upgrade")
    timed(box, "up")
    done = []
    for number in range(trials):
        command = rng.choice(commands)
        delay = rng.uniform(0, durations[command.split()[0]])
        if command == "up":
            box.write_config(str(number))
        trial = Trial(command, delay)
        trial.problems += kill_at(box, command.split(), delay)
        trial.problems += leftovers(box, recovered=False)
        trial.problems += recovers(box, command)
        trial.problems += leftovers(box, recovered=True)
        log(f"trial {number + 1}/{trials}: {command} killed at {delay:.2f} s: {'; '.join(trial.problems) or 'ok'}")
        done.append(trial)
    return done


def clean(box: Box) -> None:
    box.run("rm", "--volumes", timeout=120)
    config = box.home / ".ssh" / "config"
    subprocess.run(["ssh", "-F", str(config), "-O", "exit", box.alias], capture_output=True, check=False, timeout=10)
    for kind, listing in (("rm", ("ps", "-aq")), ("volume rm", ("volume", "ls", "-q"))):
        ids = subprocess.run(["docker", *listing, "--filter", f"label=deepbox.box={box.name}"],
                             capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
        if ids:
            subprocess.run(["docker", *kind.split(), "-f", *ids], capture_output=True, check=False)
    tags = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"deepbox/{box.name}"],
                          capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
    if tags:
        subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--base", default=DEFAULT_BASE)
    parser.add_argument("--ca", default=DEFAULT_CA)
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    print(f"seed {seed}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="deepbox-faults-"))
    box = Box(work / "project", work / "home", f"faults-{secrets.token_hex(3)}", options.base, options.ca)
    box.project.mkdir()
    box.home.mkdir()
    box.write_config()
    try:
        schedule = random.Random(seed)  # noqa: S311 (a reproducible schedule, not a secret)
        trials = run_trials(box, options.trials, schedule, log=lambda m: print(m, flush=True))
    finally:
        clean(box)
        shutil.rmtree(work, ignore_errors=True)
    print("\n| scenario | trials | failures |\n|---|---|---|")
    for command in sorted({t.command for t in trials}):
        some = [t for t in trials if t.command == command]
        print(f"| SIGKILL `{command}` | {len(some)} | {sum(1 for t in some if t.problems)} |")
    return 1 if any(t.problems for t in trials) else 0


if __name__ == "__main__":
    sys.exit(main())
