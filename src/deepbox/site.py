"""Where a box lives: this machine, or a server reached over ssh.

One object answers every question whose answer differs between the two (how to reach the engine,
the ssh jump to the box, making mount folders, free ports, free disk, the GPUs' nvidia-smi, the
account the box user mirrors), so the rest of deepbox does not branch on where the box is. A
server's facts come from one ssh call, made only when first needed (never while reading config).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shlex
import shutil
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Protocol

from deepbox import engine as engines
from deepbox import hostos, remote, slurm, ssh
from deepbox.config import BoxUser, Spec
from deepbox.engine import Engine, Location
from deepbox.errors import DeepboxError
from deepbox.gpu import GpuRequest
from deepbox.model import Account


class Reporter(Protocol):
    def step(self, message: str) -> None: ...


class Site(ABC):
    def __init__(self, location: Location) -> None:
        self.location = location
        self._engine: Engine | None = None

    @property
    @abstractmethod
    def host(self) -> str:
        """The server's ssh URL, "" for this machine (what status rows and labels show)."""

    @property
    def jump(self) -> str | None:
        """ProxyJump for the box's ssh alias; None when ssh reaches the box directly."""
        return None

    @property
    def server(self) -> remote.Server | None:
        """The ssh server the box lives on; None on this machine."""
        return None

    @abstractmethod
    def _connect(self) -> Engine: ...

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._connect()
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def bind(self, spec: Spec) -> Spec:
        """The spec as this site's engine runs it. A rootless engine maps UIDs: rootless Docker's root is
        the user running the engine, so the box user is root and files written in mounts stay that
        user's (unless [user] says otherwise); rootless Podman keeps the user's own UID in the box."""
        info = self.engine().info()
        if not info.rootless:
            return spec
        if info.kind == "podman":
            return replace(spec, user_namespace="keep-id")
        if spec.user_configured:
            return spec
        return replace(spec, user=BoxUser("root", 0, 0))

    def account(self) -> Account | None:
        """The server account the box user mirrors; None here (the box mirrors the local user)."""
        return None

    # A Slurm cluster runs each box in a job of its own; elsewhere these do nothing.

    def select(self, box: str) -> None:  # noqa: B027 - a hook only a Slurm site needs
        """The box (its name on the engine) that the next engine calls are about."""

    def start(self, spec: Spec, reporter: Reporter) -> Spec:
        """Make the box's engine ready for `up`; the spec as it runs there."""
        return spec

    def job(self) -> slurm.Job | None:
        """The Slurm job that holds the selected box; None elsewhere."""
        return None

    def release(self, reporter: Reporter) -> str:
        """End what holds the selected box once it is removed; what happened, "" for nothing."""
        return ""

    def abandon(self) -> None:  # noqa: B027 - a hook only a Slurm site needs
        """`up` failed: undo what `start` set going for it."""

    @property
    def keeps_stopped_boxes(self) -> bool:
        """False where a stopped box cannot stay (a Slurm node is lent for a job): `down` removes it."""
        return True

    def listed_boxes(self) -> list[tuple[str, slurm.Job]] | None:
        """(box, job) for each box `status` lists, where each has an engine of its own; None: the engine's."""
        return None

    def engine_pending(self, spec: Spec) -> str | None:
        """Where the box's engine exists only once `up` asks for it (a Slurm job) and does not yet: what
        `doctor` can say instead (a DeepboxError when `up` would fail there); None where it exists."""
        return None

    @abstractmethod
    def connect_host(self, bind: str) -> str:
        """Where ssh connects to reach a box port published on `bind`."""

    def ide_host(self, alias: str, bind: str) -> str:
        """The host an IDE's own SSH client uses: the alias where a jump is needed, else the address."""
        return self.connect_host(bind)

    @abstractmethod
    def make_folders(self, folders: list[Path], owner: tuple[int, int]) -> None:
        """Create missing bind-mount sources, owned by whoever the box writes as."""

    @abstractmethod
    def free_port(self, bind: str) -> int: ...

    @abstractmethod
    def port_is_free(self, bind: str, port: int) -> bool: ...

    @abstractmethod
    def port_taken(self, port: int, bind: str, source: str) -> DeepboxError: ...

    def bind_error(self, bind: str, source: str) -> DeepboxError | None:
        """Why the box's ports cannot be published on `bind` (not an address of the machine); None when
        they can, or when only the engine can tell (a server's addresses show when the box starts)."""
        return None

    def port_holder(self, port: int) -> str:
        """Who listens on a port, as far as this machine lets us see: "python3 (process 4242)"."""
        return "another program"

    @abstractmethod
    def free_bytes(self, path: str) -> int | None: ...

    @abstractmethod
    def nvidia_smi(self) -> str | None:
        """nvidia-smi's GPU list where the box runs; None without a working driver."""

    def describe(self, path: str = "") -> str:
        return path

    @property
    def forwards_ports(self) -> bool:
        """True where the box's `ports` are not published but forwarded by its ssh alias (a server box)."""
        return False

    def port_site(self) -> Site:
        """Where the box's `ports` are reached: this site, where the engine publishes them; for a server box,
        this machine, where its ssh alias forwards them from."""
        return self


