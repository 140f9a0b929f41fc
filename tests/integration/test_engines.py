"""The core box cases on every kind of engine users have besides rootful Docker (test_box.py):
rootful Podman, a Docker context naming a second engine, rootless Docker and rootless Podman.

The fixtures start each engine themselves and stop it afterwards: Podman's Docker-compatible
service as root; for the rootless ones a user of their own (no docker group, subordinate UIDs)
runs `dockerd-rootless.sh` and `podman system service`, and deepbox runs as that user too. Each
engine gets the base image with `docker save | ... load`. Everything made here is removed: boxes,
images, engine processes (by their process group), the user and its files, and the mode of
/dev/net/tun (opened for the rootless engines' networking) is put back.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import BASE_IMAGE, CA_BUNDLE, PREFIX, RUN_ID

USER = f"dbx{RUN_ID}"  # the rootless engines' user, made for this run
# Podman keeps each finished exec session's monitor (conmon) for 300 s by default; a short delay
# lets the tests' exec monitors go when the tests do.
PODMAN_CONF = (
    '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\nexit_command_delay = 5\n'
)
DOCKERD_ROOTLESS = "/usr/share/docker.io/contrib/dockerd-rootless.sh"
NEEDED = ("podman", "rootlesskit", "newuidmap", "slirp4netns")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the engine fixtures make a user and start engines as root")


def _missing(reason: str) -> None:
    if os.environ.get("DEEPBOX_REQUIRE_ENGINES"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Engine:
    """One running engine under test and how deepbox runs against it."""

    kind: str  # what `status`/`doctor` must call it
    url: str
    user: str = "root"
    home: Path = Path("/")
    env: dict[str, str] = field(default_factory=dict)

    def load(self, loader: list[str]) -> None:
        save = subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE)
        subprocess.run(loader, stdin=save.stdout, check=True, capture_output=True, timeout=600)
        assert save.wait() == 0


def _wait_for_socket(path: Path, process: subprocess.Popen, log: Path) -> None:
    for _ in range(300):
        if path.exists():
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(path))
                    return
                except OSError:
                    pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"the engine at {path} did not start: {log.read_text()[-1500:]}")


def _stop(process: subprocess.Popen) -> None:
    """End an engine we started, with everything it started (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A folder every user can reach (pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix=f"deepbox-{RUN_ID}-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def user_python(scratch) -> Path:
    """A Python any user can run, seeing this checkout's deepbox and its dependencies: the system's
    CPython 3.11 (the same ABI as the test venv's) with a .pth naming them."""
    system = Path("/usr/bin/python3")
    if not system.exists():
        _missing("no /usr/bin/python3 to run deepbox as another user")
    venv = scratch / "venv"
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = next((Path(sys.prefix) / "lib").glob("python3*/site-packages"))
    source = Path(__file__).resolve().parents[2] / "src"
    (site / "deepbox-tests.pth").write_text(f"{source}\n{ours}\n")
    (venv / "bin" / "uv").symlink_to(Path(sys.prefix) / "bin" / "uv")
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def rootless_user() -> Iterator[pwd.struct_passwd]:
    """A user of its own for the rootless engines: subordinate UIDs, /dev/net/tun usable."""
    if missing := [tool for tool in NEEDED if shutil.which(tool) is None]:
        _missing(f"{', '.join(missing)} not installed (apt-get install podman rootlesskit uidmap slirp4netns)")
    tun = Path("/dev/net/tun")
    tun_mode = tun.stat().st_mode & 0o777
    subids = {name: Path(f"/etc/{name}").read_text() if Path(f"/etc/{name}").exists() else None
              for name in ("subuid", "subgid")}  # fmt: skip
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    try:
        for name in subids:
            text = Path(f"/etc/{name}").read_text() if Path(f"/etc/{name}").exists() else ""
            if f"\n{USER}:" not in f"\n{text}":
                Path(f"/etc/{name}").write_text(text + f"{USER}:400000:65536\n")
        tun.chmod(0o666)
        yield pwd.getpwnam(USER)
    finally:
        tun.chmod(tun_mode)
        subprocess.run(["userdel", "-r", "-f", USER], capture_output=True, check=False)
        for name, text in subids.items():
            if text is None:
                Path(f"/etc/{name}").unlink(missing_ok=True)
            else:
                Path(f"/etc/{name}").write_text(text)


def _as_user(user: pwd.struct_passwd, runtime: Path, command: list[str], **env: str) -> list[str]:
    return [
        "runuser", "-u", user.pw_name, "--", "env", f"HOME={user.pw_dir}", f"XDG_RUNTIME_DIR={runtime}",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *(f"{k}={v}" for k, v in env.items()), *command,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def engines(docker_client, rootless_user, scratch) -> Iterator[dict[str, Engine]]:
    started: list[subprocess.Popen] = []
    folder = scratch / "engines"
    folder.mkdir()
    conf = folder / "containers.conf"
    conf.write_text(PODMAN_CONF)
    found: dict[str, Engine] = {}
    try:
        # Rootful Podman: its Docker-compatible service on a private socket.
        podman_socket = folder / "podman.sock"
        log = folder / "podman.log"
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{podman_socket}"],
            env={**os.environ, "CONTAINERS_CONF": str(conf)},
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append(process)
        _wait_for_socket(podman_socket, process, log)
        podman = Engine("Podman", f"unix://{podman_socket}")
        podman.load(["podman", "load"])
        found["podman"] = podman

        # The rootless engines of the test user, with its runtime folder and configuration.
        user = rootless_user
        runtime = scratch / "run"  # the user's own runtime folder (XDG_RUNTIME_DIR), 0700
        runtime.mkdir(mode=0o700)
        os.chown(runtime, user.pw_uid, user.pw_gid)
        config = Path(user.pw_dir) / ".config" / "containers"
        config.mkdir(parents=True)
        (config / "containers.conf").write_text(PODMAN_CONF)
        (config / "storage.conf").write_text('[storage]\ndriver = "overlay"\n')
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(Path(user.pw_dir) / ".config")], check=True)

        log = folder / "dockerd-rootless.log"
        process = subprocess.Popen(
            _as_user(user, runtime, [DOCKERD_ROOTLESS]),
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append(process)
        _wait_for_socket(runtime / "docker.sock", process, log)
        rootless_docker = Engine("rootless Docker", f"unix://{runtime}/docker.sock", user.pw_name, Path(user.pw_dir))
        rootless_docker.load(["docker", "-H", rootless_docker.url, "load"])
        found["rootless-docker"] = rootless_docker

        (runtime / "podman").mkdir()
        os.chown(runtime / "podman", user.pw_uid, user.pw_gid)
        log = folder / "podman-rootless.log"
        podman_user_socket = runtime / "podman" / "podman.sock"
        process = subprocess.Popen(
            _as_user(user, runtime, ["podman", "system", "service", "--time=0", f"unix://{podman_user_socket}"]),
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append(process)
        _wait_for_socket(podman_user_socket, process, log)
        rootless_podman = Engine("rootless Podman", f"unix://{podman_user_socket}", user.pw_name, Path(user.pw_dir))
        rootless_podman.load(_as_user(user, runtime, ["podman", "load"]))
        found["rootless-podman"] = rootless_podman
        for engine in (rootless_docker, rootless_podman):
            engine.env = {"XDG_RUNTIME_DIR": str(runtime)}
        yield found
    finally:
        for process in reversed(started):
            _stop(process)
        if "podman" in found:  # rootful Podman's storage is the machine's: take back what this run put there
            subprocess.run(["podman", "rmi", "-f", BASE_IMAGE], capture_output=True, check=False)
            listed = subprocess.run(
                ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                capture_output=True,
                text=True,
                check=False,
            )
            ours = [name for name in listed.stdout.split() if f"deepbox/{PREFIX}" in name]
            if ours:
                subprocess.run(["podman", "rmi", "-f", *ours], capture_output=True, check=False)


@dataclass
class Run:
    code: int
    out: str
    err: str


class Box:
    """A project whose box lives on one engine, driven as the engine's user."""

    def __init__(self, engine: Engine, python: Path, path: Path, name: str, home: Path) -> None:
        self.engine, self.python, self.path, self.name = engine, python, path, name
        self.home = engine.home if engine.user != "root" else home

    @property
    def alias(self) -> str:
        return f"deepbox-{self.name}"

    def _command(self, command: list[str], env: dict[str, str]) -> list[str]:
        environment = {"HOME": str(self.home), **self.engine.env, **env}
        if self.engine.user == "root":
            return ["env", *(f"{k}={v}" for k, v in environment.items()), *command]
        user = pwd.getpwnam(self.engine.user)
        runtime = self.engine.env["XDG_RUNTIME_DIR"]
        return _as_user(user, Path(runtime), command, **{k: v for k, v in environment.items() if k != "HOME"})

    def deepbox(self, *args: str, env: dict[str, str] | None = None) -> Run:
        env = {"DOCKER_HOST": self.engine.url, **(env or {})}
        done = subprocess.run(
            self._command([str(self.python), "-m", "deepbox.cli", "-C", str(self.path), *args], env),
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        return Run(done.returncode, done.stdout, done.stderr)

    def ssh(self, command: str, *options: str) -> Run:
        config = str(self.home / ".ssh" / "config")
        done = subprocess.run(
            self._command(["ssh", "-F", config, "-o", "BatchMode=yes", *options, self.alias, command], {}),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        return Run(done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        self.ssh("true", "-O", "exit")  # the ControlMaster this box's ssh calls left


@pytest.fixture
def box_on(engines, user_python, home, scratch):
    made: list[Box] = []

    def make(kind: str, slug: str, body: str = "") -> Box:
        engine = engines[kind]
        path = scratch / slug
        path.mkdir()
        owner = (pwd.getpwnam(engine.user).pw_uid, pwd.getpwnam(engine.user).pw_gid) if engine.user != "root" else (
            4242, 4243)  # fmt: skip
        name = f"{PREFIX}-{slug}"
        (path / "deepbox.toml").write_text(
            f'name = "{name}"\nbase = "{BASE_IMAGE}"\nframeworks = ["numpy"]\n{body}\n'
            f'[build]\nca_certificates = ["{CA_BUNDLE}"]\n'
        )
        os.chown(path, *owner)
        os.chown(path / "deepbox.toml", *owner)
        box = Box(engine, user_python, path, name, home)
        made.append(box)
        return box

    yield make
    for box in made:
        box.deepbox("rm", "--volumes")
        box.close()


# kind -> (the files the box writes in the project belong to, the box user's UID inside)
CASES = {
    "podman": ((4242, 4243), "4242"),
    "rootless-docker": ("user", "0"),  # root inside is the engine's user outside
    "rootless-podman": ("user", "user"),  # --userns=keep-id: the same UID inside and out
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_core_box_on_each_engine(box_on, kind):
    owner, uid_inside = CASES[kind]
    box = box_on(kind, f"on-{kind}")
    up = box.deepbox("up", "--json")
    assert up.code == 0, up.err
    assert json.loads(up.out)["action"] == "created"
    user = pwd.getpwnam(box.engine.user) if box.engine.user != "root" else None
    expected_owner = (user.pw_uid, user.pw_gid) if owner == "user" and user else owner
    expected_uid = str(user.pw_uid) if uid_inside == "user" and user else uid_inside

    # ssh with the pinned key; files written in the project folder belong to the right host user.
    session = box.ssh("id -u && touch /workspace/from-box && python -c 'import numpy'")
    assert session.code == 0, session.err
    assert session.out.strip() == expected_uid
    made = box.path / "from-box"
    assert (made.stat().st_uid, made.stat().st_gid) == expected_owner
    refused = box.ssh("true", "-o", "UserKnownHostsFile=/dev/null", "-o", "ControlPath=none")
    assert "Host key verification failed" in refused.err

    # status and doctor name the engine they used.
    status = box.deepbox("status", "--json")
    assert status.code == 0, status.err
    (row,) = [row for row in json.loads(status.out) if row["box"] == box.name]
    assert row["engine"].startswith(f"{box.engine.kind} ") and box.engine.url in row["engine"]
    doctor = box.deepbox("doctor", "--json")
    findings = {f["check"]: f for f in json.loads(doctor.out)}
    assert findings["engine"]["message"].startswith(f"{box.engine.kind} ")
    assert ("rootless" in findings) == kind.startswith("rootless")

    # down and up again: the same host key, the same files.
    assert box.deepbox("down").code == 0
    again = box.deepbox("up", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["action"] == "started"
    assert box.ssh("test -e /workspace/from-box", "-o", "ControlPath=none").code == 0

    removed = box.deepbox("rm", "--volumes")
    assert removed.code == 0, removed.err
    assert box.deepbox("status", "--json").out.count(box.name) == 0


def test_a_docker_context_names_the_engine(box_on, home, docker_client):
    """A context named in deepbox.toml picks the second engine (here the rootful Podman), the way
    `docker --context` would; the default engine never sees the box."""
    box = box_on("podman", "context", 'context = "deepbox-it"')
    docker_config = home / ".docker"
    meta = docker_config / "contexts" / "meta"
    folder = meta / hashlib.sha256(b"deepbox-it").hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").write_text(
        json.dumps({"Name": "deepbox-it", "Metadata": {}, "Endpoints": {"docker": {"Host": box.engine.url}}})
    )
    try:
        up = box.deepbox("up", "--json", env={"DOCKER_HOST": ""})
        assert up.code == 0, up.err
        status = box.deepbox("status", "--json", env={"DOCKER_HOST": ""})
        (row,) = [row for row in json.loads(status.out) if row["box"] == box.name]
        assert row["engine"] == f"Podman {row['engine'].split()[1]} at {box.engine.url} (Docker context deepbox-it)"
        assert not docker_client.containers.list(all=True, filters={"label": f"deepbox.box={box.name}"})
        # --context and DOCKER_CONTEXT name contexts too; one that does not exist is one sentence.
        wrong = box.deepbox("--context", "no-such-context", "status", env={"DOCKER_HOST": ""})
        assert wrong.code == 1 and "The Docker context 'no-such-context' (--context) does not exist" in wrong.err
        assert box.deepbox("rm", "--volumes", env={"DOCKER_HOST": ""}).code == 0
    finally:
        shutil.rmtree(docker_config, ignore_errors=True)
