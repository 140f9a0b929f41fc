"""The box spec: deepbox.toml (or [tool.deepbox] in pyproject.toml) -> a validated, resolved Spec.

Nothing here talks to Docker; everything downstream works from the frozen Spec.
"""

from __future__ import annotations

import difflib
import json
import posixpath
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from deepbox import hostos
from deepbox.errors import ConfigError
from deepbox.gpu import GpuRequest, parse_request
from deepbox.slurm import JobRequest

if TYPE_CHECKING:
    from deepbox.model import Account

CONFIG_FILE = "deepbox.toml"
DEFAULT_BASE = "debian:bookworm-slim"
DEFAULT_FRAMEWORKS = ("numpy", "scikit-learn")
DEFAULT_WORKSPACE = "/workspace"
ROOT_USER = ("root", 0, 0)
NAMED_USER_FALLBACK = (1000, 1000)  # a [user] name set on a root host without a uid, or a Windows host

_BOX_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# Docker's spelling of a size (`docker run --shm-size`): a number of bytes, or with k, m or g, and a
# b or ib after the unit ("2GB", "2gb", "2g", "2GiB" are all 2 GiB, as Docker reads them).
_SIZE = re.compile(r"^([0-9]+) ?(?:([kmgKMG])(?:[iI]?[bB])?|[bB])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")
_CUDA = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_PORT = re.compile(r"^(?:([0-9]+):)?([0-9]+)$")  # "BOX" or "HOST:BOX", as `docker run -p` writes them
BOX_SSH_PORT, BOX_JUPYTER_PORT = 22, 8888

# The patterns are plain enough to be JSON Schema's too (`deepbox schema`), so editors check them.
_PATTERNS = {
    "name": _BOX_NAME.pattern,
    "user_name": _USER_NAME.pattern,
    "shm_size": _SIZE.pattern,
    "python": f"^$|{_VERSION.pattern}",
    "cuda": f"^auto$|{_CUDA.pattern}",
    "host": "^$|^(ssh|slurm|unix|tcp)://",
    "workspace": "^/.",
    # host[:port]/namespace: a registry host (a dot, a port or "localhost" tells it from a Docker Hub user)
    "registry": r"^$|^([a-z0-9-]+(\.[a-z0-9-]+)*:[0-9]+|[a-z0-9-]+(\.[a-z0-9-]+)+|localhost)"
    r"(/[a-z0-9]+([._-][a-z0-9]+)*)+$",
}


def _pattern(name: str) -> dict[str, Any]:
    return {"json_schema_extra": {"pattern": _PATTERNS[name]}}


class _Section(BaseModel):
    # strict: TOML has types, so "2222" for a port or "yes" for a flag is a mistake to point at, not to guess.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        field_title_generator=lambda name, _: name,  # the key, in the schema
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        # A newline in a package name or URL would start a new Dockerfile instruction.
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and any(ord(char) < 32 or ord(char) == 127 for char in item):
                raise ValueError("must not contain newlines or other control characters")
        return value


class SshSettings(_Section):
    """[ssh]: how the IDE and `ssh deepbox-NAME` reach the box."""

    port: int = Field(default=0, ge=0, le=65535, description="The host port of the box's SSH; 0 picks a free one.")
    bind: str = Field(
        default="127.0.0.1", description='Where the SSH port listens; "0.0.0.0" publishes it to the network.'
    )
    key: str | None = Field(default=None, description="Your own private key; by default deepbox makes one per box.")


