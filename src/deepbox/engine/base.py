"""The engine interface: everything deepbox asks of a container engine, in deepbox's own records.

`box`, `doctor`, `base`, `baseimage` and the benches talk to an `Engine` and get plain records back
(`Container`, `Image`, `EngineInfo`), never an SDK object or the engine's JSON. A backend is one
subclass (engine/docker.py serves Docker and Podman, local, through a context or over ssh); docs/
engines.md says where a new one (Kubernetes, say) goes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from deepbox.errors import DeepboxError
from deepbox.gpu import GpuRequest
from deepbox.model import BuildContext, BuildEvent

LABEL_BOX = "deepbox.box"
LABEL_PROJECT = "deepbox.project"
LABEL_SPEC = "deepbox.spec-hash"
LABEL_RUN = "deepbox.run-hash"
LABEL_ALIAS = "deepbox.alias"
# The server user a box on a shared server belongs to (its container and volumes): commands act only on
# the caller's own boxes, even where names meet (user "ann"'s box "ml-x" and user "ann-ml"'s box "x" are
# both "ann-ml-x").
LABEL_OWNER = "deepbox.owner"

NO_GPU_RUNTIME = (
    "The Docker engine cannot give GPUs to containers (no NVIDIA runtime): install the NVIDIA Container "
    "Toolkit and run `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`, "
    'or set gpus = "none" (`deepbox doctor` checks the driver and runtime).'
)


@dataclass(frozen=True)
class EngineInfo:
    """What kind of engine answered, and what that means for boxes."""

    kind: str  # docker | podman
    version: str
    rootless: bool  # runs as an ordinary user: container root is that user, other UIDs are subordinate ones
    root_dir: str  # where its images live (for the free-disk check)
    gpu_runtime: bool  # it can hand NVIDIA GPUs to containers (the NVIDIA runtime, or CDI devices)
    arch: str
    where: str  # how deepbox reached it: a socket, a Docker context, or a server over ssh

    def describe(self) -> str:
        mode = "rootless " if self.rootless else ""
        return f"{mode}{'Podman' if self.kind == 'podman' else 'Docker'} {self.version} at {self.where}"


@dataclass(frozen=True)
class Image:
    id: str
    env: tuple[str, ...] = ()  # its configured environment ("PATH=...")
    tags: tuple[str, ...] = ()
    size: int = 0  # bytes
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""  # when it was made (ISO 8601)
    digests: tuple[str, ...] = ()  # "name@sha256:...": the registry digests it was pulled or pushed as


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    status: str  # created | running | exited | ...
    labels: dict[str, str]
    image: str  # the image it was created from, as named then
    ports: dict[str, int] = field(default_factory=dict)  # "22/tcp" -> the published host port
    started_at: str = ""  # when it last started (ISO 8601), "" when never
    gpus: str = ""  # the GPUs it asked for: "all", "2", "0,2"; "" for none
    env: tuple[str, ...] = ()  # its environment, image's included
    exit_code: int | None = None  # how it last ended, when it has


@dataclass(frozen=True)
class NewContainer:
    """A box container to create. `user_namespace` "keep-id" maps the host user to the same UID inside
    (rootless Podman); "" leaves the engine's default."""

    image: str
    name: str
    hostname: str
    labels: dict[str, str]
    environment: dict[str, str]
    ports: dict[str, tuple[str, int]]  # "22/tcp" -> (host address, host port)
    volumes: dict[str, str]  # named volume -> its path in the box
    binds: tuple[tuple[str, str, bool], ...]  # (host path, box path, read only)
    tmpfs: dict[str, str]
    shm_size: str
    gpus: GpuRequest = GpuRequest()  # noqa: RUF009 - frozen, so one shared default is safe
    user_namespace: str = ""
    # The box's profile: every capability dropped but these, and no-new-privileges unless sudo needs
    # setuid to work (README, "The box's own profile").
    capabilities: tuple[str, ...] = ()
    no_new_privileges: bool = True
    pids_limit: int = 0  # 0: the engine's default


class BuildKitUnavailable(DeepboxError):
    """The engine refused a BuildKit build: the caller builds again with the classic builder."""


class PortInUseError(DeepboxError):
    pass


class EngineWentAway(DeepboxError):
    """The engine stopped answering in the middle of a request or a stream (it stopped or restarted)."""


class RegistryUnreachable(DeepboxError):
    """The registry did not answer (down, a wrong address, refused credentials): not the same as a tag it lacks."""


