"""The Docker API backend, through the Docker SDK: Docker (rootful or rootless, local, through a
Docker context, or a server's engine over ssh) and Podman's Docker-compatible service.

Podman's differences are handled here and nowhere else: GPUs as CDI devices (nvidia.com/gpu=...)
instead of device requests, and the user namespace that keeps the host user's UID (rootless).
The SDK's exceptions become DeepboxErrors that say what to do.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any

import requests.exceptions
import urllib3.exceptions

from deepbox.engine import buildkit, buildlog
from deepbox.engine.base import (
    LABEL_BOX,
    LABEL_OWNER,
    NO_GPU_RUNTIME,
    BuildKitUnavailable,
    Container,
    Engine,
    EngineInfo,
    EngineWentAway,
    Image,
    NewContainer,
    PortInUseError,
    RegistryUnreachable,
)
from deepbox.engine.sdk import DeviceRequest, create_container_args, docker, docker_socket
from deepbox.errors import DeepboxError
from deepbox.gpu import GpuRequest, nvidia_runtime
from deepbox.model import BuildContext, BuildEvent

# Any version the SDK accepts, for the one request (GET /version) that learns the engine's own.
_FIRST_API_VERSION = "1.24"
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
BUILDERS = ("buildkit", "classic")
_STAGE = re.compile(r"^\[stage-\d+\s+")  # "[stage-0 3/9]": the Dockerfile has one stage
_MOUNTS = re.compile(r"--mount=\S+\s+")  # a RUN step's cache mounts: the same in every step, not worth showing


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def rfc3339_ns(text: str) -> int | None:
    """A time as Go writes it (RFC 3339 with up to nine fraction digits, "Z" or an offset) as ns since
    the epoch, exactly: Python's datetime stops at microseconds. None when it is not one."""
    match = _RFC3339.match(text)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return int(seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


class _Steps:
    """A build stream as BuildEvents, and the failing step's last lines for the error."""

    def __init__(self, on_event: Callable[[BuildEvent], None]) -> None:
        self.on_event = on_event
        self.tails: dict[str, deque[str]] = {}
        self.current = ""

    def emit(self, step: str, kind: str, text: str = "", current: int = 0, total: int = 0) -> None:
        if kind == "output":
            self.tails.setdefault(step, deque(maxlen=40)).append(text)
        self.on_event(BuildEvent(step, kind, text, current, total, time.time()))

    def feed(self, chunk: dict[str, Any]) -> None:
        raise NotImplementedError

    def failed(self) -> tuple[str, list[str]]:
        return self.current, [line for line in self.tails.get(self.current, ()) if not buildlog.is_noise(line)]

    def finish(self) -> None:
        """The stream ended without an error."""


class _ClassicSteps(_Steps):
    """The classic builder's "Step N/M : ..." lines and the output between them."""

    def __init__(self, on_event: Callable[[BuildEvent], None]) -> None:
        super().__init__(on_event)
        self.cached = ""  # the step the cache served: it has no "done"

    def feed(self, chunk: dict[str, Any]) -> None:
        for line in chunk.get("stream", "").splitlines():
            if not line.strip():
                continue
            if _STEP.match(line):
                self.finish()
                self.current = line
                self.tails[line] = deque([line], maxlen=40)
                self.emit(line, "start")
            elif line.strip() == "---> Using cache" and self.current:
                self.emit(self.current, "cached")
                self.cached = self.current
            elif self.current:
                self.emit(self.current, "output", line)

    def finish(self) -> None:
        if self.current and self.cached != self.current:
            self.emit(self.current, "done")


class _BuildKitSteps(_Steps):
    """BuildKit's trace messages: vertexes (steps) starting, cached, done or failed, their logs, downloads."""

    def __init__(self, on_event: Callable[[BuildEvent], None]) -> None:
        super().__init__(on_event)
        self.names: dict[str, str] = {}
        self.seen: set[tuple[str, str]] = set()
        self.partial: dict[str, str] = {}

    def _once(self, digest: str, kind: str, text: str = "") -> None:
        if (digest, kind) not in self.seen:
            self.seen.add((digest, kind))
            self.emit(self.names.get(digest, digest[:19]), kind, text)

    def feed(self, chunk: dict[str, Any]) -> None:
        if chunk.get("id") != buildkit.TRACE_ID or not isinstance(chunk.get("aux"), str):
            return
        status = buildkit.decode(chunk["aux"])
        for vertex in status.vertexes:
            if vertex.name:
                self.names[vertex.digest] = " ".join(_MOUNTS.sub("", _STAGE.sub("[", vertex.name)).split())
            if vertex.cached:
                self._once(vertex.digest, "cached")
                continue
            if vertex.started is not None:
                self.current = self.names.get(vertex.digest, vertex.digest[:19])
                self._once(vertex.digest, "start")
            if vertex.error:
                self.current = self.names.get(vertex.digest, vertex.digest[:19])
                self._once(vertex.digest, "error", vertex.error)
            elif vertex.completed is not None:
                self._once(vertex.digest, "done")
        for progress in status.statuses:
            if progress.current or progress.total:
                step = self.names.get(progress.vertex, progress.vertex[:19])
                self.emit(step, "download", progress.id, progress.current, progress.total)
        for log in status.logs:
            step = self.names.get(log.vertex, log.vertex[:19])
            text = self.partial.pop(log.vertex, "") + log.data.decode(errors="replace")
            *lines, rest = text.replace("\r\n", "\n").split("\n")
            if rest:
                self.partial[log.vertex] = rest
            for line in lines:
                if line.strip():
                    self.emit(step, "output", line.rsplit("\r", 1)[-1])

    def failed(self) -> tuple[str, list[str]]:
        for digest, rest in self.partial.items():  # the last words of a step that stopped mid-line
            self.tails.setdefault(self.names.get(digest, digest), deque(maxlen=40)).append(rest)
        self.partial.clear()
        return super().failed()


@contextmanager
def _translated(action: str, where: str, answers: Callable[[], bool] | None = None) -> Iterator[None]:
    """Map Docker SDK failures to one sentence with the fix. answers: whether the engine still answers,
    asked after it refused a request (an engine shutting down refuses with errors of its own)."""
    try:
        yield
    except docker.errors.APIError as exc:
        if answers is not None and not answers():
            raise went_away(action, where) from exc
        explanation = exc.explanation or str(exc)
        raise DeepboxError(f"The engine could not {action}: {explanation}.") from exc
    except docker.errors.DockerException as exc:
        raise unreachable(exc, where) from exc
    except ENGINE_GONE as exc:  # the engine answered when the client was made: it stopped or restarted since
        raise went_away(action, where) from exc


# What the SDK lets through when the engine's connection breaks in the middle of a request or a stream.
ENGINE_GONE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
)


