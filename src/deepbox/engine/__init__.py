"""Container engines: where the engine is (`locate`, the way the docker CLI decides) and one
interface to it (`Engine`, engine/base.py). Nothing outside this package imports the Docker SDK.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepbox.engine.base import (
    LABEL_ALIAS,
    LABEL_BOX,
    LABEL_PROJECT,
    LABEL_RUN,
    LABEL_SPEC,
    Container,
    Engine,
    EngineInfo,
    Image,
    NewContainer,
    PortInUseError,
)
from deepbox.errors import DeepboxError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"

__all__ = [
    "DEFAULT_SOCKET",
    "LABEL_ALIAS",
    "LABEL_BOX",
    "LABEL_PROJECT",
    "LABEL_RUN",
    "LABEL_SPEC",
    "Container",
    "Engine",
    "EngineInfo",
    "Image",
    "Location",
    "NewContainer",
    "PortInUseError",
    "connect",
    "locate",
    "no_gpu_runtime",
]


@dataclass(frozen=True)
class Location:
    """Where the engine is: a URL (unix://, tcp://, or ssh:// for a server), and what said so."""

    url: str
    via: str  # "--host", "host in deepbox.toml", "DOCKER_HOST", "Docker context NAME", "the default socket"
    context: str = ""  # the Docker context it came from, if any (its TLS settings go with it)

    @property
    def server(self) -> bool:
        return self.url.startswith("ssh://")

    def describe(self) -> str:
        return f"{self.url} ({self.via})"


def locate(
    host_option: str = "",
    context_option: str = "",
    host_setting: str = "",
    context_setting: str = "",
    environ: dict[str, str] | None = None,
) -> Location:
    """The engine as the docker CLI would choose it, options first: --host, --context, the project's
    `host`, DOCKER_HOST, DOCKER_CONTEXT, the project's `context`, the current Docker context
    (`docker context use`), the default socket."""
    env = os.environ if environ is None else environ
    if host_option:
        return Location(host_option, "--host")
    if context_option:
        return _from_context(context_option, "--context")
    if host_setting:
        return Location(host_setting, "host in deepbox.toml")
    if env.get("DOCKER_HOST"):
        return Location(env["DOCKER_HOST"], "DOCKER_HOST")
    if env.get("DOCKER_CONTEXT"):
        return _from_context(env["DOCKER_CONTEXT"], "DOCKER_CONTEXT")
    if context_setting:
        return _from_context(context_setting, "context in deepbox.toml")
    from docker.context.config import get_current_context_name

    current = get_current_context_name()
    if current and current != "default":
        return _from_context(current, "the current Docker context")
    return Location(DEFAULT_SOCKET, "the default socket")


def _from_context(name: str, via: str) -> Location:
    from docker.context import ContextAPI

    context = None if name == "default" else ContextAPI.get_context(name)
    if name == "default":
        return Location(DEFAULT_SOCKET, f"Docker context default ({via})", "default")
    if context is None or not context.Host:
        raise DeepboxError(
            f"The Docker context '{name}' ({via}) does not exist or names no engine; `docker context ls` lists "
            "the contexts there are."
        )
    return Location(str(context.Host), f"Docker context {name}", name)


def connect(location: Location, url: str | None = None, on_close: Callable[[], None] | None = None) -> Engine:
    """The engine at a location. `url` replaces the location's (the local end of an ssh tunnel to a
    server's socket); `on_close` runs when the engine is closed (ending that tunnel)."""
    from deepbox.engine.docker import DockerEngine

    tls: Any = None
    if location.context and location.context != "default" and url is None:
        from docker.context import ContextAPI

        tls = ContextAPI.get_context(location.context).TLSConfig
    return DockerEngine(url or location.url, location.describe(), tls, on_close)


def no_gpu_runtime() -> str:
    from deepbox.engine.docker import NO_GPU_RUNTIME

    return NO_GPU_RUNTIME
