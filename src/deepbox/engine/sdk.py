"""The Docker SDK, imported without its paramiko ssh transport.

deepbox reaches servers with the system's ssh (remote.py), never through the SDK's ssh:// support;
where paramiko is installed anyway, importing it (and invoke, which it pulls in) costs about 100 ms of
every command. For the length of the SDK's import, `import paramiko` fails as if it were absent; a
later import of paramiko (by anything else in the process) works as before.
"""

from __future__ import annotations

import sys

_hidden = "paramiko" not in sys.modules
if _hidden:
    sys.modules["paramiko"] = None  # type: ignore[assignment]
try:
    import docker
    import docker.errors
    from docker.models.containers import _create_container_args as create_container_args
    from docker.types import DeviceRequest
    from docker.utils import socket as docker_socket
finally:
    if _hidden:
        del sys.modules["paramiko"]

__all__ = ["DeviceRequest", "create_container_args", "docker", "docker_socket"]