def went_away(action: str, where: str) -> EngineWentAway:
    return EngineWentAway(
        f"The Docker engine at {where} went away while deepbox was trying to {action} (it stopped or restarted); "
        "once it runs again (start it if it does not come back by itself), run the command again."
    )


def unreachable(exc: Exception, where: str) -> DeepboxError:
    text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        return DeepboxError(
            f"Permission denied on the Docker engine at {where}: add your user to the 'docker' group "
            "(sudo usermod -aG docker $USER, then log in again), use a rootless engine of your own "
            "(`deepbox doctor` tells which it finds), or run as a user who may use Docker."
        )
    return DeepboxError(
        f"Cannot reach the Docker engine at {where}: start it (sudo systemctl start docker, or dockerd; "
        "`systemctl --user start docker` or `podman system service` for a rootless one) or point "
        "DOCKER_HOST or a Docker context at a running engine."
    )


def _pump(source: int, connection: socket.socket) -> None:
    """Copy a file descriptor into the command's stdin, then close that side, so it reads its end."""
    with contextlib.suppress(OSError):
        while data := os.read(source, 65536):
            connection.sendall(data)
        connection.shutdown(socket.SHUT_WR)


def _gpu_request(kind: str, gpus: GpuRequest) -> dict[str, Any]:
    """The create() arguments that hand the box its GPUs: device requests (Docker's --gpus), or CDI
    device names for Podman."""
    if not gpus.wanted:
        return {}
    if kind == "podman":
        ids = list(gpus.device_ids) or (["all"] if gpus.count == -1 else [str(i) for i in range(gpus.count)])
        return {"devices": [f"nvidia.com/gpu={gpu_id}" for gpu_id in ids]}
    return {"device_requests": [DeviceRequest(**request) for request in gpus.docker()]}


