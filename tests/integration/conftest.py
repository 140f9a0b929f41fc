"""Fixtures for tests against a real Docker engine, real sshd and the real OpenSSH client.

Every box a test makes has a name starting with this test run's prefix; teardown removes those
containers, their volumes and images (and snapshot images), even when a test fails. HOME points
at a temporary folder, so the tester's own ~/.ssh and deepbox data are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BASE_IMAGE = os.environ.get("DEEPBOX_TEST_BASE", "deepbox/debian:bookworm")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
RUN_ID = uuid.uuid4().hex[:6]
PREFIX = f"it{RUN_ID}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


def _docker_client():
    import docker

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        reason = f"no Docker engine answers ({exc.__class__.__name__}); scripts/install.sh starts one"
        if os.environ.get("DEEPBOX_REQUIRE_DOCKER"):
            pytest.fail(reason)
        pytest.skip(reason)
    return client


@pytest.fixture(scope="session")
def docker_client():
    client = _docker_client()
    try:
        client.images.get(BASE_IMAGE)
    except Exception:
        reason = f"base image {BASE_IMAGE} is missing: run `deepbox base bootstrap --tag {BASE_IMAGE}`"
        if os.environ.get("DEEPBOX_REQUIRE_DOCKER"):
            pytest.fail(reason)
        pytest.skip(reason)
    ledger = Ledger(client)
    yield client
    _reap(client)
    leftovers = ledger.close()
    if leftovers:
        pytest.fail(f"the test run left these on the engine (now removed): {', '.join(leftovers)}", pytrace=False)


def _ours(attributes: dict[str, str]) -> bool:
    """Whether a container's create event (its name, image and labels) belongs to this test run."""
    return (
        attributes.get("name", "").startswith(PREFIX)
        or attributes.get("deepbox.box", "").startswith(PREFIX)
        or attributes.get("deepbox.test") == PREFIX
        or attributes.get("image", "").startswith((f"deepbox/{PREFIX}", f"{PREFIX}-"))
    )


ANONYMOUS_VOLUME = re.compile(r"[0-9a-f]{64}")


def _anonymous(volume: dict) -> bool:
    """Whether a volume is one the engine named itself (a VOLUME or `-v /path` of a container)."""
    labels = volume.get("Labels") or {}
    return "com.docker.volume.anonymous" in labels or bool(ANONYMOUS_VOLUME.fullmatch(volume["Name"]))


class Ledger:
    """What this test run made on a shared engine.

    Containers are told apart from others' by the engine's event stream: those whose name, image or
    labels carry this run's prefix. Volumes by a snapshot: the volumes there at the start are listed
    once, and every anonymous volume there at the end that was not, and that no container holds, is
    this run's leftover. That needs no event and no container that still exists, so a container that
    lived a few milliseconds (or was created and never started) and was removed without its volumes
    cannot hide one. It assumes the engine runs nothing else that leaves anonymous volumes meanwhile:
    CI runs this suite alone on its engine; on a shared engine another user's leftover anonymous
    volume made during the run is reported too (one a container still holds never is)."""

    def __init__(self, client) -> None:
        self.client = client
        self.before = {volume["Name"] for volume in client.api.volumes().get("Volumes") or []}
        self.containers: set[str] = set()
        self.stream = client.events(decode=True, since=int(time.time()) - 1, filters={"type": ["container"]})
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            for event in self.stream:
                actor = event.get("Actor", {})
                if event.get("Action") == "create" and _ours(actor.get("Attributes", {})):
                    self.containers.add(actor.get("ID", ""))
        except Exception:  # the stream ends when close() shuts it
            return

    def stop(self) -> None:
        time.sleep(1)  # the last events reach the stream
        self.stream.close()
        self.reader.join(timeout=10)

    def volumes_left(self) -> list[str]:
        """The anonymous volumes made since the start that no container holds."""
        api = self.client.api
        # Volumes first: a volume made after this listing is not looked at; one made just before it, whose
        # container the engine registers a moment later, may be named here, and close() leaves it, as the
        # engine refuses to remove a volume a container holds.
        volumes = api.volumes().get("Volumes") or []
        held = {
            mount["Name"]
            for container in api.containers(all=True)
            for mount in container.get("Mounts") or []
            if mount.get("Type") == "volume"
        }
        return sorted(
            volume["Name"]
            for volume in volumes
            if volume["Name"] not in self.before and volume["Name"] not in held and _anonymous(volume)
        )

    def close(self) -> list[str]:
        """Remove and name what is left of this run's containers, volumes, images and networks."""
        self.stop()
        # The low-level API: one listing each, so another user's object vanishing meanwhile raises nothing.
        api = self.client.api
        left = []
        for container in api.containers(all=True):
            name = container["Names"][0].lstrip("/") if container.get("Names") else container["Id"][:12]
            if container["Id"] in self.containers or _ours({"name": name, **(container.get("Labels") or {})}):
                left.append(f"container {name}")
                _gone_or(api.remove_container, container["Id"], force=True, v=True)
        for name in self.volumes_left():
            if _removed_unless_held(api, name):
                left.append(f"volume {name}")
        for volume in api.volumes().get("Volumes") or []:
            labels = volume.get("Labels") or {}
            if labels.get("deepbox.box", "").startswith(PREFIX) or volume["Name"].startswith(PREFIX):
                left.append(f"volume {volume['Name']}")
                _gone_or(api.remove_volume, volume["Name"], force=True)
        for image in api.images():
            for tag in image.get("RepoTags") or []:
                if tag.startswith((f"deepbox/{PREFIX}", f"{PREFIX}-")):
                    left.append(f"image {tag}")
                    _gone_or(api.remove_image, tag, force=True)
        for network in api.networks():
            if network["Name"].startswith(PREFIX):
                left.append(f"network {network['Name']}")
                _gone_or(api.remove_network, network["Id"])
        return left


