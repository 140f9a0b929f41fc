"""Container engines: where the engine is (`locate`, the way the docker CLI decides) and one
interface to it (`Engine`, engine/base.py). Nothing outside this package imports the Docker SDK.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepbox.engine.base import (
    LABEL_ALIAS,
    LABEL_BOX,
    LABEL_OWNER,
    LABEL_PROJECT,
    LABEL_RUN,
    LABEL_SPEC,
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
from deepbox.errors import DeepboxError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"

__all__ = [
    "DEFAULT_SOCKET",
    "LABEL_ALIAS",
    "LABEL_BOX",
    "LABEL_OWNER",
    "LABEL_PROJECT",
    "LABEL_RUN",
    "LABEL_SPEC",
    "NO_GPU_RUNTIME",
    "BuildKitUnavailable",
    "Container",
    "Engine",
    "EngineInfo",
    "EngineWentAway",
    "Image",
    "Location",
    "NewContainer",
    "PortInUseError",
    "RegistryUnreachable",
    "connect",
    "locate",
]


@dataclass(frozen=True)
class Location:
    """Where the engine is: a URL (unix://, tcp://, ssh:// for a server, slurm:// for a Slurm cluster's
    login node), and what said so."""

    url: str
    via: str  # "--host", "host in deepbox.toml", "DOCKER_HOST", "Docker context NAME", "the default socket"
    context: str = ""  # the Docker context it came from, if any (its TLS settings go with it)

    @property
    def server(self) -> bool:
        return self.url.startswith(("ssh://", "slurm://"))

    def describe(self) -> str:
        return f"{self.url} ({self.via})"


def locate(
    host_option: str = "",
    context_option: str = "",
    host_setting: str = "",
    context_setting: str = "",
    environ: Mapping[str, str] | None = None,
) -> Location:
    """The engine as the docker CLI would choose it, options first: --host, --context, the project's
    `host`, DOCKER_HOST, DOCKER_CONTEXT, the project's `context`, the current Docker context
    (`docker context use`), the default socket."""
    env = os.environ if environ is None else environ
    if host_option:
        return Location(host_option, "--host")
    if context_option:
        return _from_context(context_option, "--context", env)
    if host_setting:
        return Location(host_setting, "host in deepbox.toml")
    if env.get("DOCKER_HOST"):
        return Location(env["DOCKER_HOST"], "DOCKER_HOST")
    if env.get("DOCKER_CONTEXT"):
        return _from_context(env["DOCKER_CONTEXT"], "DOCKER_CONTEXT", env)
    if context_setting:
        return _from_context(context_setting, "context in deepbox.toml", env)
    current = _current_context(env)
    if current and current != "default":
        return _from_context(current, "the current Docker context", env)
    return Location(DEFAULT_SOCKET, "the default socket")


def docker_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"


def _current_context(environ: Mapping[str, str]) -> str:
    """`currentContext` in the docker CLI's config.json ("" or "default" when none is chosen)."""
    try:
        return str(json.loads((docker_config_dir(environ) / "config.json").read_text()).get("currentContext") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _from_context(name: str, via: str, environ: Mapping[str, str] | None = None) -> Location:
    """A Docker context's engine, read where the docker CLI keeps it:
    contexts/meta/<sha256 of the name>/meta.json beside config.json."""
    if name == "default":
        return Location(DEFAULT_SOCKET, f"Docker context default ({via})", "default")
    meta = docker_config_dir(environ) / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
    try:
        host = json.loads(meta.read_text())["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        host = ""
    if not host:
        raise DeepboxError(
            f"The Docker context '{name}' ({via}) does not exist or names no engine; `docker context ls` lists "
            "the contexts there are."
        )
    return Location(str(host), f"Docker context {name}", name)


def _tls(context: str) -> Any:
    """The TLS settings a tcp:// context carries (its ca/cert/key files), or None."""
    folder = docker_config_dir() / "contexts" / "tls" / hashlib.sha256(context.encode()).hexdigest() / "docker"
    if not (folder / "ca.pem").exists():
        return None
    from docker.tls import TLSConfig

    cert = (str(folder / "cert.pem"), str(folder / "key.pem")) if (folder / "cert.pem").exists() else None
    return TLSConfig(client_cert=cert, ca_cert=str(folder / "ca.pem"), verify=True)


def connect(location: Location, url: str | None = None, on_close: Callable[[], None] | None = None) -> Engine:
    """The engine at a location. `url` replaces the location's (the local end of an ssh tunnel to a
    server's socket); `on_close` runs when the engine is closed (ending that tunnel)."""
    from deepbox.engine.docker import DockerEngine

    tls = _tls(location.context) if location.context and url is None and location.url.startswith("tcp://") else None
    return DockerEngine(url or location.url, location.describe(), tls, on_close)