def _held_gpus(attrs: dict[str, Any]) -> str:
    """The GPUs a container asked for: "all", a count, or the ids (device requests or CDI devices)."""
    held: list[str] = []
    host_config = attrs.get("HostConfig", {})
    for request in host_config.get("DeviceRequests") or []:
        if not any("gpu" in caps for caps in request.get("Capabilities") or []):
            continue
        if request.get("DeviceIDs"):
            held += request["DeviceIDs"]
        elif request.get("Count") == -1:
            return "all"
        elif request.get("Count"):
            held.append(str(request["Count"]))
    for device in host_config.get("Devices") or []:
        name = str(device.get("PathOnHost", ""))
        if name.startswith("nvidia.com/gpu="):
            held.append(name.split("=", 1)[1])
    return ",".join(held)


def _short(name: str) -> str:
    """An image name as deepbox wrote it: Podman files local images under localhost/ and the ones its
    Docker-compatible builds make under docker.io/."""
    for prefix in ("localhost/", "docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name


def _split_tag(tag: str) -> tuple[str, str]:
    """'deepbox/base:v1' -> ('deepbox/base', 'v1'); without a version, 'latest' (a registry's port is no version)."""
    repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    return repository, version


def _image(found: Any) -> Image:
    attrs = found.attrs
    env = tuple(attrs.get("Config", {}).get("Env") or ())
    return Image(
        str(found.id),
        env,
        tuple(_short(tag) for tag in found.tags or ()),
        int(attrs.get("Size") or 0),
        dict(attrs.get("Config", {}).get("Labels") or {}),
        str(attrs.get("Created") or ""),
        tuple(str(digest) for digest in attrs.get("RepoDigests") or ()),
    )


_LAYER_DONE = ("Pushed", "Layer already exists", "Mounted from", "Pull complete", "Already exists")


def transfer_line(chunk: dict[str, Any]) -> str | None:
    """One line of a push's or pull's progress: a layer done ("3f4e5a6b7c8d: Pushed"), or the engine's own
    news ("Digest: sha256:..."); the byte counts and passing states in between are left out."""
    status = str(chunk.get("status") or "").strip()
    if not status:
        return None
    layer = str(chunk.get("id") or "")
    if not layer or "progressDetail" not in chunk:
        return status if not layer else f"{layer}: {status}"
    return f"{layer}: {status}" if status.startswith(_LAYER_DONE) else None


def _absent(text: str) -> bool:
    """Whether a registry's answer to a pull means "no such image there" (rather than "cannot reach it")."""
    return any(sign in text for sign in ("manifest unknown", "not found", "name unknown")) and "dial tcp" not in text


def _record(container: Any) -> Container:
    attrs = container.attrs
    bindings = attrs.get("HostConfig", {}).get("PortBindings") or {}
    ports = {}
    for box_port, items in bindings.items():
        for binding in items or []:
            if binding.get("HostPort"):
                ports[box_port] = int(binding["HostPort"])
                break
    started = attrs.get("State", {}).get("StartedAt", "")
    return Container(
        id=container.id,
        name=container.name,
        status=container.status,
        labels=dict(container.labels or {}),
        image=_short(attrs.get("Config", {}).get("Image", "")),
        ports=ports,
        started_at="" if started.startswith("0001-") else started,
        gpus=_held_gpus(attrs),
        env=tuple(attrs.get("Config", {}).get("Env") or ()),
        exit_code=attrs.get("State", {}).get("ExitCode") if container.status == "exited" else None,
    )


class DockerEngine(Engine):
    """An engine that speaks the Docker API at `url` (a unix socket, tcp with the context's TLS, or the
    local end of an ssh tunnel to a server's socket)."""

    def __init__(self, url: str, where: str, tls: Any = None, on_close: Callable[[], None] | None = None) -> None:
        self.where = where
        self._on_close = on_close
        try:
            # One request reaches the engine and says its API version (the SDK's "auto" asks for it, and
            # then a ping asked again); the answer is kept for info().
            asking = docker.APIClient(base_url=url, tls=tls or False, timeout=120, version=_FIRST_API_VERSION)
            try:
                self._version = dict(asking.version(api_version=False))
            finally:
                asking.close()
            self.client = docker.DockerClient(
                base_url=url, tls=tls or False, timeout=120, version=str(self._version["ApiVersion"])
            )
        except Exception as exc:  # requests' connection errors escape the SDK's own types
            self.close()
            raise unreachable(exc, where) from exc
        self._info: EngineInfo | None = None

    @property
    def kind(self) -> str:
        return self.info().kind

    def _translated(self, action: str) -> Any:
        return _translated(action, self.where, self._answers)

    def _answers(self) -> bool:
        """Whether the engine still answers (after a failure: one that stopped or restarted does not)."""
        try:
            self.client.api.ping()
        except Exception:
            return False
        return True

    def info(self) -> EngineInfo:
        if self._info is None:
            with self._translated("describe itself"):
                info = dict(self.client.info())
                version = self._version
            components = " ".join(str(c.get("Name", "")) for c in version.get("Components") or [])
            kind = "podman" if "podman" in components.lower() else "docker"
            security = " ".join(str(option) for option in info.get("SecurityOptions") or [])
            rootless = "rootless" in security or (kind == "podman" and self._podman_rootless())
            self._info = EngineInfo(
                kind=kind,
                version=str(version.get("Version", "unknown")),
                rootless=rootless,
                root_dir=str(info.get("DockerRootDir") or "/var/lib/docker"),
                gpu_runtime=nvidia_runtime(info),
                arch=str(info.get("Architecture") or ""),
                where=self.where,
            )
        return self._info

    def _podman_rootless(self) -> bool:
        """Podman's Docker-compatible /info does not say it runs rootless; its own /libpod/info does."""
        with self._translated("describe itself"):
            answer = self.client.api.get(self.client.api._url("/libpod/info"))
        try:
            return bool(answer.json()["host"]["security"]["rootless"])
        except (ValueError, KeyError, TypeError):
            return False

    def published_ports(self) -> set[int]:
        with self._translated("list containers"):
            return {port for c in self.client.containers.list(all=True) for port in _record(c).ports.values()}

    # Images -----------------------------------------------------------------------------------

    def _find(self, collection: Any, name: str) -> Any:
        try:
            return collection.get(name)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:  # the engine answered: a name it refuses is no connection fault
            raise DeepboxError(f"The engine could not look up '{name}': {exc.explanation or exc}.") from exc
        except docker.errors.DockerException as exc:
            raise unreachable(exc, self.where) from exc
        except ENGINE_GONE as exc:
            raise went_away(f"look up '{name}'", self.where) from exc

    def image(self, name: str) -> Image | None:
        found = self._find(self.client.images, name)
        return None if found is None else _image(found)

    def images(self, label: str) -> list[Image]:
        with self._translated("list images"):
            return [_image(found) for found in self.client.images.list(filters={"label": label})]

    def pull(self, name: str) -> None:
        with self._translated(f"pull {name}"):
            self.client.images.pull(name)

    def builder(self) -> str:
        """BuildKit on Docker; the classic builder on Podman (its API builds with buildah and ignores
        BuildKit's request), or wherever DEEPBOX_BUILDER=classic asks for it."""
        chosen = os.environ.get("DEEPBOX_BUILDER", "").strip().lower()
        if chosen in BUILDERS:
            return chosen
        if chosen:
            raise DeepboxError(
                f"DEEPBOX_BUILDER={chosen} is not a builder deepbox knows; set it to buildkit or classic, or unset it."
            )
        return "classic" if self.kind == "podman" else "buildkit"

    def pull_if_present(self, name: str, on_line: Callable[[str], None]) -> bool:
        repository, version = _split_tag(name)
        try:
            for chunk in self.client.api.pull(repository, tag=version, stream=True, decode=True):
                if "error" in chunk:
                    raise docker.errors.APIError(str(chunk["error"]), explanation=str(chunk["error"]))
                line = transfer_line(chunk)
                if line is not None:
                    on_line(line)
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if isinstance(exc, docker.errors.NotFound) or _absent(text):
                return False
            raise RegistryUnreachable(f"The engine could not pull {name}: {text.rstrip('.')}.") from exc
        except docker.errors.DockerException as exc:
            raise unreachable(exc, self.where) from exc
        return True

    def push(self, name: str, on_line: Callable[[str], None]) -> str:
        repository, version = _split_tag(name)
        digest = ""
        with self._translated(f"push {name}"):
            for chunk in self.client.api.push(repository, tag=version, stream=True, decode=True):
                if "error" in chunk:
                    raise RegistryUnreachable(f"The engine could not push {name}: {str(chunk['error']).rstrip('.')}.")
                digest = str((chunk.get("aux") or {}).get("Digest") or digest)
                line = transfer_line(chunk)
                if line is not None:
                    on_line(line)
        return digest

    def tag(self, source: str, target: str) -> None:
        repository, version = _split_tag(target)
        with self._translated(f"name {source} {target}"):
            self.client.api.tag(source, repository, tag=version)

    def build(
        self,
        context: BuildContext,
        tag: str,
        labels: dict[str, str],
        network: str | None,
        on_event: Callable[[BuildEvent], None],
        *,
        no_cache: bool = False,
    ) -> None:
        with self._translated("build the image"):
            if context.buildkit:
                chunks = self._buildkit_stream(context, tag, labels, network, no_cache)
                steps: _Steps = _BuildKitSteps(on_event)
            else:
                chunks = self.client.api.build(
                    fileobj=context.tar(),
                    custom_context=True,
                    tag=tag,
                    labels=labels,
                    rm=True,
                    forcerm=True,
                    decode=True,
                    network_mode=network,
                    nocache=no_cache,
                )
                steps = _ClassicSteps(on_event)
            for chunk in chunks:
                if "error" in chunk:
                    if not self._answers():  # the engine's shutdown cancelled the step: no fault of the step's
                        raise went_away("build the image", self.where)
                    step, tail = steps.failed()
                    raise buildlog.failure(buildlog.step_title(step), chunk["error"], tail)
                steps.feed(chunk)
            steps.finish()

    def _buildkit_stream(
        self, context: BuildContext, tag: str, labels: dict[str, str], network: str | None, no_cache: bool
    ) -> Iterator[dict[str, Any]]:
        """/build with version=2: BuildKit, without a session (none is needed for cache mounts)."""
        api = self.client.api
        params: dict[str, Any] = {
            "t": tag,
            "labels": json.dumps(labels),
            "rm": "1",
            "forcerm": "1",
            "version": "2",
            "nocache": "1" if no_cache else "0",
        }
        if network:
            params["networkmode"] = network
        response = api._post(
            api._url("/build"),
            params=params,
            data=context.tar(),
            headers={"Content-Type": "application/x-tar"},
            stream=True,
            timeout=None,  # a step may print nothing for long
        )
        try:
            api._raise_for_status(response)
        except docker.errors.APIError as exc:
            if "buildkit" in str(exc.explanation or exc).lower():
                raise BuildKitUnavailable(f"The engine at {self.where} does not build with BuildKit.") from exc
            raise
        return api._stream_helper(response, decode=True)

    def untag(self, name: str) -> None:
        with contextlib.suppress(docker.errors.DockerException):
            self.client.images.remove(name, noprune=False)

    def remove_image(self, name: str) -> None:
        try:
            with self._translated(f"remove image {name}"):
                self.client.images.remove(name, noprune=False)
        except DeepboxError as exc:
            cause = exc.__cause__
            if isinstance(cause, docker.errors.ImageNotFound):
                return  # already gone
            if isinstance(cause, docker.errors.APIError) and cause.status_code == 409:
                raise DeepboxError(
                    f"Image {name} is in use by a container, so it stays; remove that container first."
                ) from None
            raise

    def images_in_use(self) -> set[str]:
        for attempt in range(5):
            try:
                with self._translated("list containers"):
                    listed = self.client.api.containers(all=True)
                return {str(c["ImageID"]) for c in listed if c.get("ImageID")}
            except DeepboxError as exc:
                # The engine's listing fails when a container goes away while it is listed: try again.
                if attempt == 4 or "No such container" not in exc.message:
                    raise
        raise AssertionError("unreachable")

    def own_sizes(self) -> dict[str, int]:
        with self._translated("read image sizes"):
            usage = self.client.df()
        sizes = {}
        for entry in usage.get("Images") or []:
            size, shared = int(entry.get("Size") or 0), int(entry.get("SharedSize") or 0)
            sizes[str(entry["Id"])] = size - max(shared, 0)
        return sizes

    def import_image(self, tar_stream: IO[bytes], tag: str) -> None:
        repository, version = _split_tag(tag)
        with self._translated(f"import {tag}"):
            self.client.api.import_image_from_data(tar_stream, repository=repository, tag=version)

    def commit(self, container_id: str, tag: str, message: str, changes: list[str]) -> str:
        repository, version = _split_tag(tag)
        api = self.client.api
        with self._translated(f"commit {container_id[:12]} to {tag}"):
            # Docker keeps the committed container's own settings in the image (ContainerConfig), its
            # run-time environment and so the box's public key among them. A stopped copy created from
            # a first, untagged commit holds only that image's settings (`changes` applied); committing
            # the copy leaves those alone in the image. The untagged one goes with the tagged one.
            first = api.commit(container_id, message=message, changes=changes)
            copy = api.create_container(first["Id"])
            try:
                made = api.commit(copy["Id"], repository=repository, tag=version, message=message)
            finally:
                api.remove_container(copy["Id"], force=True, v=True)  # and the anonymous volumes its image declares
            return str(made["Id"])

    # Containers -------------------------------------------------------------------------------

    def container(self, name_or_id: str) -> Container | None:
        found = self._find(self.client.containers, name_or_id)
        return None if found is None else _record(found)

    def boxes(self) -> list[Container]:
        with self._translated("list containers"):
            # One list request, then the boxes inspected side by side (the SDK's list() inspects them one
            # after the other: with 20 boxes, most of `status`'s time).
            ids = [row["Id"] for row in self.client.api.containers(all=True, filters={"label": LABEL_BOX})]
            with ThreadPoolExecutor(max_workers=max(1, min(8, len(ids)))) as pool:
                found = list(pool.map(self._inspect_or_none, ids))
            return [_record(self.client.containers.prepare_model(attrs)) for attrs in found if attrs is not None]

    def _inspect_or_none(self, container_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.api.inspect_container(container_id))
        except docker.errors.NotFound:
            return None  # removed while it was listed: no longer there, not an error

    def create(self, new: NewContainer) -> Container:
        binds = {host: {"bind": box, "mode": "ro" if read_only else "rw"} for host, box, read_only in new.binds}
        with self._translated("create the box container"):
            # What containers.create() does, with one step of ours between: the SDK accepts only "host"
            # as a user namespace, so Podman's "keep-id" goes straight into the request.
            arguments = create_container_args(
                {
                    "image": new.image,
                    "command": None,
                    "version": self.client.api._version,
                    "name": new.name,
                    "hostname": new.hostname,
                    "detach": True,
                    "init": True,
                    "restart_policy": {"Name": "unless-stopped"},
                    "shm_size": new.shm_size,
                    "labels": new.labels,
                    "environment": new.environment,
                    "ports": new.ports,
                    "volumes": {**{name: {"bind": path, "mode": "rw"} for name, path in new.volumes.items()}, **binds},
                    "tmpfs": new.tmpfs,
                    "cap_drop": ["ALL"],
                    "cap_add": list(new.capabilities),
                    "security_opt": ["no-new-privileges"] if new.no_new_privileges else [],
                    **({"pids_limit": new.pids_limit} if new.pids_limit else {}),
                    **_gpu_request(self.kind, new.gpus),
                }
            )
            if new.user_namespace:
                arguments["host_config"]["UsernsMode"] = new.user_namespace
            made = self.client.api.create_container(**arguments)
            return _record(self.client.containers.get(made["Id"]))

    def start(self, container: Container) -> None:
        try:
            self.client.api.start(container.id)
        except docker.errors.APIError as exc:
            text = exc.explanation or str(exc)
            if "port is already allocated" in text or "address already in use" in text:
                raise PortInUseError(text) from exc
            if "could not select device driver" in text or "nvidia.com/gpu" in text:
                raise DeepboxError(NO_GPU_RUNTIME) from exc
            if not self._answers():
                raise went_away(f"start {container.name}", self.where) from exc
            raise DeepboxError(f"The engine could not start {container.name}: {text}.") from exc
        except docker.errors.DockerException as exc:
            raise unreachable(exc, self.where) from exc
        except ENGINE_GONE as exc:
            raise went_away(f"start {container.name}", self.where) from exc

    def stop(self, container: Container, timeout: int = 10) -> None:
        with self._translated(f"stop {container.name}"):
            self.client.api.stop(container.id, timeout=timeout)

    def remove(self, container_id: str) -> None:
        try:
            # v=True: the anonymous volumes of the image's VOLUMEs go with it; the box's named volumes stay.
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise DeepboxError(f"The engine could not remove {container_id[:12]}: {exc.explanation or exc}.") from exc
        except docker.errors.DockerException as exc:
            raise unreachable(exc, self.where) from exc
        except ENGINE_GONE as exc:
            raise went_away(f"remove {container_id[:12]}", self.where) from exc

    def exec(self, container: Container, command: list[str], user: str = "") -> tuple[int, str]:
        # What exec_run does, without its extra inspect of the container: polled while a box starts.
        with self._translated(f"run a command in {container.name}"):
            exec_id = self.client.api.exec_create(container.id, command, user=user)["Id"]
            output = self.client.api.exec_start(exec_id)
            code = self.client.api.exec_inspect(exec_id).get("ExitCode")
            return (code if code is not None else -1), (output or b"").decode(errors="replace")

    def exec_attached(
        self,
        container: Container,
        command: list[str],
        *,
        user: str,
        workdir: str,
        stdin: int | None,
        stdout: IO[bytes],
        stderr: IO[bytes],
        tty: bool = False,
        window: Callable[[], tuple[int, int]] | None = None,
    ) -> int:
        with self._translated(f"run a command in {container.name}"):
            exec_id = self.client.api.exec_create(
                container.id, command, stdin=stdin is not None, tty=tty, user=user, workdir=workdir
            )["Id"]
            connection = self.client.api.exec_start(exec_id, tty=tty, socket=True)
            raw = getattr(connection, "_sock", connection)  # the socket under the SDK's file object
            try:
                if tty and window is not None:
                    threading.Thread(target=self._follow_window, args=(exec_id, window), daemon=True).start()
                if stdin is not None:
                    threading.Thread(target=_pump, args=(stdin, raw), daemon=True).start()
                outputs = {docker_socket.STDOUT: stdout, docker_socket.STDERR: stderr}
                for stream, data in docker_socket.frames_iter(connection, tty):
                    out = outputs.get(stream, stdout)
                    out.write(data)
                    out.flush()
            finally:
                with contextlib.suppress(OSError):
                    raw.close()
            return self._exit_code(exec_id)

    def _exit_code(self, exec_id: str) -> int:
        """The command's exit code; the engine records it a moment after the output ends."""
        deadline = time.monotonic() + 10
        polls = 0
        while True:
            state = self.client.api.exec_inspect(exec_id)
            if not state.get("Running") and state.get("ExitCode") is not None:
                return int(state["ExitCode"])
            if time.monotonic() > deadline:
                raise DeepboxError("The engine did not report how the command ended; see `deepbox logs`.")
            polls += 1
            time.sleep(0.005 if polls < 10 else 0.05)  # usually a few ms: `up` waits on the hand-over's

    def _follow_window(self, exec_id: str, window: Callable[[], tuple[int, int]]) -> None:
        """Keep the box's terminal the size of this one (polled: signals belong to the main thread)."""
        size = None
        with contextlib.suppress(Exception):  # the command ended, or the terminal went away
            while True:
                if window() != size:
                    size = window()
                    self.client.api.exec_resize(exec_id, height=size[0], width=size[1])
                time.sleep(0.25)

    def write_file(self, container: Container, path: str, content: bytes, owner: tuple[int, int], mode: int) -> None:
        # `head -c` stops at the length given, so no engine has to pass on the end of stdin.
        script = (
            'set -e; umask 077; head -c "$4" >"$1.new"; chown "$2" "$1.new"; chmod "$3" "$1.new"; mv -f "$1.new" "$1"'
        )
        command = ["sh", "-c", script, "sh", path, f"{owner[0]}:{owner[1]}", f"{mode:o}", str(len(content))]
        with self._translated(f"write {path} in {container.name}"):
            exec_id = self.client.api.exec_create(container.id, command, stdin=True, user="0")["Id"]
            stream = self.client.api.exec_start(exec_id, socket=True)
            try:
                getattr(stream, "_sock", stream).sendall(content)
                output = b"".join(data for _, data in docker_socket.frames_iter(stream, tty=False))
            finally:
                stream.close()
            code = self._exit_code(exec_id)
        if code != 0:
            error = (output or b"").decode(errors="replace").strip()
            raise DeepboxError(f"Could not write {path} in {container.name}: {error or f'exit status {code}'}.")

    def logs(self, container: Container, follow: bool, tail: int | str = "all") -> Iterator[bytes]:
        with self._translated(f"read the logs of {container.name}"):
            if follow:
                yield from self.client.api.logs(container.id, stream=True, follow=True, tail=tail)
            else:
                yield self.client.api.logs(container.id, tail=tail)

    def path_mtime_ns(self, container: Container, path: str) -> int | None:
        # HEAD of the archive endpoint: the engine stats the path itself (a few ms), where an exec
        # would start a process in the container (60 ms or more).
        api = self.client.api
        try:
            answer = api.head(api._url("/containers/{0}/archive", container.id), params={"path": path})
            if answer.status_code != 200:
                return None
            stat = json.loads(base64.b64decode(answer.headers.get("X-Docker-Container-Path-Stat", "")))
            return rfc3339_ns(str(stat.get("mtime", "")))
        except (OSError, requests.exceptions.RequestException, ValueError, AttributeError):
            return None

    def put_archive(self, container: Container, path: str, archive: bytes) -> None:
        with self._translated(f"copy files into {container.name}"):
            self.client.api.put_archive(container.id, path, archive)

    def run_once(
        self,
        image: str,
        command: list[str],
        *,
        entrypoint: list[str] | None = None,
        user: str = "",
        network: str | None = None,
        environment: dict[str, str] | None = None,
        gpus: GpuRequest | None = None,
        labels: dict[str, str] | None = None,
    ) -> str:
        extra: dict[str, Any] = _gpu_request(self.kind, gpus) if gpus is not None else {}
        if entrypoint is not None:
            extra["entrypoint"] = entrypoint
        if network is not None:
            extra["network_mode"] = network
        with self._translated(f"run {image[:40]}"):
            # Not the SDK's remove=True: it leaves the anonymous volumes of an image's VOLUMEs (a snapshot has some).
            container = self.client.containers.run(
                image, command, detach=True, user=user or None, environment=environment, labels=labels, **extra
            )
            try:
                code = container.wait()["StatusCode"]
                if code != 0:
                    stderr = container.logs(stdout=False, stderr=True)
                    raise docker.errors.ContainerError(container, code, command, image, stderr)
                output = container.logs(stdout=True, stderr=False)
            finally:
                container.remove(force=True, v=True)
            return output.decode(errors="replace") if isinstance(output, bytes) else str(output)

    # Volumes ----------------------------------------------------------------------------------

    def volume_ensure(self, name: str, labels: dict[str, str]) -> None:
        with self._translated(f"create volume {name}"):
            try:
                self.client.volumes.get(name)
            except docker.errors.NotFound:
                self.client.volumes.create(name, labels=labels)

    def volumes(self, box: str, owner: str = "") -> list[str]:
        with self._translated("list volumes"):
            found = self.client.volumes.list(filters={"label": f"{LABEL_BOX}={box}"})
        return [
            str(v.name) for v in found if not owner or (v.attrs.get("Labels") or {}).get(LABEL_OWNER, owner) == owner
        ]

    def remove_volume(self, name: str) -> None:
        with self._translated(f"remove volume {name}"), contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_volume(name, force=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
