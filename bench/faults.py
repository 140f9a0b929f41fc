"""Fault injection: SIGKILL `deepbox up`, `rm`, `lock` or `sync` at random moments, then check what they left.

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

With `--host ssh://user@server[:port]` the trials are `deepbox sync`s to that server instead (the user's
~/.ssh copied as-is into the throwaway HOME, the agent kept): the project holds a few hundred small files
and one larger one, and each trial rewrites the larger one and some small ones. Then the children must
be gone within SYNC_GRACE_S (rsync ends with deepbox), there is no engine to check, and the recovery is
a plain `deepbox sync` after which the server folder lists the same files with the same sizes as the
project.

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
from urllib.parse import urlsplit

DEFAULT_BASE = "deepbox/debian:bookworm"
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"
TEMP_NAME = re.compile(r"^\..+\.(tmp|new-\w+|old-\w+)$")
CONTROL_DIR = re.compile(r"^deepbox-[^-]+-[0-9a-f]{8}$")
CHILDREN_GRACE_S = 15.0
# rsync (and the ssh under it) ends with a killed `deepbox sync` rather than finishing the copy alone.
SYNC_GRACE_S = 1.0
SMALL_FILES = 300
LARGE_FILE_BYTES = 128 * 1024 * 1024  # rsync copies it for seconds: a kill lands mid-copy


@dataclass
class Box:
    """A project folder with a small box (no frameworks) under a private HOME."""

    project: Path
    home: Path
    name: str
    base: str = DEFAULT_BASE
    ca: str = DEFAULT_CA
    env: dict[str, str] = field(default_factory=dict)  # more environment for deepbox
    host: str = ""  # a server's ssh:// URL: the box is a server box, and the trials are syncs

    @property
    def alias(self) -> str:
        return f"deepbox-{self.name}"

    def write_config(self, env_value: str = "0") -> None:
        # A changed env value makes `up` recreate the box: the kill then lands in remove/create/start too.
        ca = f'\n[build]\nca_certificates = ["{self.ca}"]\n' if self.ca and Path(self.ca).exists() else ""
        host = f'host = "{self.host}"\n' if self.host else ""
        (self.project / "deepbox.toml").write_text(
            f'name = "{self.name}"\n{host}base = "{self.base}"\nframeworks = []\n'
            f'[env]\nFAULT_TRIAL = "{env_value}"\n{ca}'
        )

    @property
    def tmp(self) -> Path:
        """deepbox's TMPDIR here: a folder of its own, so what a killed command left there shows."""
        return self.home.parent / f"{self.name}-tmp"

    def environ(self) -> dict[str, str]:
        # A server is reached with the user's own keys: their agent too.
        env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and (k != "SSH_AUTH_SOCK" or self.host)}
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


def kill_at(box: Box, args: list[str], delay: float, grace: float = CHILDREN_GRACE_S) -> list[str]:
    """Run deepbox ARGS, SIGKILL it after DELAY seconds (if still running); what its children left after GRACE."""
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
    deadline = time.monotonic() + grace
    while (left := group_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [f"a child still runs {grace:g} s after the kill: {line}" for line in left]


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
    if box.host:  # a server box: the engine is the server's, and `sync` never touches it
        return [*temp_files(box, recovered), *broken_files(box)]
    containers = docker_names("ps", "-a", "--filter", f"label=deepbox.box={box.name}")
    if set(containers) - {f"deepbox-{box.name}"}:
        problems.append(f"orphan containers: {containers}")
    volumes = docker_names("volume", "ls", "--filter", f"label=deepbox.box={box.name}")
    if set(volumes) - {f"deepbox-{box.name}-home", f"deepbox-{box.name}-hostkeys"}:
        problems.append(f"orphan volumes: {volumes}")
    return [*problems, *temp_files(box, recovered), *broken_files(box)]


def temp_files(box: Box, recovered: bool) -> list[str]:
    problems = []
    for folder in (box.home, box.project) if recovered else ():  # the next write of that file removes it
        for path in folder.rglob("*"):
            if TEMP_NAME.match(path.name):
                problems.append(f"temp file left: {path}")
    # The one thing deepbox keeps in TMPDIR is the folder of ControlMaster sockets (deepbox-USER-HASH).
    if recovered:
        problems += [f"temp file left: {p}" for p in box.tmp.glob("*") if not CONTROL_DIR.match(p.name)]
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
            continue  # locks/*.lock are the empty flock files, not deepbox.lock
        try:
            parse(path.read_text())
        except Exception as exc:
            problems.append(f"{path} does not parse: {exc}")
    return problems


def recovers(box: Box, command: str) -> list[str]:
    if command == "sync":
        return sync_recovers(box)
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


def sync_recovers(box: Box) -> list[str]:
    again = box.run("sync")
    if again.returncode != 0:
        return [f"the next `deepbox sync` failed (exit {again.returncode}): {again.stderr.strip()[-400:]}"]
    here, there = project_listing(box), server_listing(box)
    if here != there:
        differ = sorted(set(here.items()) ^ set(there.items()))[:5]
        return [f"the server folder differs from the project after the next sync (path, size): {differ}"]
    return []


def project_listing(box: Box) -> dict[str, int]:
    return {str(p.relative_to(box.project)): p.stat().st_size for p in box.project.rglob("*") if p.is_file()}


def server_command(box: Box, command: str) -> subprocess.CompletedProcess[str]:
    """COMMAND on the server, with the ssh config of the box's HOME (and no ControlMaster of deepbox's)."""
    parts = urlsplit(box.host)
    destination = f"{parts.username}@{parts.hostname}" if parts.username else str(parts.hostname)
    port = ["-p", str(parts.port)] if parts.port else []
    config = box.home / ".ssh" / "config"
    return subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", *port, destination, command],
        capture_output=True, text=True, timeout=120, check=False, env=box.environ(),
    )  # fmt: skip


