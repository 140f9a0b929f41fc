"""The suite's own cleanup is checked: the session-end Ledger (conftest.py) finds what a run leaves,
anonymous volumes included, and deepbox's one-off containers leave none."""

from __future__ import annotations

import io
import os

from conftest import BASE_IMAGE, PREFIX, Ledger, run_container

from deepbox.engine.docker import DockerEngine


def test_one_off_containers_leave_no_anonymous_volume_and_the_ledger_sees_one_that_does(docker_client):
    tag = f"{PREFIX}-volume:1"
    dockerfile = f"FROM {BASE_IMAGE}\nVOLUME /data\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    engine = DockerEngine(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), "this machine")
    ledger = Ledger(docker_client)
    try:
        assert run_container(docker_client, tag, ["true"]) == b""
        assert engine.run_once(tag, ["echo", "hi"]) == "hi\n"
        ledger.stop()
        assert ledger.volumes_left() == []

        ledger = Ledger(docker_client)
        docker_client.containers.run(tag, ["true"], remove=True)  # docker run --rm without -v
        ledger.stop()
        left = ledger.volumes_left()
        assert len(left) == 1
    finally:
        ledger.stop()
        for name in ledger.volumes_left():
            docker_client.volumes.get(name).remove(force=True)
        docker_client.images.remove(tag, force=True)
        engine.close()