class UserSettings(_Section):
    """[user]: the box user; by default your own name, UID and GID."""

    name: str | None = Field(default=None, description="The box user's name (not root).", **_pattern("user_name"))
    uid: int | None = Field(default=None, ge=1, le=2**31 - 1, description="The box user's UID.")
    gid: int | None = Field(default=None, ge=0, le=2**31 - 1, description="The box user's GID.")
    sudo: bool = Field(
        default=False, description="Passwordless sudo for the box user (root in the box can write mounted folders)."
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None and (value == "root" or not _USER_NAME.match(value)):
            raise ValueError(
                "must be a lower-case Linux user name other than root (the box user is root only by default, "
                "on a root host whose project folder is root's)"
            )
        return value


class SlurmSettings(_Section):
    """[slurm]: what each box's job asks a Slurm cluster for (host = "slurm://user@login-node"); what is
    left out is the cluster's default."""

    partition: str = Field(default="", description='The partition (sbatch --partition), e.g. "gpu".')
    gres: str = Field(default="", description='Generic resources (sbatch --gres), e.g. "gpu:1" or "gpu:a100:2".')
    gpus: int = Field(default=0, ge=0, description="GPUs for the job (sbatch --gpus), on clusters that count them so.")
    time: str = Field(default="", description='The time limit (sbatch --time), e.g. "8:00:00" or "1-00:00:00".')
    account: str = Field(default="", description="The account to charge (sbatch --account).")
    qos: str = Field(default="", description="The quality of service (sbatch --qos).")
    constraint: str = Field(default="", description='Node features (sbatch --constraint), e.g. "a100".')
    cpus: int = Field(default=0, ge=0, description="CPUs for the box (sbatch --cpus-per-task).")
    mem: str = Field(default="", description='Memory for the box (sbatch --mem), e.g. "32G".')

    @field_validator("partition", "gres", "time", "account", "qos", "constraint", "mem")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if any(char.isspace() for char in value):
            raise ValueError("must be one word, as sbatch takes it")
        return value


class BuildSettings(_Section):
    """[build]: where the image build gets its packages and whom it trusts."""

    ca_certificates: list[str] = Field(
        default=[], description="Extra CA files to trust in the build and the box (TLS-intercepting proxies)."
    )
    index_url: str | None = Field(default=None, description="The package index instead of PyPI.")
    extra_index_urls: list[str] = Field(default=[], description="More package indexes.")
    find_links: list[str] = Field(
        default=[], description="URLs or local wheel folders (local folders are copied into the image)."
    )
    network: str | None = Field(default=None, description='The Docker network used while building, e.g. "host".')


class SecretFromEnv(_Section):
    """A secret taken from deepbox's own environment when `deepbox up` runs: `HF_TOKEN = { env = "HF_TOKEN" }`."""

    env: str = Field(
        description="The variable on this machine that holds the value.",
        json_schema_extra={"pattern": _ENV_NAME.pattern},
    )


class SecretsSettings(_Section):
    """[secrets]: values for the box's ssh sessions and processes that no image, snapshot, log or
    `docker inspect` shows. deepbox.toml says only where each value comes from."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, SecretFromEnv] = Field(init=False)  # NAME = { env = "VAR" }

    env_file: str | None = Field(
        default=None,
        description="A file of NAME=value lines on this machine, outside the project (or git-ignored), e.g. "
        '"~/.config/deepbox/NAME.env".',
    )

    @model_validator(mode="before")
    @classmethod
    def _sources_only(cls, data: Any) -> Any:
        # Said here, before pydantic's own checks, so a value written in by mistake is never echoed back.
        if not isinstance(data, dict):
            return data
        for name, source in data.items():
            if name == "env_file":
                continue
            if not _ENV_NAME.match(name):
                raise ValueError(
                    f"has {name!r}, which is not an environment variable name (letters, digits and _, "
                    "not starting with a digit)"
                )
            if not isinstance(source, dict) and difflib.get_close_matches(name, ["env_file"], cutoff=0.8):
                raise ValueError(f"has {name!r}; did you mean 'env_file'?")
            if not isinstance(source, dict):
                raise ValueError(
                    f"holds a value for {name}, but secret values never go in this file: write "
                    f'{name} = {{ env = "{name}" }} to take it from your environment at `deepbox up`, or put it '
                    "in the file that env_file names"
                )
            variable = source.get("env")
            if set(source) != {"env"} or not isinstance(variable, str) or not _ENV_NAME.match(variable):
                raise ValueError(
                    f'has {name} without its source; write {name} = {{ env = "VARIABLE" }}, VARIABLE being '
                    "the variable on this machine that holds the value"
                )
        return data


class RunSettings(_Section):
    """A run/debug configuration for the IDEs: `[run.train] script = "train.py"`."""

    script: str = Field(description="The script to run, relative to the project folder.")
    args: str = Field(default="", description="Its arguments, as a shell would split them.")
    env: dict[str, str] = Field(default={}, description="Environment variables for this run.")
    workdir: str = Field(
        default=".",
        description="The working folder: relative to the project folder, or a folder in the box under the workspace "
        'or a mount ("/data").',
    )


class _BoxSettings(_Section):
    """The settings of one box: the file's top level, and each [box.NAME] table."""

    name: str | None = Field(
        default=None,
        description="The box name: the container is deepbox-NAME, the SSH alias too. Default: the folder's name.",
        **_pattern("name"),
    )
    base: str = Field(default=DEFAULT_BASE, description="The base image: any Debian or Ubuntu based image.")
    frameworks: list[str] = Field(
        default=list(DEFAULT_FRAMEWORKS),
        description='Frameworks from the catalog (`deepbox catalog`), pinned like "pytorch==2.5.*", or presets.',
    )
    pip: list[str] = Field(default=[], description="The project's own Python packages, installed last.")
    apt: list[str] = Field(default=[], description="Debian/Ubuntu packages for the box.")
    workspace: str = Field(
        default=DEFAULT_WORKSPACE,
        description="Where the project folder is mounted in the box.",
        **_pattern("workspace"),
    )
    mounts: list[str] = Field(
        default=[], description='Extra folders, "HOST:BOX" or "HOST:BOX:ro", for example "~/data:/data".'
    )
    shm_size: str = Field(
        default="2g",
        description='Shared memory for the box, in Docker\'s spelling: "2g", "2GB", "512m".',
        **_pattern("shm_size"),
    )
    env: dict[str, str] = Field(
        default={},
        description="Environment variables in the box, for SSH sessions too.",
        json_schema_extra={"propertyNames": {"pattern": _ENV_NAME.pattern}},
    )
    secrets: SecretsSettings = SecretsSettings()
    slurm: SlurmSettings = SlurmSettings()
    ssh: SshSettings = SshSettings()
    user: UserSettings = UserSettings()
    build: BuildSettings = BuildSettings()
    ide: list[Literal["pycharm", "vscode"]] = Field(default=[], description="IDE files written on every `up`.")
    run: dict[str, RunSettings] = Field(default={}, description="Run/debug configurations for the IDEs, by name.")
    jupyter: bool = Field(default=False, description="Run JupyterLab in the box (published on 127.0.0.1 only).")
    ports: list[int | str] = Field(
        default=[],
        description="Box ports to reach from this machine (TensorBoard, a model server): 6006 on the same host port "
        'when free, else a free one; "8501:8501" on that host port.',
    )
    # The framework catalog's settings (see `deepbox catalog`).
    device: Literal["cpu", "cuda"] = Field(default="cpu", description='"cuda": each framework\'s CUDA build.')
    cuda: str = Field(
        default="auto",
        description='device = "cuda" only: "auto" (from the host\'s driver), a major ("12") or a version ("12.8").',
        **_pattern("cuda"),
    )
    python: str = Field(
        default="", description='The box\'s Python, e.g. "3.12"; "" is the base image\'s own.', **_pattern("python")
    )
    requirements: str = Field(
        default="auto",
        description='"auto" (requirements.txt or pyproject.toml dependencies), a path, or "off".',
    )
    framework_indexes: bool = Field(
        default=True, description="false: no vendor indexes (PyTorch's...), only the [build] sources."
    )
    gpus: str | int | list[str | int] = Field(
        default="auto",
        description='"auto" (all GPUs on a cuda box), "all", "none", a number of GPUs, or GPU indexes or UUIDs '
        "such as [0, 2].",
    )
    host: str = Field(
        default="",
        description='The engine: a server\'s ("ssh://user@server[:port]", reached with your ssh client), a Slurm '
        'cluster\'s ("slurm://user@login-node": a job per box, see [slurm]), a "unix://" socket or a "tcp://" '
        'address; "" leaves it to DOCKER_HOST and the Docker contexts.',
        **_pattern("host"),
    )
    context: str = Field(default="", description="A Docker context (`docker context ls`) whose engine to use.")
    remote_path: str = Field(
        default="~/deepbox/{box}", description="The project's folder on the server (`deepbox sync` fills it)."
    )
    registry: str = Field(
        default="",
        description='A registry to share box images through, "host[:port]/namespace": `deepbox push` puts the '
        "box image there, and `up` on a machine with the same settings and lock pulls it instead of building.",
        **_pattern("registry"),
    )
    dotfiles: str = Field(
        default="",
        description="Your dotfiles repository (a git URL or a local path), installed in the box's home on first "
        "`up`; `up --dotfiles` installs it again.",
    )

    @field_validator("python")
    @classmethod
    def _valid_version(cls, value: str) -> str:
        if value and not _VERSION.match(value):
            raise ValueError("must be a version such as '3.11'")
        return value

    @field_validator("cuda")
    @classmethod
    def _valid_cuda(cls, value: str) -> str:
        if value != "auto" and not _CUDA.match(value):
            raise ValueError('must be "auto", a CUDA major such as "12", or a version such as "12.8"')
        return value

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        if value and not value.startswith(("ssh://", "slurm://", "unix://", "tcp://")):
            raise ValueError(
                'must be "ssh://user@server", "slurm://user@login-node", a "unix://" socket or a "tcp://" address'
            )
        return value

    @field_validator("registry")
    @classmethod
    def _valid_registry(cls, value: str) -> str:
        if value and not re.match(_PATTERNS["registry"], value):
            raise ValueError(
                'must be "host[:port]/namespace" in lower case, such as "registry.example.com:5000/ml-team"'
            )
        return value

    @field_validator("name")
    @classmethod
    def _valid_box_name(cls, value: str | None) -> str | None:
        if value is not None and not _BOX_NAME.match(value):
            raise ValueError("must be 1-41 characters of a-z, 0-9 and '-', starting with a letter or digit")
        return value

    @field_validator("shm_size")
    @classmethod
    def _valid_size(cls, value: str) -> str:
        match = _SIZE.match(value)
        if not match:
            raise ValueError('must be a size such as "2g", "2GB" or "512m"')
        # One spelling per size ("2GB" and "2g" are the same box); the Docker SDK reads it.
        return match[1] + (match[2] or "").lower()

    @field_validator("gpus")
    @classmethod
    def _gpu_ids_as_text(cls, value: str | int | list[str | int]) -> str | int | list[str]:
        # Users write GPU indexes as numbers ([0, 2]); Docker takes device ids as text.
        if not isinstance(value, list):
            return value
        if any(isinstance(item, int) and item < 0 for item in value):
            raise ValueError("must list GPU indexes of 0 or more, as nvidia-smi numbers the GPUs")
        return [str(item) for item in value]

    @field_validator("workspace")
    @classmethod
    def _absolute_box_path(cls, value: str) -> str:
        if not value.startswith("/") or posixpath.normpath(value) == "/":
            raise ValueError("must be an absolute path inside the box other than /, such as /workspace")
        return posixpath.normpath(value)

    @field_validator("ports")
    @classmethod
    def _valid_ports(cls, value: list[int | str], info: ValidationInfo) -> list[int | str]:
        parse_ports(value, jupyter=bool(info.data.get("jupyter")))
        return value

    @field_validator("env")
    @classmethod
    def _valid_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(
                    f"has {name!r}, which is not an environment variable name (letters, digits and _, "
                    "not starting with a digit)"
                )
            if '"' in val or "\n" in val:
                raise ValueError(f"has double quotes or a newline in the value of {name}; remove them")
        return value


class BoxTable(_BoxSettings):
    """[box.NAME]: another box of the project, with the settings of the top level except those it sets
    itself; a table it sets ([box.NAME.env]) adds to the top level's, key by key."""

    name: str | None = Field(
        default=None,
        description="The box name: the container is deepbox-NAME, the SSH alias too. Default: the project's box "
        "name, '-' and the table's NAME.",
        **_pattern("name"),
    )


class BoxConfig(_BoxSettings):
    """deepbox.toml (or [tool.deepbox] in pyproject.toml): the project's box, and any more in [box.NAME]."""

    box: dict[str, BoxTable] = Field(
        default={},
        description="More boxes of the project, such as [box.cuda]: each is deepbox-PROJECT-NAME, takes the "
        "settings above and replaces those it sets; `--box NAME` acts on it.",
        json_schema_extra={"propertyNames": {"pattern": _BOX_NAME.pattern}},
    )

    @field_validator("box")
    @classmethod
    def _valid_box_names(cls, value: dict[str, BoxTable]) -> dict[str, BoxTable]:
        for name in value:
            if not _BOX_NAME.match(name):
                raise ValueError(
                    f"has [box.{name}], whose name is not 1-41 characters of a-z, 0-9 and '-' starting with a "
                    "letter or digit; rename it"
                )
        return value


@dataclass(frozen=True)
class Mount:
    host: Path
    box: str
    read_only: bool = False


@dataclass(frozen=True)
class BoxPort:
    """A box port published to (or forwarded from) this machine: `host` 0 takes the box port's own number
    when free, else a free one; any other `host` is that port, fixed."""

    box: int
    host: int = 0

    @property
    def written(self) -> str:
        """The entry as deepbox.toml writes it: 6006, or "8501:8501"."""
        return f'"{self.host}:{self.box}"' if self.host else str(self.box)


def parse_ports(entries: list[int | str], *, jupyter: bool = False) -> tuple[BoxPort, ...]:
    """`ports = [6006, "8501:8501"]` -> BoxPorts; a bad entry is a ValueError whose sentence follows
    "'ports' " in a config error."""
    parsed: list[BoxPort] = []
    for entry in entries:
        match = _PORT.match(entry) if isinstance(entry, str) else None
        if isinstance(entry, str) and match is None:
            raise ValueError(
                f'has "{entry}", which is neither a box port such as 6006 nor "HOST:BOX" such as "8501:8501"'
            )
        # (host, box); None for a host port deepbox picks
        host, box = (int(match[1]) if match[1] else None, int(match[2])) if match is not None else (None, int(entry))
        shown = f'"{entry}"' if isinstance(entry, str) else str(entry)
        if not all(1 <= number <= 65535 for number in (box, *([] if host is None else [host]))):
            raise ValueError(f"has {shown}, which is not a port: ports are 1 to 65535")
        port = BoxPort(box=box, host=host or 0)
        if port.box == BOX_SSH_PORT:
            raise ValueError(f"has {shown}: box port 22 is the box's SSH, which ssh.port publishes; remove it")
        if jupyter and port.box == BOX_JUPYTER_PORT:
            raise ValueError(
                f"has {shown}: box port 8888 is JupyterLab's, which jupyter = true publishes already "
                "(`deepbox jupyter` prints its URL); remove it"
            )
        if any(other.box == port.box for other in parsed):
            raise ValueError(f"lists box port {port.box} twice; keep one")
        if port.host and any(other.host == port.host for other in parsed):
            raise ValueError(f"puts two box ports on host port {port.host}; give each its own")
        parsed.append(port)
    return tuple(parsed)


@dataclass(frozen=True)
class BoxUser:
    name: str
    uid: int
    gid: int

    @property
    def home(self) -> str:
        return "/root" if self.uid == 0 else f"/home/{self.name}"


@dataclass(frozen=True)
class RunConfig:
    name: str
    script: str  # relative to the project folder
    args: str
    env: tuple[tuple[str, str], ...]
    workdir: str  # relative to the project folder, or a box path under the workspace or a mount


@dataclass(frozen=True)
class Spec:
    """Everything needed to build and run one box, resolved against the project and host."""

    project: Path
    source: Path | None  # the file the config came from, None when defaults were used
    name: str
    base: str
    frameworks: tuple[str, ...]
    pip: tuple[str, ...]
    apt: tuple[str, ...]
    workspace: str
    mounts: tuple[Mount, ...]
    shm_size: str
    env: tuple[tuple[str, str], ...]
    ssh_port: int
    ssh_bind: str
    ssh_key: Path | None
    user: BoxUser
    ca_certificates: tuple[Path, ...]
    index_url: str | None
    extra_index_urls: tuple[str, ...]
    find_links: tuple[str, ...]
    build_network: str | None
    ide: tuple[str, ...] = ()
    run: tuple[RunConfig, ...] = ()
    jupyter: bool = False
    ports: tuple[BoxPort, ...] = ()  # extra box ports reached from this machine
    device: str = "cpu"
    cuda: str | None = None
    python: str | None = None
    requirements: str = "auto"
    framework_indexes: bool = True
    gpus: GpuRequest = GpuRequest()  # noqa: RUF009 - frozen, so one shared default is safe
    host: str = ""  # "ssh://..." for a box on a server's engine
    server_user: str = ""  # the server account the box belongs to (remote boxes only)
    remote_path: str = ""  # the project's folder on the server (remote boxes only)
    server_home: str = ""  # the server user's home (remote boxes only)
    user_configured: bool = False  # [user] was set, so no engine may choose another box user
    user_namespace: str = ""  # "keep-id" on rootless Podman: the host user keeps its UID in the box
    sudo: bool = False  # [user] sudo: passwordless sudo for the box user
    registry: str = ""  # "host[:port]/namespace" that `push` and `up` share box images through
    dotfiles: str = ""  # the dotfiles repository as written: a git URL or a path on this machine
    # [secrets]: where the values come from (read at `up`, never kept here): a file, and NAME -> variable.
    secrets_file: Path | None = None
    secrets_from_env: tuple[tuple[str, str], ...] = ()
    box: str = ""  # the [box.NAME] table this box comes from; "" for the project's box, the top level
    slurm: JobRequest = JobRequest()  # noqa: RUF009 - frozen; [slurm], for a box on a Slurm cluster

    @property
    def lock_file(self) -> str:
        """The box's lock in the project folder: deepbox.lock, or deepbox.NAME.lock for [box.NAME]."""
        return f"deepbox.{self.box}.lock" if self.box else "deepbox.lock"

    @property
    def framework_names(self) -> tuple[str, ...]:
        """The frameworks to install: the configured ones, plus JupyterLab when the box runs it."""
        return (*self.frameworks, "jupyterlab") if self.jupyter else self.frameworks

    @property
    def synced_copy(self) -> bool:
        """The box mounts a copy of the project (on a server, filled by `deepbox sync`), not the folder itself."""
        return bool(self.remote_path)

    def project_path(self, raw: str) -> Path:
        """A path from the settings on this machine: '~' expanded, relative ones in the project folder."""
        return _host_path(raw, self.project)

    @property
    def alias(self) -> str:
        return f"deepbox-{self.name}"

    @property
    def engine_name(self) -> str:
        """The box's name on the engine. On a shared server each user has their own namespace."""
        return f"{self.server_user}-{self.name}" if self.server_user else self.name

    @property
    def container_name(self) -> str:
        return f"deepbox-{self.engine_name}"


def sanitize_box_name(folder_name: str) -> str:
    """A folder name turned into a box name: lower case, a-z0-9 and single dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", folder_name.lower()).strip("-")[:41].strip("-")
    return name or "box"


def host_user(project: Path) -> BoxUser:
    """The user the box mirrors, so files it writes to mounted folders keep their owner.

    When deepbox runs as root, the box user takes the UID/GID of the project folder's owner; when
    root owns that too (a rented GPU machine used as root), the box user is root, so the box can
    write the project and the mounts root made, and their files stay root's. Where the host has no
    UIDs (Windows), the box user has the first UID a Linux distribution gives its users.
    """
    ids = hostos.user_ids()
    if ids is None:
        return BoxUser(_box_user_name(hostos.account_name()), *NAMED_USER_FALLBACK)
    uid, gid = ids
    if uid == 0:
        owner = project.stat()
        if owner.st_uid == 0:
            return BoxUser(*ROOT_USER)
        uid, gid = owner.st_uid, owner.st_gid
    return BoxUser(_box_user_name(hostos.account_name(uid)), uid, gid)


def _box_user_name(account: str | None) -> str:
    """The host account's name when it is a valid Linux user name other than root, else "dev"."""
    name = (account or "").lower()
    return name if _USER_NAME.match(name) and name != "root" else "dev"


def find_config_file(project: Path) -> Path | None:
    """deepbox.toml wins; otherwise pyproject.toml when it has a [tool.deepbox] table."""
    candidate = project / CONFIG_FILE
    if candidate.is_file():
        return candidate
    pyproject = project / "pyproject.toml"
    if pyproject.is_file() and "tool" in _read_toml(pyproject) and "deepbox" in _read_toml(pyproject)["tool"]:
        return pyproject
    return None


def find_project(start: Path) -> Path:
    """The project a command run in `start` acts on: the nearest folder, `start` first, that holds
    deepbox.toml or a pyproject.toml with [tool.deepbox], found walking up as git finds its repository.

    The walk ends at the filesystem root and never reaches the user's home from below it (a stray
    ~/deepbox.toml must not make all of home one box). With no config found, `start` is the project.
    """
    start = start.resolve()
    folders = [start, *start.parents]
    home = _home()
    if home in folders:
        folders = folders[: max(folders.index(home), 1)]
    return next((folder for folder in folders if find_config_file(folder)), start)


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except (RuntimeError, KeyError):  # no HOME and no passwd entry: nothing to stop at
        return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}. Fix the syntax at that line and column.") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from exc
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from exc