def server_listing(box: Box) -> dict[str, int]:
    """The files of the box's server folder (remote_path's default, ~/deepbox/NAME) with their sizes."""
    found = server_command(box, f"cd deepbox/{box.name} && find . -type f -printf '%P\\t%s\\n'")
    if found.returncode != 0:
        raise RuntimeError(f"listing the server folder failed: {found.stderr.strip()}")
    return {path: int(size) for path, size in (line.split("\t") for line in found.stdout.splitlines())}


def fill_project(box: Box, rng: random.Random, trial: int) -> None:
    """A few hundred small files in folders and one larger file; later trials rewrite the larger one and a
    tenth of the small ones, so that every sync has something to copy."""
    for number in range(SMALL_FILES):
        if trial == 0 or rng.random() < 0.1:
            path = box.project / f"src{number % 10}" / f"file{number}.py"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(rng.randbytes(rng.randrange(100, 4000)))
    (box.project / "data.bin").write_bytes(rng.randbytes(LARGE_FILE_BYTES))


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
    """Killed `up`s (each recreating the box), `rm`s and `lock --upgrade`s (a full re-resolve), drawn at random;
    for a server box, killed `sync`s."""
    if box.host:
        return run_sync_trials(box, trials, rng, log)
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


def run_sync_trials(box: Box, trials: int, rng: random.Random, log=print) -> list[Trial]:
    fill_project(box, rng, 0)
    timed(box, "sync")  # the first copy: also makes the server folder and the ControlMaster
    fill_project(box, rng, 1)
    duration = timed(box, "sync")  # a sync of changed files, as the trials' are
    log(f"a sync of the changed files takes {duration:.2f} s")
    done = []
    for number in range(trials):
        fill_project(box, rng, number + 2)
        trial = Trial("sync", rng.uniform(0, duration))
        trial.problems += kill_at(box, ["sync"], trial.delay, SYNC_GRACE_S)
        trial.problems += leftovers(box, recovered=False)
        trial.problems += recovers(box, "sync")
        trial.problems += leftovers(box, recovered=True)
        log(f"trial {number + 1}/{trials}: sync killed at {trial.delay:.2f} s: {'; '.join(trial.problems) or 'ok'}")
        done.append(trial)
    return done


def close_masters(box: Box) -> None:
    """End the ControlMasters deepbox opened under the box's HOME (they persist by design)."""
    where = [sys.executable, "-c", "from deepbox import ssh; print(ssh.control_dir())"]
    folder = Path(subprocess.run(where, capture_output=True, text=True, env=box.environ(), check=True).stdout.strip())
    config = box.home / ".ssh" / "config"
    for socket_path in folder.glob("*") if folder.is_dir() else ():
        subprocess.run(["ssh", "-F", str(config), "-o", f"ControlPath={socket_path}", "-O", "exit", "unused"],
                       capture_output=True, check=False, timeout=10)  # fmt: skip


def clean_server(box: Box) -> None:
    """Remove the box's server folder (the bench made it) and the ControlMasters."""
    server_command(box, f"rm -rf -- deepbox/{box.name}")
    close_masters(box)


def clean(box: Box) -> None:
    if box.host:
        return clean_server(box)
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


def not_plain_files(folder: str, names: list[str]) -> list[str]:
    """What copytree leaves out of ~/.ssh: ControlMaster sockets and the like."""
    return [name for name in names if not (Path(folder, name).is_file() or Path(folder, name).is_dir())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--base", default=DEFAULT_BASE)
    parser.add_argument("--ca", default=DEFAULT_CA)
    parser.add_argument("--host", default="", help="ssh://user@server[:port]: SIGKILL `deepbox sync` to it instead")
    options = parser.parse_args()
    if options.host and urlsplit(options.host).scheme != "ssh":
        parser.error(
            f"--host {options.host!r} is not an ssh URL; write it as ssh://user@server or ssh://user@server:2222."
        )
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    print(f"seed {seed}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="deepbox-faults-"))
    box = Box(work / "project", work / "home", f"faults-{secrets.token_hex(3)}", options.base, options.ca)
    box.host = options.host
    box.project.mkdir()
    box.home.mkdir()
    if box.host and (Path.home() / ".ssh").is_dir():  # the user's ssh config, keys and known hosts, as they are
        shutil.copytree(Path.home() / ".ssh", box.home / ".ssh", symlinks=True, ignore=not_plain_files)
    box.write_config()
    try:
        schedule = random.Random(seed)  # noqa: S311 (a reproducible schedule, not a secret)
        trials = run_trials(box, options.trials, schedule, log=lambda m: print(m, flush=True))
    except RuntimeError as exc:  # a command the trials rest on failed before any kill
        print(f"faults.py: {exc}", file=sys.stderr)
        return 1
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
