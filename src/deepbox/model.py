"""Records that several layers share: a build context, what `up` reports, a box in `status`, a server
account. Plain data, so a module that needs one never imports the module that makes it.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import tarfile
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class BuildContext:
    dockerfile: str
    files: dict[str, bytes] = field(default_factory=dict)  # context path -> content
    # BuildKit's Dockerfile (cache mounts) and the same Dockerfile without them, which the spec hash
    # is taken from: both builders make the same image, so it keeps one tag whichever built it.
    buildkit: bool = False
    plain_dockerfile: str = ""

    @property
    def spec_hash(self) -> str:
        digest = hashlib.sha256((self.plain_dockerfile or self.dockerfile).encode())
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
        return digest.hexdigest()[:12]

    def tar(self) -> io.BytesIO:
        buffer = io.BytesIO()
        # USTAR: BuildKit's Dockerfile frontend misreads the PAX headers Python writes by default.
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            for path, content in sorted({"Dockerfile": self.dockerfile.encode(), **self.files}.items()):
                info = tarfile.TarInfo(path)
                info.size = len(content)
                info.mode = 0o755 if path.endswith(".sh") else 0o644
                archive.addfile(info, io.BytesIO(content))
        buffer.seek(0)
        return buffer


@dataclass(frozen=True)
class BuildEvent:
    """One thing a build reports, the same for BuildKit and the classic builder.

    kind: "start" (a step began), "cached" (a step came from the cache), "done" (a step ended), "output"
    (one line the step printed), "download" (bytes of a pull, total 0 when unknown), "error"."""

    step: str  # as the builder names it: "[3/9] RUN ..." (BuildKit) or "Step 3/9 : RUN ..." (classic)
    kind: str
    text: str = ""
    current: int = 0
    total: int = 0
    at: float = 0.0  # when (time.time()), for elapsed times


@dataclass
class FrameworkCheck:
    name: str
    module: str
    ok: bool
    version: str = ""
    gpu: bool | None = None
    gpu_count: int | None = None  # how many GPUs it sees, for frameworks that can count them
    error: str = ""
    from_base: bool = False  # the base image's own copy, not one deepbox installed


@dataclass
class ReachedPort:
    """A box port (`ports` in deepbox.toml) and where this machine reaches it."""

    box_port: int
    host_port: int  # on this machine: the published port, or a server box's forward
    url: str
    via: str  # how: "published on 127.0.0.1", or the ssh alias that forwards it

    def describe(self) -> str:
        return f"{self.url}  (box port {self.box_port}, {self.via})"


@dataclass
class UpResult:
    box: str
    alias: str
    action: str  # created | recreated | started | running
    image: str
    host: str
    port: int
    user: str
    workspace: str
    key: str  # the private key the box trusts
    python: str  # the interpreter IDEs should use
    python_version: str
    jupyter_url: str | None = None
    frameworks: list[FrameworkCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # weaker choices an old OpenSSH in the box forced
    lock: str = ""  # the variant of deepbox.lock the box was built from: cpu, cuda13, ...
    cuda: str = ""  # the CUDA version its packages carry
    ide_host: str = ""  # what an IDE's own SSH client connects to: the alias for a box behind a jump
    jump: str = ""  # the ProxyJump ([user@]server[:port]) for a box on a server's engine
    ports: list[ReachedPort] = field(default_factory=list)
    image_source: str = ""  # built | pulled (from the registry); "" for a box made before deepbox said

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def ssh_command(self) -> str:
        """The plain ssh command that reaches the box, for tools that do not read deepbox's ssh config."""
        jump = ["-J", self.jump] if self.jump else []
        return shlex.join(["ssh", *jump, "-p", str(self.port), "-i", self.key, f"{self.user}@{self.host}"])


@dataclass(frozen=True)
class Drift:
    """How a running box's Python packages differ from what deepbox installed from deepbox.lock."""

    added: dict[str, str] = field(default_factory=dict)  # name -> version
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (locked, installed)
    removed: dict[str, str] = field(default_factory=dict)  # name -> locked version

    @property
    def count(self) -> int:
        return len(self.added) + len(self.changed) + len(self.removed)

    def items(self) -> list[str]:
        """'added tinypkg 0.1.0', 'changed six (1.16.0 -> 1.17.0)', 'removed tqdm 4.67.1'."""
        return [
            *(f"added {name} {version}" for name, version in sorted(self.added.items())),
            *(f"changed {name} ({old} -> {new})" for name, (old, new) in sorted(self.changed.items())),
            *(f"removed {name} {version}" for name, version in sorted(self.removed.items())),
        ]


@dataclass
class BoxStatus:
    box: str
    state: str
    image: str
    port: int | None
    project: str
    alias: str
    uptime_seconds: int | None
    gpus: str = ""  # what the box asked Docker for: "all", "2", "0,2"; "" for none
    host: str = ""  # the engine's server ("ssh://..."), "" for the local engine
    engine: str = ""  # which engine answered, and how it was reached
    ports: list[ReachedPort] = field(default_factory=list)
    drift: Drift | None = None  # `status NAME` of a running box only: its packages against deepbox.lock
    image_source: str = ""  # built | pulled (from the registry); "" for a box made before deepbox said
    job: dict[str, str] | None = None  # a Slurm cluster's box: its job's id, state, node and time left

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Account:
    """The server user: the box user mirrors it, and box folders live in its home."""

    name: str
    uid: int
    gid: int
    home: str