def _raw_config(path: Path) -> dict[str, Any]:
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("deepbox", {})
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [tool.deepbox] must be a table.")
    return data


# Config errors: pydantic's findings -> one sentence each, naming the key as the user wrote it -------

Loc = tuple[int | str, ...]

# What a setting that takes several kinds of value takes, said once (pydantic reports each kind).
_FORMS = {"gpus": '"auto", "all", "none", a number of GPUs, or a list of GPU indexes or UUIDs such as [0, 2]'}
_QUOTED = '"..."'  # a value to fill in, in a fix
_KINDS = {
    "string_type": "text in quotes",
    "int_type": "a whole number",
    "list_type": "a list",
    "bool_type": "true or false, without quotes",
}


def _walk(loc: Loc) -> tuple[Loc, bool, Any]:
    """The key path as the user wrote it, without the names pydantic gives the members of a union
    ('gpus.str', 'gpus.list[union[str,int]]'); whether the value there matched none of them; and the
    type at the path's end."""
    visible: list[int | str] = []
    annotation: Any = BoxConfig
    no_member = False
    for part in loc:
        origin = get_origin(annotation)
        if origin in (Union, UnionType):
            # The member pydantic tried, by its name's start: 'list[...]', 'str', 'int'.
            wanted = {"list": list, "dict": dict}.get(str(part).split("[")[0])
            annotation = next((arg for arg in get_args(annotation) if get_origin(arg) is wanted), None)
            no_member = True
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            annotation = field.annotation if field else None
        elif origin in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            break  # a value's own type: what follows names pydantic's validators, not keys
        visible.append(part)
        no_member = False
    return tuple(visible), no_member, annotation


