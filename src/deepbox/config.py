"""The box spec: deepbox.toml (or [tool.deepbox] in pyproject.toml) -> a validated, resolved Spec.

Nothing here talks to Docker; everything downstream works from the frozen Spec.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import pwd
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

from deepbox.errors import ConfigError
from deepbox.gpu import GpuRequest, parse_request

if TYPE_CHECKING:
    from deepbox.model import Account

CONFIG_FILE = "deepbox.toml"
DEFAULT_BASE = "debian:bookworm-slim"
DEFAULT_FRAMEWORKS = ("numpy", "scikit-learn")
DEFAULT_WORKSPACE = "/workspace"
ROOT_USER = ("root", 0, 0)
NAMED_USER_FALLBACK = (1000, 1000)  # a [user] name set on a root host, without a uid

_BOX_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SIZE = re.compile(r"^[0-9]+[bkmg]?$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")
_CUDA = re.compile(r"^[0-9]+(\.[0-9]+)?$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    bind: str = "127.0.0.1"
    key: str | None = None  # path to the user's own private key; default: a per-box key


class UserSettings(_Section):
    name: str | None = None
    uid: int | None = Field(default=None, ge=1, le=2**31 - 1)
    gid: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None and (value == "root" or not _USER_NAME.match(value)):
            raise ValueError(
                "must be a lower-case Linux user name other than root (the box user is root only by default, "
                "on a root host whose project folder is root's)"
            )
        return value


class BuildSettings(_Section):
    ca_certificates: list[str] = []
    index_url: str | None = None
    extra_index_urls: list[str] = []
    find_links: list[str] = []
    network: str | None = None


class RunSettings(_Section):
    """A run/debug configuration for the IDEs: `[run.train] script = "train.py"`."""

    script: str
    args: str = ""
    env: dict[str, str] = {}
    workdir: str = "."  # relative to the project folder


class BoxConfig(_Section):
    name: str | None = None
    base: str = DEFAULT_BASE
    frameworks: list[str] = list(DEFAULT_FRAMEWORKS)
    pip: list[str] = []
    apt: list[str] = []
    workspace: str = DEFAULT_WORKSPACE
    mounts: list[str] = []
    shm_size: str = "2g"
    env: dict[str, str] = {}
    ssh: SshSettings = SshSettings()
    user: UserSettings = UserSettings()
    build: BuildSettings = BuildSettings()
    ide: list[Literal["pycharm", "vscode"]] = []  # IDE files written on every `up`
    run: dict[str, RunSettings] = {}
    jupyter: bool = False
    # The framework catalog's settings (see `deepbox catalog`).
    device: Literal["cpu", "cuda"] = "cpu"
    cuda: str = "auto"  # device = "cuda" only: "auto" (from the host's driver), a major ("12") or "12.8"
    python: str = ""  # the box's Python; "" means the base image's own
    requirements: str = "auto"  # "auto" (requirements.txt or pyproject dependencies), a path, or "off"
    framework_indexes: bool = True  # false: no vendor indexes (PyTorch's CPU index...), only [build]'s
    # "auto" (all GPUs on a cuda box, none otherwise) | "all" | "none" | a count | ids like ["0", "2"]
    gpus: StrictStr | StrictInt | list[StrictStr] = "auto"
    # The engine: a server's, reached with your ssh client ("ssh://user@server[:port]"), or a local
    # socket ("unix:///run/user/1000/podman/podman.sock"); "" leaves it to DOCKER_HOST and contexts.
    host: str = ""
    context: str = ""  # a Docker context (`docker context ls`) whose engine to use
    remote_path: str = "~/deepbox/{box}"  # the project's folder on the server (`deepbox sync` fills it)

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
        if value and not value.startswith(("ssh://", "unix://", "tcp://")):
            raise ValueError('must be "ssh://user@server", a "unix://" socket or a "tcp://" address')
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
        if not _SIZE.match(value):
            raise ValueError("must be a size such as '2g' or '512m'")
        return value.lower()

    @field_validator("workspace")
    @classmethod
    def _absolute_box_path(cls, value: str) -> str:
        if not value.startswith("/") or posixpath.normpath(value) == "/":
            raise ValueError("must be an absolute path inside the box other than /, such as /workspace")
        return posixpath.normpath(value)

    @field_validator("env")
    @classmethod
    def _valid_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, val in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if '"' in val or "\n" in val:
                raise ValueError(f"the value of {name} must not contain double quotes or newlines")
        return value


@dataclass(frozen=True)
class Mount:
    host: Path
    box: str
    read_only: bool = False


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
    workdir: str  # relative to the project folder


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
    write the project and the mounts root made, and their files stay root's.
    """
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        owner = project.stat()
        if owner.st_uid == 0:
            return BoxUser(*ROOT_USER)
        uid, gid = owner.st_uid, owner.st_gid
    try:
        name = pwd.getpwuid(uid).pw_name.lower()
    except KeyError:
        name = "dev"
    if not _USER_NAME.match(name) or name == "root":
        name = "dev"
    return BoxUser(name, uid, gid)


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