class LocalSite(Site):
    """This machine: its engine is a local socket (or a Docker context's)."""

    @property
    def host(self) -> str:
        return ""

    def _connect(self) -> Engine:
        return engines.connect(self.location)

    def connect_host(self, bind: str) -> str:
        return "127.0.0.1" if bind in ("", "0.0.0.0", "127.0.0.1") else bind  # noqa: S104

    def make_folders(self, folders: list[Path], owner: tuple[int, int]) -> None:
        for folder in folders:
            if not folder.exists():
                folder.mkdir(parents=True)
                if hostos.is_root():  # a folder deepbox makes for the box belongs to the box user
                    os.chown(folder, *owner)

    def free_port(self, bind: str) -> int:
        with _listener(bind) as probe:
            probe.bind((bind or "127.0.0.1", 0))
            return int(probe.getsockname()[1])

    def port_is_free(self, bind: str, port: int) -> bool:
        """False only when something listens there: an address that is not this machine's is
        bind_error's to report, and a port below 1024 is the engine's to open, not ours."""
        error = _listen_error(bind, port)
        return error is None or error.errno != errno.EADDRINUSE

    def bind_error(self, bind: str, source: str) -> DeepboxError | None:
        error = _listen_error(bind, 0)
        if error is None:
            return None
        reason = error.strerror or str(error)
        return DeepboxError(
            f'ssh.bind = "{bind}" in {source} is not an address this machine can listen on ({reason}); set it '
            'to "127.0.0.1" (the default), or to an address of one of its network interfaces.'
        )

    def port_holder(self, port: int) -> str:
        found = process_listening(port)
        return f"{found[1]} (process {found[0]})" if found is not None else "another program"

    def port_taken(self, port: int, bind: str, source: str) -> DeepboxError:
        return DeepboxError(
            f"Port {port} on {bind} is already in use by {self.port_holder(port)}; set ssh.port to a free one "
            f"(for example {self.free_port(bind)}) or to 0 to pick one automatically in {source}."
        )

    def free_bytes(self, path: str) -> int | None:
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None

    def nvidia_smi(self) -> str | None:
        from deepbox import gpu

        return gpu.read_nvidia_smi()


def _listener(bind: str) -> socket.socket:
    """A TCP socket of the address family `bind` is in (an IPv6 address has colons)."""
    return socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)


def _listen_error(bind: str, port: int) -> OSError | None:
    """What listening on bind:port here would fail with; None when it would work."""
    try:
        with _listener(bind) as probe:
            probe.bind((bind or "127.0.0.1", port))
    except OSError as exc:  # socket.gaierror too: a name or an address of the other family
        return exc
    return None