def _key(path: Path, loc: Loc) -> str:
    """'ssh.port', 'env."MY VAR"', 'frameworks[0]'; under tool.deepbox. in pyproject.toml."""
    text = "tool.deepbox" if path.name == "pyproject.toml" else ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + (part if _BARE_KEY.match(part) else json.dumps(part))
    return text


def _line(loc: Loc, value: str) -> str:
    """`key = value` for a key (the last part of loc), just the value for an item of a list."""
    name = loc[-1] if loc else ""
    if isinstance(name, int):
        return value
    return f"{name if _BARE_KEY.match(name) else json.dumps(name)} = {value}"


def _problem(path: Path, loc: Loc, error: Any) -> str:
    """What is wrong with one value, and the fix: "'ssh.port' must be a whole number; write ..."."""
    kind, value, where = error["type"], error["input"], f"'{_key(path, loc)}'"
    if kind == "string_type" and isinstance(value, bool | int):
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return f"{where} must be text; quote it: {_line(loc, json.dumps(text))}"
    if kind == "string_type" and isinstance(value, float):
        # Not the number back: TOML reads 3.10 as 3.1, and "3.1" is another Python.
        return f"{where} must be text; put the value in quotes, as written: {_line(loc, _QUOTED)}"
    if kind == "int_type" and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return f"{where} must be a whole number; write it without quotes: {_line(loc, value.strip())}"
    if kind == "int_type" and isinstance(value, float) and value.is_integer():
        return f"{where} must be a whole number; write it without the decimal point: {_line(loc, str(int(value)))}"
    if kind == "bool_type" and isinstance(value, str) and value.lower() in ("true", "false"):
        return f"{where} must be true or false; write it without quotes: {_line(loc, value.lower())}"
    if kind == "list_type" and isinstance(value, str):
        return f"{where} must be a list; write {_line(loc, '[' + json.dumps(value) + ']')}"
    if kind == "list_type" and isinstance(value, int) and not isinstance(value, bool):
        return f"{where} must be a list; write {_line(loc, f'[{value}]')}"
    if kind in ("dict_type", "model_type"):
        return f"{where} must be a table; put its keys on the lines after [{_key(path, loc)}]"
    if kind == "missing":
        table = _key(path, loc[:-1])
        placeholder = _QUOTED if _walk(loc)[2] is str else "..."
        return f"{where} is missing; add {_line(loc, placeholder)}" + (f" under [{table}]" if table else "")
    if kind == "literal_error":
        return f"{where} must be " + str(error["ctx"]["expected"]).replace("'", '"')
    if kind in _KINDS:
        return f"{where} must be {_KINDS[kind]}"
    limits = {"greater_than_equal": "{ge} or more", "less_than_equal": "{le} or less"}
    if kind in limits:
        return f"{where} must be " + limits[kind].format(**error["ctx"])
    return f"{where} " + error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")


