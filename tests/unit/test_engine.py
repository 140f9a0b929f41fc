"""engine.locate (the engine as the docker CLI chooses it, contexts included) and Site.bind (what a
rootless engine means for the box user), without any engine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from deepbox.config import load_spec
from deepbox.engine import DEFAULT_SOCKET, EngineInfo, Location, locate
from deepbox.errors import DeepboxError
from deepbox.site import LocalSite


def write_context(home: Path, name: str, host: str) -> None:
    folder = home / ".docker" / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}})
    )


def test_the_order_is_the_docker_cli_s_with_options_first(home, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST")
    write_context(home, "colima", "unix:///colima.sock")
    write_context(home, "podman", "unix:///podman.sock")
    env = {"DOCKER_HOST": "unix:///env.sock", "DOCKER_CONTEXT": "colima"}
    assert locate("ssh://a@b", "podman", "ssh://c@d", "podman", env) == Location("ssh://a@b", "--host")
    assert locate("", "podman", "ssh://c@d", "", env).url == "unix:///podman.sock"
    assert locate("", "", "ssh://c@d", "", env) == Location("ssh://c@d", "host in deepbox.toml")
    assert locate("", "", "", "podman", env) == Location("unix:///env.sock", "DOCKER_HOST")
    assert locate("", "", "", "podman", {"DOCKER_CONTEXT": "colima"}).via == "Docker context colima"
    assert locate("", "", "", "podman", {}).url == "unix:///podman.sock"
    assert locate("", "", "", "", {}) == Location(DEFAULT_SOCKET, "the default socket")
    (home / ".docker" / "config.json").write_text(json.dumps({"currentContext": "colima"}))
    current = locate("", "", "", "", {})
    assert (current.url, current.context) == ("unix:///colima.sock", "colima")
    assert current.describe() == "unix:///colima.sock (Docker context colima)"
    assert locate("", "default", "", "", {}).url == DEFAULT_SOCKET


def test_docker_config_moves_the_contexts_too(tmp_path):
    write_context(tmp_path, "elsewhere", "tcp://10.0.0.5:2376")
    env = {"DOCKER_CONFIG": str(tmp_path / ".docker"), "DOCKER_CONTEXT": "elsewhere"}
    assert locate(environ=env).url == "tcp://10.0.0.5:2376"


def test_a_context_that_does_not_exist_is_one_sentence():
    with pytest.raises(DeepboxError) as info:
        locate("", "nope", environ={})
    assert info.value.message.startswith("The Docker context 'nope' (--context) does not exist")
    assert "docker context ls" in info.value.message


class _Engine:
    def __init__(self, info: EngineInfo) -> None:
        self._info = info

    def info(self) -> EngineInfo:
        return self._info


def site_with(kind: str, rootless: bool) -> LocalSite:
    site = LocalSite(Location(DEFAULT_SOCKET, "test"))
    site._engine = _Engine(EngineInfo(kind, "1", rootless, "/x", False, "x86_64", "test"))  # type: ignore[assignment]
    return site


def test_rootless_engines_change_who_the_box_user_is(make_project):
    spec = load_spec(make_project("[user]\n"))
    assert site_with("docker", False).bind(spec) == spec
    as_root = site_with("docker", True).bind(spec)
    assert (as_root.user.name, as_root.user.uid, as_root.user.home) == ("root", 0, "/root")
    kept = site_with("podman", True).bind(spec)
    assert kept.user == spec.user and kept.user_namespace == "keep-id"
    assert site_with("podman", False).bind(spec) == spec
    named = load_spec(make_project('[user]\nname = "dev"\nuid = 1000\n', folder="named"))
    assert site_with("docker", True).bind(named) == named, "a [user] of one's own is honoured"


def test_go_times_are_read_to_the_nanosecond():
    from deepbox.engine.docker import rfc3339_ns

    # Docker's stat of a path as the archive endpoint writes it (Go's RFC 3339 with nanoseconds).
    exact = 1796066591509935445
    assert rfc3339_ns("2026-11-30T19:23:11.509935445Z") == exact
    assert rfc3339_ns("2026-11-30T20:23:11.509935445+01:00") == exact  # a daemon in another zone
    assert rfc3339_ns("2026-11-30T19:23:11.5Z") == 1796066591500000000  # Go drops trailing zeros
    assert rfc3339_ns("2026-11-30T19:23:11Z") == 1796066591000000000
    assert rfc3339_ns("") is None and rfc3339_ns("yesterday") is None