def listening_inodes(table: str, port: int) -> set[str]:
    """The socket inodes listening on `port` in a /proc/net/tcp (or tcp6) table."""
    inodes = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def process_listening(port: int, proc: Path = Path("/proc")) -> tuple[int, str] | None:
    """(pid, command name) of a process listening on `port` here, from Linux's /proc; None where there
    is no /proc or the listener is not a process we may look into (another user's, as a non-root user)."""
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            inodes |= listening_inodes((proc / table).read_text(), port)
        except OSError:
            continue
    targets = {f"socket:[{inode}]" for inode in inodes - {"0"}}
    if not targets:
        return None
    for process in proc.iterdir():
        if process.name.isdigit() and _holds(process, targets):
            try:
                return int(process.name), (process / "comm").read_text().strip()
            except OSError:
                return int(process.name), "a process"
    return None


def _holds(process: Path, sockets: set[str]) -> bool:
    try:
        descriptors = list((process / "fd").iterdir())
    except OSError:
        return False  # gone, or not ours to look into
    for descriptor in descriptors:
        try:
            if str(descriptor.readlink()) in sockets:
                return True
        except OSError:
            continue  # closed meanwhile
    return False


# What the server says about itself, in one ssh call: the account, and the engine socket this user
# may use there (the system's Docker socket when writable, else the user's rootless Docker or Podman).
_SERVER_PROBE = (
    'id -un && id -u && id -g && printf "%s\\n" "$HOME" && run="${XDG_RUNTIME_DIR:-/run/user/$(id -u)}" && '
    'for s in /var/run/docker.sock "$run/docker.sock" "$run/podman/podman.sock"; do '
    'if [ -S "$s" ] && [ -w "$s" ]; then echo "$s"; break; fi; done'
)


class ServerSite(Site):
    """A server reached with the user's own ssh client: its engine's socket forwarded over ssh, the
    box's port on the server's 127.0.0.1, reached through the server (ProxyJump)."""

    def __init__(self, location: Location) -> None:
        super().__init__(location)
        self._server = remote.parse(location.url)

    @property
    def server(self) -> remote.Server:
        return self._server

    @property
    def host(self) -> str:
        return self.location.url

    @property
    def jump(self) -> str | None:
        return self.server.jump

    @cached_property
    def _probe(self) -> list[str]:
        lines = remote.run(self.server, _SERVER_PROBE).splitlines()
        if len(lines) < 4 or not lines[1].isdigit() or not lines[2].isdigit():
            raise DeepboxError(f"The server {self.server.jump} did not report its user (id, $HOME); is it a Unix host?")
        return lines

    def account(self) -> Account:
        name, uid, gid, home = self._probe[:4]
        return Account(name=name, uid=int(uid), gid=int(gid), home=home)

    def _connect(self) -> Engine:
        if len(self._probe) < 5:
            raise DeepboxError(
                f"The server {self.server.jump} has no container engine socket its user {self._probe[0]} may use "
                "(/var/run/docker.sock with the 'docker' group, or a rootless Docker or Podman of that user's: "
                "`systemctl --user start docker` or `systemctl --user start podman.socket`)."
            )
        return self._through_tunnel(self.server, self._probe[4])

    def _through_tunnel(self, server: remote.Server, socket_path: str) -> Engine:
        """The engine whose socket is at socket_path on `server`, forwarded over ssh to a private socket here."""
        tunnel = remote.Tunnel(server, socket_path)
        try:
            return engines.connect(self.location, url=tunnel.url, on_close=tunnel.close)
        except DeepboxError:
            tunnel.close()
            raise

    def connect_host(self, bind: str) -> str:
        return "127.0.0.1"  # the server's own loopback, reached through the jump

    def ide_host(self, alias: str, bind: str) -> str:
        return alias  # IDEs that read ~/.ssh/config get the jump with the alias

    def make_folders(self, folders: list[Path], owner: tuple[int, int]) -> None:
        # Made by the server user, so the box user (the same UID) can write to them.
        if folders:
            remote.run(self.server, "mkdir -p -- " + " ".join(shlex.quote(str(folder)) for folder in folders))

    def free_port(self, bind: str) -> int:
        """A port no container on the server's engine publishes; a clash with another program there is
        caught when the container starts, and `up` then tries another one."""
        used = self.engine().published_ports()
        return secrets.choice([port for port in range(20000, 61000) if port not in used])

    def port_is_free(self, bind: str, port: int) -> bool:
        return port not in self.engine().published_ports()  # another program's use shows only at start

    def port_taken(self, port: int, bind: str, source: str) -> DeepboxError:
        return DeepboxError(
            f"Port {port} on the server {self.host} is already in use by another program; set ssh.port to 0 "
            f"in {source} to let deepbox pick a free one there."
        )

    def free_bytes(self, path: str) -> int | None:
        return _free_bytes_on(self.server, path)

    def nvidia_smi(self) -> str | None:
        from deepbox import gpu

        try:
            return remote.run(self.server, gpu.NVIDIA_SMI)
        except DeepboxError:
            return None  # not installed there, or no driver

    def describe(self, path: str = "") -> str:
        return f"{self.host}:{path}" if path else self.host

    @property
    def forwards_ports(self) -> bool:
        return True

    def port_site(self) -> Site:
        return LocalSite(Location(engines.DEFAULT_SOCKET, "this machine"))


