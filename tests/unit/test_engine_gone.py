"""An engine that goes away in the middle of a command: one sentence, and `up` stops waiting for SSH."""

from __future__ import annotations

import pytest
import requests.exceptions
import urllib3.exceptions

from deepbox import ssh
from deepbox.engine.docker import _translated
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