def _removed_unless_held(api, name: str) -> bool:
    """Remove a volume unless a container created since the listing holds it (the engine refuses)."""
    import docker

    try:
        api.remove_volume(name)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as error:
        if error.status_code == 409:  # in use
            return False
        raise
    return True


def _gone_or(remove, *args, **options) -> None:
    """Remove, unless someone already did."""
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        remove(*args, **options)


def run_container(client, image: str, command: list[str] | str, **options) -> bytes:
    """`docker run --rm`, with the anonymous volumes of the image's VOLUMEs removed too (the SDK's
    remove=True leaves them)."""
    container = client.containers.run(image, command, detach=True, **options)
    try:
        code = container.wait()["StatusCode"]
        output = container.logs(stdout=True, stderr=False)
        assert code == 0, container.logs(stdout=False, stderr=True).decode(errors="replace")
        return output
    finally:
        container.remove(force=True, v=True)


def _reap(client) -> None:
    """Remove every container, volume and image this test run created (by name prefix and label)."""
    api = client.api
    for container in api.containers(all=True, filters={"label": "deepbox.box"}):
        if container["Labels"]["deepbox.box"].startswith(PREFIX):
            _gone_or(api.remove_container, container["Id"], force=True, v=True)
    for volume in api.volumes(filters={"label": "deepbox.box"}).get("Volumes") or []:
        if volume["Labels"]["deepbox.box"].startswith(PREFIX):
            _gone_or(api.remove_volume, volume["Name"], force=True)
    for image in api.images():
        tags = image.get("RepoTags") or []
        if any(tag.startswith((f"deepbox/{PREFIX}", f"{PREFIX}-")) for tag in tags):
            for tag in tags:
                _gone_or(api.remove_image, tag, force=True)


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Iterator[Path]:
    """A throwaway HOME for the whole test run (boxes share the ssh config, as a user's would)."""
    path = tmp_path_factory.mktemp("home")
    saved = {name: os.environ.get(name) for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")}
    os.environ["HOME"] = str(path)
    os.environ.pop("XDG_DATA_HOME", None)
    os.environ.pop("XDG_CONFIG_HOME", None)
    yield path
    owned = path / ".local/share/deepbox/ssh_config"
    if owned.exists():  # stop the ControlMasters this HOME's boxes left running
        for line in owned.read_text().splitlines():
            if line.startswith("Host "):
                subprocess.run(
                    ["ssh", "-F", str(path / ".ssh/config"), "-O", "exit", line.split()[1]],
                    capture_output=True,
                    check=False,
                )
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Project:
    path: Path
    name: str
    home: Path
    extra: list[str] = field(default_factory=list)

    @property
    def alias(self) -> str:
        return f"deepbox-{self.name}"

    def write_config(self, body: str = "", base: str = BASE_IMAGE) -> None:
        (self.path / "deepbox.toml").write_text(
            f'name = "{self.name}"\nbase = "{base}"\n{body}\n[build]\nca_certificates = ["{CA_BUNDLE}"]\n'
        )

    def deepbox(self, *args: str, timeout: float = 900, env: dict[str, str] | None = None) -> Result:
        return run_deepbox(self.path, *args, timeout=timeout, env=env)

    def ssh(self, command: str, *options: str, timeout: float = 60) -> Result:
        args = ["ssh", "-F", str(self.home / ".ssh" / "config"), "-o", "BatchMode=yes", *options, self.alias, command]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr)


def deepbox_command(project: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "deepbox.cli", "-C", str(project), *args]


def run_deepbox(project: Path, *args: str, timeout: float = 900, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.run(
        deepbox_command(project, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def make_project(tmp_path, home, docker_client):
    """Factory: a project folder with a deepbox.toml whose box name carries this test run's prefix."""
    made: list[Project] = []

    def make(slug: str, body: str = "", owner: tuple[int, int] | None = (4242, 4243)) -> Project:
        path = tmp_path / slug
        path.mkdir()
        project = Project(path, f"{PREFIX}-{slug}", home)
        project.write_config(body)
        if owner:
            os.chown(path, *owner)
        made.append(project)
        return project

    yield make
    for project in made:
        remove_box(docker_client, project.name)
        shutil.rmtree(project.path, ignore_errors=True)


def remove_box(client, name: str) -> None:
    for container in client.containers.list(all=True, filters={"label": f"deepbox.box={name}"}):
        container.remove(force=True, v=True)
    for volume in client.volumes.list(filters={"label": f"deepbox.box={name}"}):
        volume.remove(force=True)


def ssh_audit(port: int) -> dict:
    """ssh-audit's JSON report of a box's sshd; exit 3 (a 'fail' finding) fails the test here."""
    tool = str(Path(sys.executable).parent / "ssh-audit")
    audit = subprocess.run(
        [tool, "-n", "--skip-rate-test", "-t", "10", "-jj", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert audit.returncode in (0, 2), audit.stdout + audit.stderr  # 3 would mean 'fail' findings
    return json.loads(audit.stdout)
