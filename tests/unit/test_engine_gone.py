"""An engine that goes away in the middle of a command: one sentence, and `up` stops waiting for SSH."""

from __future__ import annotations

from typing import Any

import pytest
import requests.exceptions
import urllib3.exceptions

from deepbox import ssh
from deepbox.engine.docker import DockerEngine, _translated
from deepbox.errors import DeepboxError

GONE = (
    "The Docker engine at unix:///x.sock (DOCKER_HOST) went away while deepbox was trying to build the image (it "
    "stopped or restarted); once it runs again (start it if it does not come back by itself), run the command again."
)


@pytest.mark.parametrize(
    "broken",
    [
        requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such file'))"),
        requests.exceptions.ChunkedEncodingError("IncompleteRead(0 bytes read)"),
        urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read)"),
    ],
)
def test_a_connection_broken_mid_request_is_the_engine_going_away(broken: Exception):
    with pytest.raises(DeepboxError) as raised, _translated("build the image", "unix:///x.sock (DOCKER_HOST)"):
        raise broken
    assert raised.value.message == GONE


def test_the_wait_for_ssh_ends_with_the_error_of_the_engine_work_done_meanwhile():
    gone = DeepboxError(GONE)
    with pytest.raises(DeepboxError) as raised:
        ssh.probe("deepbox-nowhere", 90, failed=lambda: gone)
    assert raised.value is gone


class _GoneApi:
    """A build stream whose step the engine's shutdown cancelled, from an engine that answers no more."""

    def build(self, **_options: Any) -> list[dict[str, str]]:
        return [{"stream": "Step 2/17 : RUN apt-get update\n"}, {"error": "context canceled"}]

    def ping(self) -> bool:
        raise requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such file'))")


def test_a_build_step_cancelled_by_the_engine_going_away_is_not_blamed_on_the_step():
    engine = DockerEngine.__new__(DockerEngine)
    engine.where = "unix:///x.sock (DOCKER_HOST)"
    engine.client = type("Client", (), {"api": _GoneApi()})()
    context = type("Context", (), {"buildkit": False, "tar": lambda self: b""})()
    with pytest.raises(DeepboxError) as raised:
        engine.build(context, "deepbox/x:1", {}, None, lambda _event: None)
    assert raised.value.message == GONE
