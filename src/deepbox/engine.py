"""The only module that talks to the Docker engine (through the Docker SDK).

It turns the SDK's exceptions into DeepboxErrors that say what to do.
"""

from __future__ import annotations

import contextlib
import os
import re
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.images import Image

from deepbox.errors import DeepboxError
from deepbox.model import BuildContext

LABEL_BOX = "deepbox.box"
LABEL_PROJECT = "deepbox.project"
LABEL_SPEC = "deepbox.spec-hash"
LABEL_RUN = "deepbox.run-hash"
LABEL_ALIAS = "deepbox.alias"

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")


def _engine_name() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """Map Docker SDK failures to one sentence with the fix."""
    try:
        yield
    except docker.errors.APIError as exc:
        explanation = exc.explanation or str(exc)
        raise DeepboxError(f"Docker could not {action}: {explanation}.") from exc
    except docker.errors.DockerException as exc:
        raise _unreachable(exc) from exc


def _unreachable(exc: Exception) -> DeepboxError:
    text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        return DeepboxError(
            f"Permission denied on the Docker engine at {_engine_name()}: add your user to the "
            "'docker' group (sudo usermod -aG docker $USER, then log in again) or run as a user "
            "who may use Docker."
        )
    return DeepboxError(
        f"Cannot reach the Docker engine at {_engine_name()}: start it (sudo systemctl start docker, "
        "or dockerd) or point DOCKER_HOST at a running engine."
    )


NO_GPU_RUNTIME = (
    "The Docker engine cannot give GPUs to containers (no NVIDIA runtime): install the NVIDIA Container "
    "Toolkit and run `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`, "
    'or set gpus = "none" (`deepbox doctor` checks the driver and runtime).'
)


