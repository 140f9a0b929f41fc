"""box.py, site.py and the engine package's pieces that need no engine: ports, hashes, status rows,
error sentences."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from deepbox import box
from deepbox.config import load_spec
from deepbox.dockerfile import render
from deepbox.engine import DEFAULT_SOCKET, Container, EngineInfo, Location
from deepbox.engine.docker import _record, unreachable
from deepbox.errors import DeepboxError
from deepbox.model import Account
from deepbox.site import LocalSite

LOCAL = LocalSite(Location(DEFAULT_SOCKET, "the default socket"))


@pytest.fixture
def spec(make_project):
    return load_spec(make_project('[ssh]\nport = 2222\n[env]\nA = "1"\n'))


@pytest.mark.parametrize(
    ("bind", "host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),  # noqa: S104 - the wildcard bind is what connect_host maps
        ("", "127.0.0.1"),
        ("10.0.0.5", "10.0.0.5"),
    ],
)
def test_connect_host(bind, host):
    assert LOCAL.connect_host(bind) == host
    assert LOCAL.ide_host("deepbox-proj", bind) == host


@pytest.mark.parametrize(
    ("bindings", "port"),
    [
        ({"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "2222"}]}, 2222),
        ({"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}, {"HostPort": "4000"}]}, 4000),
        ({"22/tcp": None}, None),
        ({}, None),
        (None, None),
    ],
)
def test_published_port(bindings, port):
    container = SimpleNamespace(id="c1", name="deepbox-x", status="running", labels={},
                                attrs={"HostConfig": {"PortBindings": bindings}})  # fmt: skip
    assert _record(container).ports.get("22/tcp") == port


def test_image_tag_and_volumes(spec):
    context = render(spec)
    assert box.image_tag(spec, context) == f"deepbox/proj:{context.spec_hash}"
    home, keys = box.volume_names("proj")
    assert home != keys
    assert home.startswith("deepbox-proj-")
    assert keys.startswith("deepbox-proj-")


def test_run_hash_follows_the_container_settings(spec):
    base = box._run_hash(spec, "img:1", "ssh-ed25519 AAAA")
    assert box._run_hash(spec, "img:1", "ssh-ed25519 AAAA") == base
    assert box._run_hash(spec, "img:2", "ssh-ed25519 AAAA") != base
    assert box._run_hash(spec, "img:1", "ssh-ed25519 BBBB") != base
    assert box._run_hash(dataclasses.replace(spec, ssh_port=2223), "img:1", "ssh-ed25519 AAAA") != base
    assert box._run_hash(dataclasses.replace(spec, shm_size="8g"), "img:1", "ssh-ed25519 AAAA") != base
    assert box._run_hash(dataclasses.replace(spec, env=(("A", "2"),)), "img:1", "ssh-ed25519 AAAA") != base
    assert box._run_hash(dataclasses.replace(spec, jupyter=True), "img:1", "ssh-ed25519 AAAA") != base


def test_port_is_free_and_free_port():
    port = LOCAL.free_port("127.0.0.1")
    assert 0 < port < 65536
    assert LOCAL.port_is_free("127.0.0.1", port)


INFO = EngineInfo("docker", "20.10.24", False, "/var/lib/docker", False, "x86_64", "unix:///var/run/docker.sock")


class FakeEngine:
    def __init__(self, containers):
        self._containers = containers

    def boxes(self):
        return self._containers

    def container(self, name):
        return next((c for c in self._containers if c.name == name), None)

    def info(self):
        return INFO


class FakeSite:
    host = ""
    forwards_ports = False

    def __init__(self, containers, account=None):
        self._engine = FakeEngine(containers)
        self._account = account

    def engine(self):
        return self._engine

    def account(self):
        return self._account

    def listed_boxes(self):
        return None

    def job(self):
        return None


def _container(name, status, started="", port=2222):
    return Container(
        id=name,
        name=f"deepbox-{name}",
        status=status,
        labels={box.LABEL_BOX: name, box.LABEL_PROJECT: f"/p/{name}", box.LABEL_ALIAS: f"deepbox-{name}"},
        image=f"deepbox/{name}:abc",
        ports={"22/tcp": port},
        started_at=started,
    )


def test_status_rows_from_labels():
    started = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    containers = [_container("zeta", "exited"), _container("alpha", "running", started, 4000)]

    rows = box.status(FakeSite(containers))

    assert [row.box for row in rows] == ["alpha", "zeta"]
    alpha, zeta = rows
    assert alpha.port == 4000
    assert alpha.project == "/p/alpha"
    assert alpha.alias == "deepbox-alpha"
    assert alpha.image == "deepbox/alpha:abc"
    assert 290 <= alpha.uptime_seconds <= 330
    assert zeta.uptime_seconds is None
    assert alpha.as_dict()["state"] == "running"
    assert alpha.engine == "Docker 20.10.24 at unix:///var/run/docker.sock"


def _owned_by(name, owner):
    made = _container(name, "running")
    return dataclasses.replace(made, labels={**made.labels, box.LABEL_OWNER: owner} if owner else made.labels)


def test_a_server_user_lists_and_touches_only_their_own_boxes():
    # "ann-ml-x" is box "x" of user ann-ml, and would also be box "ml-x" of user ann: the label decides.
    containers = [_owned_by("ann-ml-x", "ann-ml"), _owned_by("ann-y", "ann"), _owned_by("bob-z", "")]
    ann = FakeSite(containers, Account(name="ann", uid=1000, gid=1000, home="/home/ann"))

    assert [row.box for row in box.status(ann)] == ["ann-y"]
    with pytest.raises(DeepboxError) as refused:
        box.status(ann, "ann-ml-x")
    assert refused.value.message == (
        "Box 'ann-ml-x' on this server belongs to its user ann-ml, not to ann; deepbox acts only on your own "
        'boxes: set name = "..." in deepbox.toml to give yours another name.'
    )
    bob = FakeSite(containers, Account(name="bob", uid=1001, gid=1001, home="/home/bob"))
    assert [row.box for row in box.status(bob)] == ["bob-z"]  # made before boxes carried their owner
    assert len(box.status(FakeSite(containers))) == 3  # this machine's engine: every box


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2))", "Cannot reach"),
        ("('Connection aborted.', PermissionError(13, 'Permission denied'))", "Permission denied"),
    ],
)
def test_engine_errors_are_sentences_with_the_fix(text, expected):
    error = unreachable(Exception(text), "unix:///x.sock (DOCKER_HOST)")
    assert error.message.startswith(f"{expected}")
    assert "unix:///x.sock" in error.message
    assert "\n" not in error.message
    assert ("docker' group" in error.message) == (expected == "Permission denied")


class OneBoxSite:
    """A site whose engine holds one container (what describe looks up before anything else)."""

    host = ""

    def __init__(self, container):
        self._container = container

    def engine(self):
        return SimpleNamespace(container=lambda name: self._container if name == self._container.name else None)

    def account(self):
        return None


def test_describe_refuses_a_box_that_belongs_to_another_project(spec):
    labels = {box.LABEL_BOX: "proj", box.LABEL_PROJECT: "/p/a"}
    other = dataclasses.replace(_container("proj", "running"), labels=labels)

    with pytest.raises(box.DeepboxError) as caught:
        box.describe(spec, OneBoxSite(other))

    assert str(caught.value) == (
        f"Box 'proj' belongs to /p/a, not to {spec.project}; run this command there, or set "
        f'name = "..." in {spec.source} to give this project its own box.'
    )


def test_ssh_command_is_one_that_ssh_runs():
    from .helpers import up_result

    assert up_result(key="/home/alice/my keys/id").ssh_command() == (
        "ssh -p 2222 -i '/home/alice/my keys/id' alice@127.0.0.1"
    )
    assert up_result(jump="alice@gpu:2200").ssh_command() == (
        f"ssh -J alice@gpu:2200 -p 2222 -i {up_result().key} alice@127.0.0.1"
    )


def test_the_session_environment_is_what_sshd_hands_to_logins():
    container_env = (
        "PATH=/opt/venv/bin:/usr/bin",
        "VIRTUAL_ENV=/opt/venv",
        "LANG=C.UTF-8",
        "DEEPBOX_USER=alice",
        "DEEPBOX_WORKSPACE=/workspace",
        "DEEPBOX_SESSION_ENV=WANDB_MODE SEED",
        "WANDB_MODE=offline",
        "SEED=1=2",
        "DEEPBOX_AUTHORIZED_KEYS=ssh-ed25519 AAAA",
        "DEEPBOX_JUPYTER_TOKEN=secret",
        "DEBIAN_FRONTEND=noninteractive",
    )
    assert box.session_environment(container_env) == {
        "HOME": "/home/alice",
        "USER": "alice",
        "LOGNAME": "alice",
        "SHELL": "/bin/bash",
        "PATH": "/opt/venv/bin:/usr/bin",
        "VIRTUAL_ENV": "/opt/venv",
        "LANG": "C.UTF-8",
        "WANDB_MODE": "offline",
        "SEED": "1=2",
    }


def test_a_root_box_users_home_is_root():
    assert box.session_environment(("DEEPBOX_USER=root",))["HOME"] == "/root"


def test_the_session_variables_are_the_ones_the_box_sshd_hands_on():
    from importlib import resources

    script = resources.files("deepbox").joinpath("assets/sshd-config.sh").read_text()
    (line,) = [line for line in script.splitlines() if "${DEEPBOX_SESSION_ENV:-}" in line]
    names = line.split(" in ", 1)[1].split("${DEEPBOX_SESSION_ENV")[0].split()
    assert tuple(names) == box.SESSION_ENV
