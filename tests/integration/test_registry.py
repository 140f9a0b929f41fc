"""Sharing a box image through a real registry (Debian's docker-registry, the distribution registry, on
127.0.0.1, which Docker pushes to without TLS): push, then `up` elsewhere pulls instead of building."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import docker.errors
import pytest
from conftest import BASE_IMAGE, Project

from deepbox.engine import connect, locate


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def registry(tmp_path) -> Iterator[str]:
    """A registry of its own on 127.0.0.1 with its storage in a temporary folder: "127.0.0.1:PORT"."""
    binary = shutil.which("docker-registry")
    if binary is None:
        reason = "docker-registry is missing: apt install docker-registry"
        if os.environ.get("DEEPBOX_REQUIRE_REGISTRY"):
            pytest.fail(reason)
        pytest.skip(reason)
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (tmp_path / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the registry did not start: {(tmp_path / 'registry.log').read_text()}")
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def registry_images(docker_client, registry) -> Iterator[None]:
    """Whatever this test left named after the registry goes from the engine, even when it fails."""
    yield
    # The plain listing: images.list() inspects each image, and others' may go meanwhile on a shared engine.
    for image in docker_client.api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(f"{registry}/"):
                with contextlib.suppress(docker.errors.NotFound):
                    docker_client.images.remove(tag, force=True)


def test_a_pushed_box_image_is_pulled_instead_of_built(
    make_project, registry, registry_images, docker_client, tmp_path
):
    closed = _free_port()
    project = make_project("share", f'frameworks = []\nregistry = "127.0.0.1:{closed}/team"')

    # A registry that does not answer: a note, and the box is built here.
    first = project.deepbox("up", "--json")
    assert first.code == 0, first.err
    assert f"Note: registry 127.0.0.1:{closed}/team cannot be reached (" in first.err
    assert "Building image" in first.err
    made = json.loads(first.out)
    assert made["image_source"] == "built"
    tag = made["image"]
    spec_hash = tag.rsplit(":", 1)[1]
    built = docker_client.images.get(tag)
    base = docker_client.images.get(BASE_IMAGE)  # by digest when a registry gave it, else by name
    assert built.labels["deepbox.base"] == (base.attrs.get("RepoDigests") or [BASE_IMAGE])[0]

    # Pushing to a registry that does not answer is one sentence with the fix.
    refused = project.deepbox("push")
    assert refused.code == 1
    error = refused.err[refused.err.index("Error: ") :]
    assert error.startswith(f"Error: The engine could not push 127.0.0.1:{closed}/team/{project.name}:{spec_hash}: ")
    assert error.rstrip().endswith(
        f'Check registry = "127.0.0.1:{closed}/team" in {project.path / "deepbox.toml"} and that the registry '
        "runs (`docker login HOST` first when it asks for credentials)."
    )
    assert "Traceback" not in refused.err

    project.write_config(f'frameworks = []\nregistry = "{registry}/team"')
    pushed = project.deepbox("push", "--json")
    assert pushed.code == 0, pushed.err
    shared = json.loads(pushed.out)
    assert shared["image"] == tag
    assert shared["pushed"] == f"{registry}/team/{project.name}:{spec_hash}"
    assert shared["digest"].startswith("sha256:")
    assert not [t for t in docker_client.images.get(tag).tags if t.startswith(registry)]  # only the box's name

    # A tag the registry lacks is no error: up builds then.
    engine = connect(locate())
    try:
        assert engine.pull_if_present(f"{registry}/team/{project.name}:000000000000", lambda line: None) is False
    finally:
        engine.close()

    # Another machine: no box, no image, a HOME of its own.
    assert project.deepbox("rm", "--volumes").code == 0
    docker_client.images.remove(tag, force=True)
    other_home = tmp_path / "other-home"
    other_home.mkdir()
    elsewhere = Project(project.path, project.name, other_home)
    second = elsewhere.deepbox("up", "--json", env={"HOME": str(other_home)})
    assert second.code == 0, second.err
    assert f"Pulling {shared['pushed']} instead of building" in second.err
    assert "Building image" not in second.err
    assert json.loads(second.out)["image_source"] == "pulled"
    assert docker_client.images.get(tag).id == built.id  # the very image pushed, not a new build
    assert elsewhere.ssh("true").code == 0

    status = elsewhere.deepbox("status", "--json", env={"HOME": str(other_home)})
    assert status.code == 0, status.err
    row = next(row for row in json.loads(status.out) if row["box"] == project.name)
    assert row["image_source"] == "pulled"
    records = json.loads((other_home / ".local/share/deepbox/images.json").read_text())
    assert records[tag]["source"] == "pulled"
    assert records[tag]["digest"] == f"{registry}/team/{project.name}@{shared['digest']}"
    assert elsewhere.deepbox("rm", "--volumes", env={"HOME": str(other_home)}).code == 0
