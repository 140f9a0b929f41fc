"""Fixtures for the unit tests: no Docker engine, no network, and never the tester's own home.

Every test runs with HOME (and so ~/.ssh and deepbox's data dir) inside its own temporary folder,
with the temp dir used for ssh ControlMaster sockets redirected there too, and with DOCKER_HOST
pointing at a socket that does not exist, so no unit test can reach a real engine by accident.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

RUNNING_AS_ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME for every test; the real ~/.ssh is never read or written."""
    fake_home = tmp_path / "home"
    fake_home.mkdir()
    monkeypatch.setenv("HOME", str(fake_home))
    for var in (
        "XDG_DATA_HOME",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
        "DEEPBOX_DEBUG",
        "FORCE_COLOR",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return fake_home


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """make_project(config_text, folder="proj", filename="deepbox.toml") -> the project folder."""

    def make(text: str | None = None, folder: str = "proj", filename: str = "deepbox.toml") -> Path:
        project = tmp_path / folder
        project.mkdir(parents=True, exist_ok=True)
        if text is not None:
            (project / filename).write_text(text)
        return project

    return make


# Property tests (hypothesis): a bounded sample by default, 1,000 cases with HYPOTHESIS_PROFILE=full.
try:
    from hypothesis import HealthCheck, settings

    _PROPERTY_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
    settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=_PROPERTY_CHECKS)
    settings.register_profile("full", max_examples=1000, deadline=None, suppress_health_check=_PROPERTY_CHECKS)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # the property tests skip without hypothesis
    pass


@pytest.fixture
def squatter() -> Iterator[int]:
    """A port this test process listens on."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        yield listening.getsockname()[1]
