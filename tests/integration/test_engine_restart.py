"""The engine restarting in the middle of `deepbox up`, and while a box runs, on a private Docker engine
this module starts and stops itself (restarting the shared one would break every other user of it).

The engine is a second rootful `dockerd` with its own socket, --data-root on a tmpfs, --exec-root and
pidfile in a folder of its own, and a bridge of its own without iptables rules (published ports go
through docker-proxy; builds use the host's network, as the box needs none of its own here). It gets
the base image with `docker save | load`. Each trial stops the engine at a moment read from `up`'s
progress lines on stderr, starts it again once `up` has ended, and checks what the reliability promise
says: a non-zero exit whose last line is the one sentence naming the engine, no container or volume on
the engine but the box's own, deepbox's files parse (`ssh -G ALIAS`), and a plain `deepbox up` then
brings the box up and `ssh ALIAS true` answers. Everything (engine, mounts, bridge, HOME) is removed at
the end, also on failure.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BASE_IMAGE, CA_BUNDLE, PREFIX, RUN_ID
from test_faults import faults  # bench/faults.py, loaded there

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a private dockerd, its tmpfs and its bridge need root")

WENT_AWAY = re.compile(
    r"^Error: The Docker engine at (?P<url>\S+) \(host in deepbox\.toml\) went away while deepbox was trying to "
    r"(?P<action>.+) \(it stopped or restarted\); once it runs again \(start it if it does not come back by "
    r"itself\), run the command again\.$"
)


@dataclass
class PrivateEngine:
    folder: Path
    bridge: str
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.folder / 'docker.sock'}"

    def docker(self, *args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "-H", self.url, *args], capture_output=True, text=True, stdin=stdin, timeout=300, check=False
        )

    def start(self) -> None:
        command = [
            "dockerd", "--data-root", str(self.folder / "data"), "--exec-root", str(self.folder / "exec"),
            "--pidfile", str(self.folder / "docker.pid"), "-H", self.url, f"--bridge={self.bridge}",
            "--iptables=false", "--ip-masq=false",
        ]  # fmt: skip
        log = (self.folder / "dockerd.log").open("a")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(300):
            if self.docker("version").returncode == 0:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"the private engine did not start: {(self.folder / 'dockerd.log').read_text()[-1500:]}")

    def stop(self) -> None:
        """SIGTERM, as `systemctl stop docker` sends: dockerd stops its containers and containerd, then exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def engine() -> Iterator[PrivateEngine]:
    if missing := [tool for tool in ("dockerd", "ip", "docker-proxy") if shutil.which(tool) is None]:
        pytest.skip(f"{', '.join(missing)} not installed")
    folder = Path(tempfile.mkdtemp(prefix=f"deepbox-{RUN_ID}-engine-"))
    (folder / "data").mkdir()
    private = PrivateEngine(folder, f"dbx{RUN_ID}")
    subnet = int(RUN_ID, 16) % 250 + 1  # 10.213.N.0/24: unlikely to meet another network here
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", str(folder / "data")], check=True)
        subprocess.run(["ip", "link", "add", private.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"10.213.{subnet}.1/24", "dev", private.bridge], check=True)
        subprocess.run(["ip", "link", "set", private.bridge, "up"], check=True)
        private.start()
        save = subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE)
        loaded = private.docker("load", stdin=save.stdout.fileno() if save.stdout else None)
        assert save.wait() == 0 and loaded.returncode == 0, loaded.stderr
        yield private
    finally:
        private.stop()
        # A build the engine left mid-way can leave its overlay mounted under the data root.
        subprocess.run(["umount", "-R", "-l", str(folder / "data")], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", private.bridge], capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def box(engine) -> Iterator[faults.Box]:
    work = Path(tempfile.mkdtemp(prefix=f"deepbox-{RUN_ID}-restart-"))
    made = faults.Box(work / "project", work / "home", f"{PREFIX}-restart", BASE_IMAGE, CA_BUNDLE)
    made.project.mkdir()
    made.home.mkdir()
    os.chown(made.project, 4242, 4243)
    try:
        yield made
    finally:
        config = made.home / ".ssh" / "config"
        subprocess.run(["ssh", "-F", str(config), "-O", "exit", made.alias], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def configure(box: faults.Box, engine: PrivateEngine, trial: str) -> None:
    """A small box on the private engine; a new [env] value makes `up` recreate it."""
    (box.project / "deepbox.toml").write_text(
        f'name = "{box.name}"\nbase = "{box.base}"\nhost = "{engine.url}"\nframeworks = []\n'
        f'[env]\nRESTART_TRIAL = "{trial}"\n[build]\nnetwork = "host"\nca_certificates = ["{box.ca}"]\n'
    )


def up_with_engine_stopped(box: faults.Box, engine: PrivateEngine, moment: str) -> tuple[int, list[str], bool]:
    """`deepbox up`, the engine stopped on the first stderr line matching `moment` and started again once
    `up` has ended: its exit code, its stderr lines, and whether the moment came."""
    proc = subprocess.Popen(
        box.command("up"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=box.environ(),
    )  # fmt: skip
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    lines: list[str] = []
    stopped = False
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if not stopped and re.search(moment, line):
                engine.stop()
                stopped = True
        code = proc.wait()
    finally:
        watchdog.cancel()
        engine.start()
    return code, lines, stopped


def left_behind(box: faults.Box, engine: PrivateEngine) -> list[str]:
    """Anything on the (private) engine but the box's container and its two volumes; files that do not parse."""
    problems = []
    containers = set(engine.docker("ps", "-a", "--format", "{{.Names}}").stdout.split())
    if containers - {box.alias}:
        problems.append(f"containers left: {sorted(containers)}")
    volumes = set(engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split())
    if volumes - {f"{box.alias}-home", f"{box.alias}-hostkeys"}:
        problems.append(f"volumes left: {sorted(volumes)}")
    for folder in (box.home, box.project):  # deepbox's temporary names: a file it was writing, left half-done
        problems += [f"temp file left: {path}" for path in folder.rglob("*") if faults.TEMP_NAME.match(path.name)]
    return problems + faults.broken_files(box)


MOMENTS = {
    # The first RUN step done: the build has most of its steps to go.
    "build": r"DONE +\[2/",
    "start": r"^> Starting box ",
    "ssh": r"^> Waiting for SSH ",
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_an_engine_restart_in_the_middle_of_up_fails_in_one_sentence_and_the_next_up_recovers(box, engine, moment):
    configure(box, engine, f"{moment}-{time.monotonic_ns()}")
    if moment == "build":  # no image, no build cache: `up` builds every step
        engine.docker("rm", "-f", box.alias)
        engine.docker("image", "rm", "-f", *engine.docker("images", "-q", f"deepbox/{box.name}").stdout.split())
        engine.docker("builder", "prune", "-af")
    else:
        assert box.run("up").returncode == 0  # a box to recreate, its image built
        configure(box, engine, f"{moment}-again-{time.monotonic_ns()}")
    code, lines, stopped = up_with_engine_stopped(box, engine, MOMENTS[moment])
    assert stopped, f"the moment never came: {lines[-10:]}"
    assert code == 1, lines[-10:]
    assert not any("Traceback" in line for line in lines), lines
    sentence = WENT_AWAY.match(lines[-1])
    assert sentence is not None and sentence["url"] == f"{engine.url}", lines[-5:]
    print(f"engine stopped at {moment}: up failed trying to {sentence['action']}")
    assert not left_behind(box, engine), left_behind(box, engine)
    again = box.run("up")
    assert again.returncode == 0, again.stderr
    if moment == "build":  # a step the engine never finished may be in its cache
        assert "Note: the engine went away during the last build; building without its cache this once" in again.stderr
    answer = box.ssh("true")
    assert answer.returncode == 0, answer.stderr
    assert not left_behind(box, engine), left_behind(box, engine)


def test_an_engine_restart_under_a_running_box_is_undone_by_the_next_up(box, engine):
    configure(box, engine, "running")
    assert box.run("up").returncode == 0
    engine.stop()
    engine.start()
    again = box.run("up")
    assert again.returncode == 0, again.stderr
    assert box.ssh("echo back").stdout.strip() == "back"
    assert not left_behind(box, engine), left_behind(box, engine)
