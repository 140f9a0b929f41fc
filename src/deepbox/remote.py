"""Boxes on a server's Docker engine, reached through the server's own sshd with the user's ssh client.

`host = "ssh://[user@]server[:port]"` (or `--host`, or DOCKER_HOST): the ssh plumbing for a box on a
server (site.ServerSite decides what to ask): one-off commands, the engine socket forwarded to a
private local socket for the Docker SDK, and rsync. The user's ssh config, agent and keys apply
throughout; nothing secret is sent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from deepbox import ssh
from deepbox.errors import ConfigError, DeepboxError


@dataclass(frozen=True)
class Server:
    """Where the engine runs: the ssh destination as the user wrote it."""

    url: str
    hostname: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.hostname}" if self.user else self.hostname

    @property
    def jump(self) -> str:
        """The ProxyJump value: [user@]host[:port]."""
        return self.destination + (f":{self.port}" if self.port else "")

    @property
    def command(self) -> str:
        """How to reach it with ssh by hand: `ssh -p 2222 user@host` (ssh takes no host:port)."""
        return "ssh " + (f"-p {self.port} " if self.port else "") + self.destination


def parse(url: str) -> Server:
    """'ssh://[user@]host[:port]' (or slurm://, a cluster's login node) -> Server; anything else is a
    ConfigError with the right form."""
    parts = urlsplit(url)
    scheme = parts.scheme if parts.scheme in ("ssh", "slurm") else "ssh"
    example = "user@server" if scheme == "ssh" else "user@login-node"
    if parts.scheme != scheme or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(
            f"host = {url!r} is not an {scheme} URL; write it as {scheme}://{example} or {scheme}://{example}:2222."
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"host = {url!r} has an invalid port; write it as {scheme}://{example}:2222.") from exc
    return Server(url=url, hostname=parts.hostname, user=parts.username, port=port)


def _ssh_args(server: Server) -> list[str]:
    args = [*ssh.ssh_base_args(), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    # One connection to the server serves every call of this command (and the next ones, for a minute).
    args += ["-o", "ControlMaster=auto", "-o", f"ControlPath={ssh.control_dir() / 'srv-%C'}", "-o", "ControlPersist=60"]
    if server.port:
        args += ["-p", str(server.port)]
    return [*args, server.destination]


def run(server: Server, command: str, *, timeout: float = 60, stdin: str | None = None) -> str:
    """Run a shell command on the server (`stdin` its input); a failure is one sentence naming the server."""
    ssh.control_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [*_ssh_args(server), command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeepboxError(f"The server {server.jump} did not answer over ssh within {timeout:.0f} s.") from exc
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        if done.returncode == 255:
            raise DeepboxError(
                f"Cannot reach the server {server.jump} over ssh ({reason}); check that `{server.command}` "
                "works without a password prompt (key or agent) and that its host key is known."
            )
        raise CommandFailed(f"A command on the server {server.jump} failed ({reason}).", reason)
    return done.stdout


class CommandFailed(DeepboxError):
    """A command on the server ran and failed; `reason` is the last line it printed on stderr."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Tunnel:
    """The server's engine socket, forwarded to a private local socket for as long as the command runs."""

    def __init__(self, server: Server, remote_socket: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="deepbox-engine-"))  # mode 0700: the socket is private
        self.socket = self.folder / "docker.sock"
        args = _ssh_args(server)
        args[1:1] = ["-N", "-o", "ExitOnForwardFailure=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none"]
        args[-1:-1] = ["-L", f"{self.socket}:{remote_socket}"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                error = self.process.stderr.read().strip() if self.process.poll() is not None else "timed out"
                self.close()
                last = error.splitlines()[-1] if error else "no reason given"
                raise DeepboxError(
                    f"Cannot reach the Docker engine on {server.jump} through ssh ({last}); check that "
                    f"`{server.command} docker info` works."
                )
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self.process.stderr:
            self.process.stderr.close()
        with contextlib.suppress(OSError):
            self.socket.unlink(missing_ok=True)
            self.folder.rmdir()


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def ends_with_deepbox() -> Callable[[], None] | None:
    """A preexec_fn that has the child sent SIGTERM when deepbox dies, SIGKILLed included (Linux; elsewhere
    None), so a killed `deepbox sync` leaves no rsync copying on its own. The signal comes when the calling
    thread ends: call it from the thread that waits for the child."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # deepbox died before the line above could take effect
            os._exit(1)

    return arm


def rsync_command(server: Server, source: Path, target: str, *, dry_run: bool, delete: bool) -> list[str]:
    """rsync of the project folder into its server folder, over the same ssh transport as everything else.

    .gitignore files are honoured (as rsync filter rules) and .git is not copied. Without `delete`
    nothing on the server is ever removed; with it, only files inside the project's server folder."""
    shell = shlex.join(_ssh_args(server)[:-1])
    args = ["rsync", "-az", "--itemize-changes", "-e", shell, "--filter=:- .gitignore", "--exclude=/.git/"]
    if dry_run:
        args.append("--dry-run")
    if delete:
        args.append("--delete")
    return [*args, f"{source}/", f"{server.destination}:{shlex.quote(target)}/"]