def _unknown_key(path: Path, loc: Loc, table: Any) -> str:
    known = list(table.model_fields) if isinstance(table, type) and issubclass(table, BaseModel) else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
    return f"Unknown key '{_key(path, loc)}'{hint}"


def _describe(path: Path, exc: ValidationError, within: Loc = ()) -> str:
    """Every problem pydantic found, one sentence each, after the file's name; `within` is where the
    validated table sits in the file (a [box.NAME] table validated with the top level under it)."""
    found: dict[Loc, list[Any]] = {}
    no_member: set[Loc] = set()
    for error in exc.errors():
        loc, matched_none, _ = _walk(within + tuple(error["loc"]))
        found.setdefault(loc, []).append(error)
        if matched_none:
            no_member.add(loc)
    sentences = []
    # Unknown keys first: a misspelt key is often why a required one is missing.
    for loc, errors in sorted(found.items(), key=lambda item: item[1][0]["type"] != "extra_forbidden"):
        if loc in no_member and any(len(other) > len(loc) and other[: len(loc)] == loc for other in found):
            continue  # a list with a bad item: the item's sentence says what is wrong
        if errors[0]["type"] == "extra_forbidden":
            sentences.append(_unknown_key(path, loc, _walk(loc[:-1])[2]))
        elif loc in no_member:
            kinds = " or ".join(dict.fromkeys(_KINDS[error["type"]] for error in errors if error["type"] in _KINDS))
            forms = _FORMS.get(".".join(map(str, loc))) or kinds
            sentences.append(f"'{_key(path, loc)}' must be {forms}")
        else:
            sentences.append(_problem(path, loc, errors[0]))
    return f"{path}: " + " ".join(s if s.endswith(("?", ".")) else s + "." for s in sentences)


