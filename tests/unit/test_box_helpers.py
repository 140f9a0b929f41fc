"""box.py and engine.py pieces that need no engine: ports, hashes, status rows, error sentences."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from deepbox import box, engine
from deepbox.config import load_spec
from deepbox.dockerfile import render


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
def test_connect_host(spec, bind, host):
    assert box.connect_host(dataclasses.replace(spec, ssh_bind=bind)) == host


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
    container = SimpleNamespace(attrs={"HostConfig": {"PortBindings": bindings}})
    assert box.published_port(container) == port


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
    port = box.free_port("127.0.0.1")
    assert 0 < port < 65536
    assert box.port_is_free("127.0.0.1", port)


class FakeEngine:
    def __init__(self, containers):
        self._containers = containers

    def boxes(self):
        return self._containers


def _container(name, status, started=None, port="2222"):
    return SimpleNamespace(
        status=status,
        labels={box.LABEL_BOX: name, box.LABEL_PROJECT: f"/p/{name}", box.LABEL_ALIAS: f"deepbox-{name}"},
        attrs={
            "State": {"StartedAt": started} if started else {},
            "Config": {"Image": f"deepbox/{name}:abc"},
            "HostConfig": {"PortBindings": {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": port}]}},
        },
    )


def test_status_rows_from_labels(monkeypatch):
    started = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    containers = [_container("zeta", "exited"), _container("alpha", "running", started, "4000")]
    monkeypatch.setattr(box, "Engine", lambda host="": FakeEngine(containers))

    rows = box.status()

    assert [row.box for row in rows] == ["alpha", "zeta"]
    alpha, zeta = rows
    assert alpha.port == 4000
    assert alpha.project == "/p/alpha"
    assert alpha.alias == "deepbox-alpha"
    assert alpha.image == "deepbox/alpha:abc"
    assert 290 <= alpha.uptime_seconds <= 330
    assert zeta.uptime_seconds is None
    assert alpha.as_dict()["state"] == "running"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2))", "Cannot reach"),
        ("('Connection aborted.', PermissionError(13, 'Permission denied'))", "Permission denied"),
    ],
)
def test_engine_errors_are_sentences_with_the_fix(monkeypatch, text, expected):
    monkeypatch.setenv("DOCKER_HOST", "unix:///x.sock")
    error = engine._unreachable(Exception(text))
    assert error.message.startswith(f"{expected}")
    assert "unix:///x.sock" in error.message
    assert "\n" not in error.message
    assert ("docker' group" in error.message) == (expected == "Permission denied")