class SlurmSite(ServerSite):
    """A Slurm cluster: the login node is the server for the box's files (the shared home holds the
    project folder, `sync` and the mounts) and for the account; each box runs in a job of its own, under
    the user's rootless Podman on the node Slurm picks, reached through the login node (login -> node ->
    box). The engine is the selected box's job's, so commands select the box first."""

    def __init__(self, location: Location) -> None:
        super().__init__(location)
        self._box = ""
        self._submitted = ""  # the job this command submitted, cancelled if `up` fails
        self._job: slurm.Job | None = None
        self._ready: slurm.Ready | None = None

    @property
    def jump(self) -> str | None:
        return ssh.node_alias(self._box) if self._box else self.server.jump

    @property
    def keeps_stopped_boxes(self) -> bool:
        return False

    def select(self, box: str) -> None:
        if box != self._box:
            self.close()
            self._box, self._job, self._ready = box, None, None

    def bind(self, spec: Spec) -> Spec:
        return replace(spec, user_namespace="keep-id")  # the user's rootless Podman, known without asking

    def jobs(self) -> list[slurm.Job]:
        """The user's deepbox jobs that have not ended."""
        listed = slurm.parse_squeue(remote.run(self.server, slurm.squeue_command()))
        return [job for job in listed if job.state not in slurm.ENDED]

    def _current_job(self) -> slurm.Job | None:
        return next((job for job in self.jobs() if job.box == self._box), None)

    def job(self) -> slurm.Job | None:
        if self._job is None and self._box:
            self._job = self._current_job()
        return self._job

    def start(self, spec: Spec, reporter: Reporter) -> Spec:
        """A running job for the box (its own, or a new one), its engine ready; the spec with the GPUs
        Slurm gave the job."""
        self.select(spec.engine_name)
        if spec.device == "cuda" and not spec.slurm.asks_for_gpus:
            raise DeepboxError(
                f"Box '{spec.name}' is a cuda box, and its Slurm job would get no GPU; ask for them in [slurm] in "
                f'{spec.source or "deepbox.toml"}: gres = "gpu:1" (or gpus = 1).'
            )
        job = self._current_job()
        if job is None:
            job_id = self._submitted = self._submit(spec)
            reporter.step(f"Submitted Slurm job {job_id} for box '{spec.name}' on {self.host}")
        else:
            job_id = job.id
        self._wait(job_id, reporter)
        if spec.device != "cuda":
            return spec
        assert self._ready is not None
        if not self._ready.gpus:
            raise DeepboxError(
                f"Slurm job {job_id} of box '{spec.name}' runs with no GPU (SLURM_JOB_GPUS is empty on "
                f"{self._ready.node}); check that [slurm] gres or gpus in {spec.source or 'deepbox.toml'} asks "
                "for GPUs the way the cluster counts them."
            )
        # Slurm's allocation, never "all": the node's other GPUs belong to other jobs.
        return replace(spec, gpus=GpuRequest(device_ids=self._ready.gpus))

    def abandon(self) -> None:
        """`up` failed (or was interrupted): a job it submitted would hold its allocation for nothing."""
        if not self._submitted:
            return
        job_id, self._submitted = self._submitted, ""
        self.close()
        with contextlib.suppress(DeepboxError):
            remote.run(self.server, f"scancel {shlex.quote(job_id)}")
        ssh.remove_host(ssh.node_alias(self._box))
        self._job, self._ready = None, None

    def _submit(self, spec: Spec) -> str:
        try:
            submit = slurm.sbatch_command(spec.engine_name, spec.slurm)
            output = remote.run(self.server, submit, stdin=slurm.job_script(spec.engine_name))
        except remote.CommandFailed as exc:
            raise DeepboxError(
                f"Slurm refused box '{spec.name}''s job on {self.host} ({exc.reason}); fix [slurm] in "
                f"{spec.source or 'deepbox.toml'} (`sinfo` on the login node lists partitions and nodes)."
            ) from None
        return output.strip().split(";")[0]

    def _wait(self, job_id: str, reporter: Reporter) -> None:
        """Until the job runs and its engine listens, saying why it waits whenever that changes."""
        said = ""
        ask = f'{slurm.squeue_command()}; echo ---; cat "{slurm.ready_path(job_id)}" 2>/dev/null; true'
        while True:
            listing, _, ready_text = remote.run(self.server, ask).partition("---\n")
            job = next((job for job in slurm.parse_squeue(listing) if job.id == job_id), None)
            if job is None or job.state in slurm.ENDED:
                raise self._ended(job_id)
            ready = slurm.parse_ready(ready_text)
            if ready is not None and job.state == "RUNNING":
                self._adopt(job, ready)
                reporter.step(f"Box '{self._box}' has {job.describe()}")
                return
            news = job.describe() if job.state != "RUNNING" else f"Slurm job {job_id} on {job.node}: starting Podman"
            if news != said:
                reporter.step(f"Waiting: {news}")
                said = news
            time.sleep(1)

    def _ended(self, job_id: str) -> DeepboxError:
        log = slurm.log_path(job_id)
        try:
            tail = remote.run(self.server, f'tail -n 5 "{log}" 2>/dev/null; true').strip().splitlines()
        except DeepboxError:
            tail = []
        last = f" ({tail[-1].strip()})" if tail else ""
        return DeepboxError(
            f"Slurm job {job_id} of box '{self._box}' ended before its engine started{last}; its log is {log} on "
            f"{self.server.jump}.",
            detail="\n".join(tail),
        )

    def _adopt(self, job: slurm.Job, ready: slurm.Ready) -> None:
        """The job's node becomes the hop to the box: its host key pinned, its ssh alias written."""
        self._job, self._ready = job, ready
        node_alias = ssh.node_alias(self._box)
        ssh.pin_host_key(node_alias, ready.host_key)
        login = [*(["-p", str(self.server.port)] if self.server.port else []), self.server.destination]
        ssh.write_node(node_alias, ready.node, self.account().name, self.server.jump, ssh.login_identities(login))

    def _node(self) -> remote.Server:
        return remote.Server(url=self.location.url, hostname=ssh.node_alias(self._box))

    def _connect(self) -> Engine:
        if not self._box:
            raise DeepboxError(
                f"On the Slurm cluster {self.host} each box has an engine of its own, in its job; name the box "
                "(`deepbox status` lists them)."
            )
        if self._ready is None:
            job = self.job()
            if job is None or job.state != "RUNNING":
                state = f" ({job.describe()})" if job is not None else ""
                raise DeepboxError(
                    f"Box '{self._box}' has no running job on the Slurm cluster {self.host}{state}; `deepbox up` "
                    "submits one."
                )
            ready = slurm.parse_ready(remote.run(self.server, f'cat "{slurm.ready_path(job.id)}" 2>/dev/null; true'))
            if ready is None:
                raise DeepboxError(f"Box '{self._box}''s {job.describe()} is still starting; try again in a moment.")
            self._adopt(job, ready)
        assert self._ready is not None
        return self._through_tunnel(self._node(), self._ready.socket)

    def release(self, reporter: Reporter) -> str:
        """End the selected box's job (after its box was removed): scancel, then wait for Slurm to say
        so. Returns what happened, for the command's last line; "" when there was no job."""
        job = self.job()
        self.close()
        node_alias = ssh.node_alias(self._box)
        ssh.remove_host(node_alias)
        ssh.forget_host(node_alias)
        if job is None:
            return ""
        reporter.step(f"Cancelling Slurm job {job.id}")
        remote.run(self.server, f"scancel {shlex.quote(job.id)}")
        for _ in range(60):
            if all(other.id != job.id for other in self.jobs()):
                break
            time.sleep(1)
        self._job, self._ready = None, None
        return f"Slurm job {job.id} cancelled."

    def engine_pending(self, spec: Spec) -> str | None:
        job = self.job()
        if job is not None and job.state == "RUNNING":
            return None
        if job is not None:
            return f"Box '{spec.name}' has {job.describe()}; its engine starts when the job runs."
        partition = spec.slurm.partition
        where = f"-p {shlex.quote(partition)} " if partition else ""
        states = remote.run(self.server, f"sinfo -h {where}-o '%t %D'").split()
        if partition and not states:
            raise DeepboxError(
                f"The Slurm cluster {self.host} has no partition '{partition}'; set [slurm] partition in "
                f"{spec.source or 'deepbox.toml'} to one `sinfo` lists."
            )
        counts: dict[str, int] = {}
        for state, count in zip(states[::2], states[1::2], strict=False):
            counts[state.rstrip("*~#!%$@^-")] = counts.get(state.rstrip("*~#!%$@^-"), 0) + int(count)
        idle = counts.get("idle", 0)
        return (
            f"Box '{spec.name}' has no Slurm job now; `deepbox up` submits one to "
            f"{f'partition {partition}' if partition else 'the default partition'} of {self.host} "
            f"({idle} of {sum(counts.values())} node{'s' if sum(counts.values()) != 1 else ''} idle)."
        )

    def free_bytes(self, path: str) -> int | None:
        return _free_bytes_on(self._node(), path) if self._ready is not None else None  # the node's disk

    def nvidia_smi(self) -> str | None:
        from deepbox import gpu

        if self._ready is None:
            return None
        try:
            return remote.run(self._node(), gpu.NVIDIA_SMI)
        except DeepboxError:
            return None

    def listed_boxes(self) -> list[tuple[str, slurm.Job]] | None:
        return [(job.box, job) for job in self.jobs()]

    def describe(self, path: str = "") -> str:
        if path and self._ready is not None:
            return f"{self._ready.node}:{path} (Slurm job {self._job.id if self._job else '?'}, {self.host})"
        return super().describe(path)


def _free_bytes_on(server: remote.Server, path: str) -> int | None:
    try:
        fields = remote.run(server, f"df -Pk {shlex.quote(path)} | tail -n 1").split()
        return int(fields[3]) * 1024
    except (DeepboxError, IndexError, ValueError):
        return None


def site_for(location: Location) -> Site:
    if location.url.startswith("slurm://"):
        return SlurmSite(location)
    return ServerSite(location) if location.server else LocalSite(location)