def load_config(project: Path, box: str = "") -> tuple[BoxConfig, Path | None]:
    """The settings of the project's box, or with `box` those of its [box.NAME] table over the top level."""
    source = find_config_file(project)
    raw = _raw_config(source) if source is not None else {}
    try:
        config = BoxConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(source or project / CONFIG_FILE, exc)) from exc
    names = box_names(config, project, source)
    if not box:
        return config, source
    if box not in config.box:
        raise ConfigError(_no_such_box(box, config, project, source))
    settings = merge_box(raw, raw["box"][box])
    # Not inherited: the box's own name, and the project's copy on a server, which its boxes share.
    settings["name"] = names[box]
    remote_path = settings.get("remote_path", BoxConfig.model_fields["remote_path"].default)
    settings["remote_path"] = remote_path.replace("{box}", names[DEFAULT_BOX])
    try:
        return BoxConfig.model_validate(settings), source
    except ValidationError as exc:  # settings fine apart that clash together, such as ports and jupyter
        raise ConfigError(_describe(source or project / CONFIG_FILE, exc, ("box", box))) from exc


# Several boxes per project: [box.NAME] tables ------------------------------------------------------

DEFAULT_BOX = ""  # the project's own box, the file's top level: no --box


def merge_box(top: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    """The settings of a [box.NAME] table: the top level's, each key the table sets replacing them; a
    table in both ([env], [ssh], [run]...) merges key by key, one level deep."""
    merged = {key: value for key, value in top.items() if key != "box"}
    for key, value in table.items():
        below = merged.get(key)
        merged[key] = {**below, **value} if isinstance(value, dict) and isinstance(below, dict) else value
    return merged


def box_names(config: BoxConfig, project: Path, source: Path | None = None) -> dict[str, str]:
    """Each box's name by table: DEFAULT_BOX -> the project's box, NAME -> `name` in [box.NAME] or
    '<the project's box>-NAME'. Two boxes of one name, or a name too long, are a ConfigError."""
    default = config.name or sanitize_box_name(project.resolve().name)
    names = {DEFAULT_BOX: default}
    where = source or project / CONFIG_FILE
    for table, settings in config.box.items():
        name = settings.name or f"{default}-{table}"
        if not _BOX_NAME.match(name):
            raise ConfigError(
                f"{where}: [box.{table}] would be box '{name}', longer than 41 characters; set a shorter "
                f"name in [box.{table}]."
            )
        clash = next((other for other, taken in names.items() if taken == name), None)
        if clash is not None:
            first = "the top level" if clash == DEFAULT_BOX else f"[box.{clash}]"
            raise ConfigError(
                f"{where}: [box.{table}] and {first} both name box '{name}'; give [box.{table}] another name."
            )
        names[table] = name
    return names


def _no_such_box(box: str, config: BoxConfig, project: Path, source: Path | None) -> str:
    """The sentence for --box NAME (or DEEPBOX_BOX) naming a box the project does not define."""
    if not config.box:
        where = source or f"{project} (which has no {CONFIG_FILE})"
        return (
            f"This project has no box '{box}': {where} defines no [box.NAME] tables; drop --box (and "
            f"DEEPBOX_BOX) for the project's box, or add [box.{box}] to {source or CONFIG_FILE}."
        )
    tables = sorted(config.box)
    listed = tables[0] if len(tables) == 1 else ", ".join(tables[:-1]) + " and " + tables[-1]
    return (
        f"This project has no box '{box}': {source} defines {listed}; pass one of them to --box, or no "
        "--box for the project's box."
    )


def _host_path(raw: str, project: Path) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (project / path)


def _server_path(raw: str, base: str, home: str) -> str:
    """A path on the server: '~' is the server user's home, relative paths are relative to base."""
    if raw == "~" or raw.startswith("~/"):
        raw = home + raw[1:]
    return posixpath.normpath(raw if raw.startswith("/") else posixpath.join(base, raw))


def _on_server(mount: Mount, raw: str, remote_path: str, home: str) -> Mount:
    """The same mount for a box on a server: its host side is a server path."""
    host_side = raw.rsplit(":", 2)[0] if raw.endswith((":ro", ":rw")) else raw.rsplit(":", 1)[0]
    return Mount(Path(_server_path(host_side, remote_path, home)), mount.box, mount.read_only)


def _inside_project(value: str) -> str | None:
    """A path relative to the project folder, normalised with '/' ('.' for the folder itself); None when
    it leaves the folder (absolute, a drive, '..')."""
    normal = posixpath.normpath(value.replace("\\", "/"))
    if normal.startswith(("/", "../")) or normal == ".." or re.match(r"^[A-Za-z]:", normal):
        return None
    return normal


def project_relative(value: str, what: str, source: Path | None) -> str:
    """A path from the config that must stay inside the project folder, normalised with '/' ('.' for the
    folder itself); escapes are a ConfigError."""
    normal = _inside_project(value)
    if normal is None:
        raise ConfigError(
            f"{source or CONFIG_FILE}: {what} {value!r} must be a path inside the project folder, relative to it."
        )
    return normal


@dataclass(frozen=True)
class BoxFolder:
    """A folder the box has, named in the settings: its path in the box and, when it is in the project
    folder, its path relative to that folder (which IDEs write through their project-folder macro)."""

    box: str
    in_project: str | None  # '.' for the project folder itself; None under another mount


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def box_folder(value: str, what: str, spec: Spec) -> BoxFolder:
    """A folder from the config that the box must have: a relative path is in the project folder, an
    absolute one a box path under the workspace or a mount's box path; anything else is a ConfigError."""
    relative = _inside_project(value)
    if relative is not None:
        return BoxFolder(posixpath.normpath(posixpath.join(spec.workspace, relative)), relative)
    path = posixpath.normpath(value)
    if path.startswith("/") and _under(path, spec.workspace):
        return BoxFolder(path, posixpath.relpath(path, spec.workspace))
    if path.startswith("/") and any(_under(path, mount.box) for mount in spec.mounts):
        return BoxFolder(path, None)
    mounted = [spec.workspace, *(mount.box for mount in spec.mounts if mount.box != spec.workspace)]
    listed = mounted[0] if len(mounted) == 1 else ", ".join(mounted[:-1]) + " or " + mounted[-1]
    raise ConfigError(
        f"{spec.source or CONFIG_FILE}: {what} {value!r} is not in a folder mounted in the box; use a path "
        f"relative to the project folder, or a box path under {listed}."
    )


def parse_mount(raw: str, project: Path, source: Path | None) -> Mount:
    """'HOST:BOX' or 'HOST:BOX:ro', as docker -v writes it; relative host paths are project-relative."""
    parts = raw.rsplit(":", 2) if raw.endswith((":ro", ":rw")) else raw.rsplit(":", 1)
    where = f"{source or CONFIG_FILE}: mounts entry {raw!r}"
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError(f"{where} must be 'HOST:BOX' or 'HOST:BOX:ro', for example '~/data:/data'.")
    *host_and_box, mode = raw.rsplit(":", 2)
    if len(parts) == 2 and len(host_and_box) == 2 and host_and_box[1].startswith("/") and "/" not in mode:
        # HOST:/BOX:MODE with a mode other than ro and rw (Docker's z, cached, or a typo such as rx).
        raise ConfigError(
            f"{where}: the mode {mode!r} is not one deepbox takes; end it with ':ro' (read-only) or ':rw', or drop it."
        )
    box = posixpath.normpath(parts[1])
    if not box.startswith("/") or box == "/":
        raise ConfigError(f"{where}: the box path must be absolute and not '/', for example '/data'.")
    return Mount(_host_path(parts[0], project).resolve(), box, read_only=len(parts) == 3 and parts[2] == "ro")


def resolve(
    config: BoxConfig,
    project: Path,
    source: Path | None,
    server: Account | None = None,
    host: str = "",
    box: str = DEFAULT_BOX,
) -> Spec:
    """Config -> Spec. For a box on a server, `server` is the account there (user, UID, home) and `host`
    the server's ssh URL; without them the box is on this machine's engine. `box` is the [box.NAME]
    table `config` was read for (load_config)."""
    project = project.resolve()
    defaults = BoxUser(server.name, server.uid, server.gid) if server else host_user(project)
    if defaults.uid == 0 and config.user.name:
        # A named user on a root host (or a server account that is root): not root's UID.
        defaults = BoxUser(config.user.name, *NAMED_USER_FALLBACK)
    user = BoxUser(
        config.user.name or defaults.name,
        config.user.uid or defaults.uid,
        config.user.gid if config.user.gid is not None else defaults.gid,
    )
    name = config.name or sanitize_box_name(project.name)
    remote_path = ""
    if server is None:
        mounts = (Mount(project, config.workspace), *(parse_mount(raw, project, source) for raw in config.mounts))
    else:
        remote_path = _server_path(config.remote_path.replace("{box}", name), server.home, server.home)
        mounts = (
            Mount(Path(remote_path), config.workspace),
            *(_on_server(parse_mount(raw, project, source), raw, remote_path, server.home) for raw in config.mounts),
        )
    seen: set[str] = set()
    for mount in mounts:
        if mount.box in seen:
            raise ConfigError(f"{source}: two mounts use the box path {mount.box}; give each its own path.")
        seen.add(mount.box)
    key = _host_path(config.ssh.key, project) if config.ssh.key else None
    ports = parse_ports(config.ports, jupyter=config.jupyter)
    clash = next((port for port in ports if config.ssh.port and port.host == config.ssh.port), None)
    if clash is not None:
        raise ConfigError(
            f"{source}: 'ports' puts box port {clash.box} on host port {clash.host}, which ssh.port = "
            f"{config.ssh.port} takes for SSH; give one of them another port."
        )
    try:
        gpus = parse_request(config.gpus, config.device)
    except ConfigError as exc:
        raise ConfigError(f"{source or 'deepbox.toml'}: {exc.message}") from exc
    return Spec(
        project=project,
        source=source,
        name=name,
        box=box,
        base=config.base,
        frameworks=tuple(config.frameworks),
        pip=tuple(config.pip),
        apt=tuple(config.apt),
        workspace=config.workspace,
        mounts=mounts,
        shm_size=config.shm_size,
        env=tuple(sorted(config.env.items())),
        ssh_port=config.ssh.port,
        ssh_bind=config.ssh.bind,
        ssh_key=key,
        user=user,
        ca_certificates=tuple(_host_path(raw, project) for raw in config.build.ca_certificates),
        index_url=config.build.index_url or None,
        extra_index_urls=tuple(config.build.extra_index_urls),
        find_links=tuple(config.build.find_links),
        build_network=config.build.network or None,
        ide=tuple(dict.fromkeys(config.ide)),
        run=tuple(
            RunConfig(name, run.script, run.args, tuple(sorted(run.env.items())), run.workdir)
            for name, run in sorted(config.run.items())
        ),
        jupyter=config.jupyter,
        ports=ports,
        device=config.device,
        cuda=config.cuda,
        python=config.python or None,
        requirements=config.requirements,
        framework_indexes=config.framework_indexes,
        gpus=gpus,
        host=host if server else "",
        server_user=server.name if server else "",
        user_configured=bool(config.user.name or config.user.uid or config.user.gid is not None),
        remote_path=remote_path,
        server_home=server.home if server else "",
        sudo=config.user.sudo,
        dotfiles=config.dotfiles,
        registry=config.registry,
        secrets_file=_host_path(config.secrets.env_file, project) if config.secrets.env_file else None,
        slurm=JobRequest(**config.slurm.model_dump()),
        secrets_from_env=tuple(
            sorted((name, source.env) for name, source in (config.secrets.model_extra or {}).items())
        ),
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of deepbox.toml (`deepbox schema`), for editors that check TOML against one."""
    schema = BoxConfig.model_json_schema()
    for setting in schema["$defs"]["BoxTable"]["properties"].values():
        setting.pop("default", None)  # a [box.NAME] table's default is the top level's value
    schema.update(
        title="deepbox.toml",
        description="The box of a project: deepbox.toml, or [tool.deepbox] in pyproject.toml.",
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def config_template(box_name: str) -> str:
    """The commented deepbox.toml that `deepbox init` writes; every setting at its default."""
    return resources.files("deepbox.assets").joinpath("deepbox.toml").read_text().replace("{name}", box_name)


def load_spec(project: Path, server: Account | None = None, host: str = "", box: str = DEFAULT_BOX) -> Spec:
    """The spec of the project's box (or its box `box`), read and resolved without touching anything
    outside this machine (the CLI finds the site first: see site.py)."""
    config, source = load_config(project, box)
    return resolve(config, project, source, server, host, box)