def _key_path(path: Path, loc: tuple[int | str, ...]) -> str:
    prefix = "tool.deepbox." if path.name == "pyproject.toml" else ""
    return prefix + ".".join(str(part) for part in loc)


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The valid key names of the table that holds the key at loc."""
    model: type[BaseModel] = BoxConfig
    for part in loc[:-1]:
        annotation = model.model_fields.get(str(part))
        sub = annotation.annotation if annotation else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return []
        model = sub
    return list(model.model_fields)


def _describe(path: Path, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = _key_path(path, loc)
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(_fields_at(loc))}"
            problems.append(f"unknown key '{where}'{hint}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"'{where}' {message}")
    return f"{path}: " + "; ".join(problems) + ("" if problems[-1].endswith(("?", ".")) else ".")


def load_config(project: Path) -> tuple[BoxConfig, Path | None]:
    source = find_config_file(project)
    if source is None:
        return BoxConfig(), None
    try:
        return BoxConfig.model_validate(_raw_config(source)), source
    except ValidationError as exc:
        raise ConfigError(_describe(source, exc)) from exc


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


def project_relative(value: str, what: str, source: Path | None) -> str:
    """A path from the config that must stay inside the project folder (the only folder the box mounts
    at the workspace), normalised with '/' ('.' for the folder itself); escapes are a ConfigError."""
    normal = posixpath.normpath(value.replace("\\", "/"))
    if normal.startswith(("/", "../")) or normal == ".." or re.match(r"^[A-Za-z]:", normal):
        raise ConfigError(
            f"{source or CONFIG_FILE}: {what} {value!r} must be a path inside the project folder "
            "(only that folder is mounted in the box)."
        )
    return normal


def parse_mount(raw: str, project: Path, source: Path | None) -> Mount:
    """'HOST:BOX' or 'HOST:BOX:ro', as docker -v writes it; relative host paths are project-relative."""
    parts = raw.rsplit(":", 2) if raw.endswith((":ro", ":rw")) else raw.rsplit(":", 1)
    where = f"{source or CONFIG_FILE}: mounts entry {raw!r}"
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ConfigError(f"{where} must be 'HOST:BOX' or 'HOST:BOX:ro', for example '~/data:/data'.")
    box = posixpath.normpath(parts[1])
    if not box.startswith("/") or box == "/":
        raise ConfigError(f"{where}: the box path must be absolute and not '/', for example '/data'.")
    return Mount(_host_path(parts[0], project).resolve(), box, read_only=len(parts) == 3 and parts[2] == "ro")


def resolve(
    config: BoxConfig, project: Path, source: Path | None, server: Account | None = None, host: str = ""
) -> Spec:
    """Config -> Spec. For a box on a server, `server` is the account there (user, UID, home) and `host`
    the server's ssh URL; without them the box is on this machine's engine."""
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
    try:
        gpus = parse_request(config.gpus, config.device)
    except ConfigError as exc:
        raise ConfigError(f"{source or 'deepbox.toml'}: {exc.message}") from exc
    return Spec(
        project=project,
        source=source,
        name=name,
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
    )


def config_template(box_name: str) -> str:
    """The commented deepbox.toml that `deepbox init` writes; every setting at its default."""
    return resources.files("deepbox.assets").joinpath("deepbox.toml").read_text().replace("{name}", box_name)


def load_spec(project: Path, server: Account | None = None, host: str = "") -> Spec:
    """The project's spec, read and resolved without touching anything outside this machine (the CLI
    finds the site first: see site.py)."""
    config, source = load_config(project)
    return resolve(config, project, source, server, host)