class Engine:
    """The local engine (DOCKER_HOST or the default socket), or a server's through an ssh tunnel."""

    def __init__(self, host: str = "") -> None:
        self.host = host
        self._tunnel: Any = None
        try:
            if host:
                from deepbox import remote

                server = remote.parse(host)
                self._tunnel = remote.Tunnel(server)
                # The tunnel is an ssh process of ours: end it with the engine, or at the latest at exit.
                weakref.finalize(self, self._tunnel.close)
                self.client = docker.DockerClient(base_url=self._tunnel.url, timeout=120)
            else:
                self.client = docker.from_env(timeout=120)
            self.client.ping()
        except DeepboxError:
            raise
        except Exception as exc:  # requests' connection errors escape the SDK's own types
            if host:
                raise DeepboxError(
                    f"The Docker engine on {host} does not answer through ssh: make sure it runs there and that "
                    "the server user may use it (in the 'docker' group: `sudo usermod -aG docker USER`)."
                ) from exc
            raise _unreachable(exc) from exc

    def published_ports(self) -> set[int]:
        """Host ports any container on this engine publishes (to choose a free one on a server)."""
        used: set[int] = set()
        with _translated("list containers"):
            for container in self.client.containers.list(all=True):
                bindings = container.attrs.get("HostConfig", {}).get("PortBindings") or {}
                used |= {int(b["HostPort"]) for items in bindings.values() for b in items or [] if b.get("HostPort")}
        return used

    # Images -----------------------------------------------------------------------------------

    @staticmethod
    def _find(collection: Any, name: str) -> Any:
        """An image or container by name, or None when the engine has none."""
        try:
            return collection.get(name)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise _unreachable(exc) from exc

    def image(self, name: str) -> Image | None:
        return self._find(self.client.images, name)

    def pull(self, name: str) -> Image:
        with _translated(f"pull {name}"):
            return self.client.images.pull(name)

    def build(
        self,
        context: BuildContext,
        tag: str,
        labels: dict[str, str],
        network: str | None,
        on_line: Callable[[str], None],
    ) -> None:
        """Build with live progress; a failure names the failing step and shows its log tail."""
        tail: deque[str] = deque(maxlen=40)
        step = ""
        with _translated("build the image"):
            stream = self.client.api.build(
                fileobj=context.tar(),
                custom_context=True,
                tag=tag,
                labels=labels,
                rm=True,
                forcerm=True,
                decode=True,
                network_mode=network,
            )
            for chunk in stream:
                if "error" in chunk:
                    raise DeepboxError(
                        f"The image build failed at {step or 'the first step'}: "
                        f"{chunk['error'].strip()}. Fix that step's input (see the log above) and run "
                        "`deepbox up` again.",
                        detail="\n".join(tail),
                    )
                for line in chunk.get("stream", "").splitlines():
                    if not line.strip():
                        continue
                    match = _STEP.match(line)
                    if match:
                        step = f"step {match.group(1)}/{match.group(2)} ({match.group(3)[:80]})"
                        tail.clear()
                    tail.append(line)
                    on_line(line)

    def untag(self, name: str) -> None:
        """Drop an image tag of ours; Docker keeps the layers while anything still uses them."""
        with contextlib.suppress(docker.errors.DockerException):
            self.client.images.remove(name, noprune=False)

    # Containers -------------------------------------------------------------------------------

    def container(self, name: str) -> Container | None:
        return self._find(self.client.containers, name)

    def boxes(self) -> list[Container]:
        with _translated("list containers"):
            return self.client.containers.list(all=True, filters={"label": LABEL_BOX})

    def create(self, **kwargs: Any) -> Container:
        with _translated("create the box container"):
            return self.client.containers.create(**kwargs)

    def start(self, container: Container) -> None:
        """Start; a taken port removes nothing and says which port."""
        try:
            container.start()
        except docker.errors.APIError as exc:
            text = exc.explanation or str(exc)
            if "port is already allocated" in text or "address already in use" in text:
                raise PortInUseError(text) from exc
            if "could not select device driver" in text:
                raise DeepboxError(NO_GPU_RUNTIME) from exc
            raise DeepboxError(f"Docker could not start {container.name}: {text}.") from exc

    def exec(self, container: Container, command: list[str], user: str = "") -> tuple[int, str]:
        with _translated(f"run a command in {container.name}"):
            result = container.exec_run(command, user=user, demux=False)
            return result.exit_code, (result.output or b"").decode(errors="replace")

    def volume_ensure(self, name: str, labels: dict[str, str]) -> None:
        with _translated(f"create volume {name}"):
            try:
                self.client.volumes.get(name)
            except docker.errors.NotFound:
                self.client.volumes.create(name, labels=labels)

    def volumes(self, box: str) -> list[Any]:
        with _translated("list volumes"):
            return self.client.volumes.list(filters={"label": f"{LABEL_BOX}={box}"})

    def logs(self, container: Container, follow: bool, tail: int | str = "all") -> Iterator[bytes]:
        with _translated(f"read the logs of {container.name}"):
            if follow:
                yield from container.logs(stream=True, follow=True, tail=tail)
            else:
                yield container.logs(tail=tail)

    def run_once(self, image: str, command: list[str], **kwargs: Any) -> str:
        """Run a throwaway container to completion and return its output (removed afterwards)."""
        with _translated(f"run {image}"):
            output = self.client.containers.run(image, command, remove=True, **kwargs)
            return output.decode(errors="replace") if isinstance(output, bytes) else str(output)

    def info(self) -> dict[str, Any]:
        """`docker info`: version, runtimes (NVIDIA?), root dir, rootless, ..."""
        with _translated("describe itself"):
            return dict(self.client.info())

    def version(self) -> str:
        with _translated("report its version"):
            return str(self.client.version().get("Version", "unknown"))

    def import_image(self, tar_stream: Any, tag: str) -> None:
        repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
        with _translated(f"import {tag}"):
            self.client.api.import_image_from_data(tar_stream, repository=repository, tag=version)


class PortInUseError(DeepboxError):
    pass