class Engine(ABC):
    """One container engine. Methods raise DeepboxError with a sentence that says what to do."""

    where: str  # how it was reached, for messages and `status`/`doctor`

    @abstractmethod
    def info(self) -> EngineInfo: ...

    # Images ------------------------------------------------------------------------------------

    @abstractmethod
    def image(self, name: str) -> Image | None: ...

    @abstractmethod
    def pull(self, name: str) -> None: ...

    @abstractmethod
    def pull_if_present(self, name: str, on_line: Callable[[str], None]) -> bool:
        """Pull `name` ("host/namespace/box:tag") with progress; False when the registry has no such tag.
        A registry that does not answer raises RegistryUnreachable."""

    @abstractmethod
    def push(self, name: str, on_line: Callable[[str], None]) -> str:
        """Push a local image to the registry its name starts with, with progress; returns its digest."""

    @abstractmethod
    def tag(self, source: str, target: str) -> None:
        """Give an image another name ("name:version")."""

    @abstractmethod
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
        """Build with BuildKit when the context asks for it (context.buildkit), else with the classic
        builder, reporting steps, output and downloads to on_event; a failure (buildlog.BuildFailed) names
        the failing step and shows its log tail. BuildKitUnavailable: the engine refused BuildKit."""

    def builder(self) -> str:
        """The builder this engine builds with: "buildkit" or "classic"."""
        return "classic"

    @abstractmethod
    def images(self, label: str) -> list[Image]:
        """The images that carry a label ("key" or "key=value")."""

    @abstractmethod
    def untag(self, name: str) -> None:
        """Drop an image tag of ours; layers stay while anything still uses them."""

    @abstractmethod
    def remove_image(self, name: str) -> None:
        """Remove an image tag (or an untagged image by id); refused while a container uses the image."""

    @abstractmethod
    def images_in_use(self) -> set[str]:
        """The ids of the images any container on the engine (running or stopped) was made from."""

    @abstractmethod
    def own_sizes(self) -> dict[str, int]:
        """Image id -> the bytes removing it would free (its layers no other image shares)."""

    @abstractmethod
    def import_image(self, tar_stream: IO[bytes], tag: str) -> None: ...

    @abstractmethod
    def commit(self, container_id: str, tag: str, message: str, changes: list[str]) -> str:
        """Commit a container to an image named `tag` ("name" or "name:version"); returns the image id."""

    # Containers --------------------------------------------------------------------------------

    @abstractmethod
    def container(self, name_or_id: str) -> Container | None: ...

    @abstractmethod
    def boxes(self) -> list[Container]:
        """Every container that carries the deepbox.box label."""

    @abstractmethod
    def published_ports(self) -> set[int]:
        """Host ports any container on this engine publishes."""

    @abstractmethod
    def create(self, new: NewContainer) -> Container: ...

    @abstractmethod
    def start(self, container: Container) -> None:
        """Start; a taken port raises PortInUseError and removes nothing."""

    @abstractmethod
    def stop(self, container: Container, timeout: int = 10) -> None: ...

    @abstractmethod
    def remove(self, container_id: str) -> None:
        """Remove a container, running or not; one that is already gone is fine."""

    @abstractmethod
    def exec(self, container: Container, command: list[str], user: str = "") -> tuple[int, str]: ...

    @abstractmethod
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
        """Run a command in the box as `docker exec` does and return its exit code: its output is written
        as it comes (stdout and stderr apart; one terminal stream with `tty`), and the file descriptor
        `stdin`, when given, is read until its end. With `tty`, `window()` gives the terminal's (rows,
        columns), which the box's terminal follows."""

    @abstractmethod
    def write_file(self, container: Container, path: str, content: bytes, owner: tuple[int, int], mode: int) -> None:
        """Write a file in a running container through a command's stdin: never on a command line, in
        the container's settings, or (as the engine's archive upload does with a tmpfs) in the layer
        under a mount."""

    @abstractmethod
    def logs(self, container: Container, follow: bool, tail: int | str = "all") -> Iterator[bytes]: ...

    def path_mtime_ns(self, container: Container, path: str) -> int | None:
        """When a path in the running container last changed (ns since the epoch), read by the engine
        without starting a process in the container; None when unknown (no such path, or the engine
        cannot tell)."""
        return None

    @abstractmethod
    def put_archive(self, container: Container, path: str, archive: bytes) -> None:
        """Unpack a tar archive into folder `path` of the running container (its files become root's)."""

    @abstractmethod
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
        """Run a throwaway container to completion and return its output (it is removed afterwards)."""

    # Volumes -----------------------------------------------------------------------------------

    @abstractmethod
    def volume_ensure(self, name: str, labels: dict[str, str]) -> None: ...

    @abstractmethod
    def volumes(self, box: str, owner: str = "") -> list[str]:
        """The names of the volumes labelled for this box; with `owner`, none labelled for another owner."""

    @abstractmethod
    def remove_volume(self, name: str) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Release what reaching the engine took (an ssh tunnel); the engine is unusable afterwards."""
