"""The suite's own cleanup is checked: the session-end Ledger (conftest.py) finds what a run leaves,
anonymous volumes included, and deepbox's one-off containers leave none."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
from conftest import BASE_IMAGE, PREFIX, Ledger, _removed_unless_held, run_container

from deepbox.engine.docker import DockerEngine


@pytest.fixture(scope="module")
def volume_image(docker_client) -> Iterator[str]:
    """An image with a VOLUME: every container of it gets an anonymous volume at create."""
    tag = f"{PREFIX}-volume:1"
    docker_client.images.build(fileobj=io.BytesIO(f"FROM {BASE_IMAGE}\nVOLUME /data\n".encode()), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


def _volume_of(container) -> str:
    container.reload()
    return next(mount["Name"] for mount in container.attrs["Mounts"] if mount["Destination"] == "/data")


def test_a_clean_run_leaves_nothing_in_the_ledger(docker_client, volume_image):
    engine = DockerEngine(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), "this machine")
    ledger = Ledger(docker_client)
    try:
        assert run_container(docker_client, volume_image, ["true"]) == b""
        assert engine.run_once(volume_image, ["echo", "hi"]) == "hi\n"
        held = docker_client.containers.create(volume_image, ["true"], name=f"{PREFIX}-held")
        try:
            assert ledger.volumes_left() == []  # a volume a container still holds is no leftover
        finally:
            held.remove(v=True)
        assert ledger.volumes_left() == []
    finally:
        ledger.stop()
        engine.close()


@pytest.mark.parametrize("started", [True, False], ids=["exited-in-milliseconds", "never-started"])
def test_the_ledger_reports_the_anonymous_volume_of_a_short_lived_unmarked_container(
    docker_client, volume_image, started
):
    ledger = Ledger(docker_client)
    # No name, no label, the image by its ID: nothing marks the container as this run's, and it is gone
    # (removed without v=True, as `docker rm` without -v) before the ledger looks.
    container = docker_client.containers.create(docker_client.images.get(volume_image).id, ["true"])
    volume = _volume_of(container)
    try:
        if started:
            container.start()
            assert container.wait(timeout=30)["StatusCode"] == 0
        container.remove()
        assert volume in ledger.volumes_left()
    finally:
        ledger.stop()
        for leftover in docker_client.volumes.list(filters={"name": volume}):
            leftover.remove(force=True)


def test_the_ledger_removes_a_leftover_volume_but_not_one_a_container_holds(docker_client, volume_image):
    held = docker_client.containers.create(volume_image, ["true"], name=f"{PREFIX}-holder")
    orphan = docker_client.volumes.create()
    try:
        assert not _removed_unless_held(docker_client.api, _volume_of(held))
        assert _volume_of(held) in [volume.name for volume in docker_client.volumes.list()]
        assert _removed_unless_held(docker_client.api, orphan.name)
        assert not docker_client.volumes.list(filters={"name": orphan.name})
    finally:
        held.remove(force=True, v=True)
        for leftover in docker_client.volumes.list(filters={"name": orphan.name}):
            leftover.remove(force=True)
