"""Dotfiles: the user's dotfiles repository in the box's home, the way DevPod's and the Dev Containers
CLI's --dotfiles install it.

The repository is cloned here, with this machine's git, keys and network (the box may have none of
them), copied through the engine into ~/dotfiles in the box, and installed there as the box user: the
first install script it has (install.sh, bootstrap.sh, setup.sh... as the Dev Containers CLI looks for
them), else a link in ~ to each of its top-level dotfiles. The home is a volume, so this happens once:
a marker there records what was installed; `up --dotfiles` installs again.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepbox.config import Spec
from deepbox.engine import Container, Engine
from deepbox.errors import ConfigError, DeepboxError
from deepbox.fsutil import temporary_folder

if TYPE_CHECKING:
    from deepbox.box import Reporter
    from deepbox.site import Site

TARGET = "dotfiles"  # ~/dotfiles in the box, where DevPod and the Dev Containers CLI put it
MARKER = ".local/state/deepbox/dotfiles"  # in the box's home: the source installed there last
# The Dev Containers CLI's order; the first one present runs.
INSTALLERS = (
    "install.sh",
    "install",
    "bootstrap.sh",
    "bootstrap",
    "script/bootstrap",
    "setup.sh",
    "setup",
    "script/setup",
)
NOT_LINKED = {".git", ".github", ".gitmodules"}  # the repository's own files, not dotfiles for ~
CLONE_TIMEOUT = 600
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:")  # git@github.com:me/dotfiles


@dataclass(frozen=True)
class Plan:
    """What installing a fetched repository does in the box: run `installer`, or link `links` into ~."""

    installer: str = ""
    executable: bool = False
    links: tuple[str, ...] = ()

    def command(self, home: str) -> str:
        """The shell command that installs, run as the box user in ~/dotfiles."""
        if self.installer:
            script = shlex.quote(self.installer)
            return f"./{script}" if self.executable else f"sh {script}"
        lines = []
        for name in self.links:
            target = shlex.quote(f"{home}/{name}")
            # A real folder of that name stays (linking into it would hide the link); a file is replaced.
            lines.append(
                f"if [ -d {target} ] && [ ! -L {target} ]; then echo 'deepbox: kept the folder ~/{name}'; "
                f"else ln -sfn {shlex.quote(f'{home}/{TARGET}/{name}')} {target}; fi"
            )
        return "\n".join(lines) or "true"

    def describe(self) -> str:
        if self.installer:
            return f"ran {self.installer}"
        return f"linked {', '.join(self.links)} into ~" if self.links else "nothing to install (no dotfiles in it)"


def plan(folder: Path) -> Plan:
    """The first install script the repository has; without one, its top-level dotfiles to link."""
    for name in INSTALLERS:
        path = folder / name
        if path.is_file():
            return Plan(installer=name, executable=os.access(path, os.X_OK))
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name not in NOT_LINKED)
    return Plan(links=tuple(names))


def is_url(source: str) -> bool:
    """A git URL ("https://...", "ssh://...", "git@host:path") rather than a folder on this machine."""
    return "://" in source or bool(_SCP_LIKE.match(source))


def fetch(spec: Spec, into: Path) -> Path:
    """Clone the dotfiles repository into folder `into` with this machine's git; the clone's path."""
    source = spec.dotfiles
    where = str(spec.source or "deepbox.toml")
    if not is_url(source):
        folder = spec.project_path(source)
        if not (folder / ".git").exists():
            raise ConfigError(
                f"{where}: dotfiles = {source!r} is not a git repository ({folder} has no .git); name your dotfiles "
                "repository's folder or its URL."
            )
        source = str(folder)
    git = shutil.which("git")
    if git is None:
        raise DeepboxError(f"Fetching the dotfiles ({source}) needs git on this machine; install git.")
    clone = into / TARGET
    depth = ["--depth", "1"] if is_url(source) else []
    try:
        done = subprocess.run(
            [git, "clone", "--quiet", *depth, "--", source, str(clone)],
            capture_output=True,
            text=True,
            timeout=CLONE_TIMEOUT,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},  # a prompt for a password would hang `up`
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeepboxError(
            f"Cloning the dotfiles from {source} took over {CLONE_TIMEOUT} s; check the URL and your network, "
            "then run `deepbox up --dotfiles`."
        ) from exc
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1].removeprefix("fatal: ")
        raise DeepboxError(
            f"Cannot clone the dotfiles from {source} ({why.rstrip('.')}); fix dotfiles in {where}, then run "
            "`deepbox up --dotfiles`."
        )
    return clone


def archive(folder: Path) -> bytes:
    """The clone as a tar archive whose top folder is `dotfiles`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=TARGET)
    return buffer.getvalue()


def check_setting(spec: Spec, *, again: bool) -> None:
    """`up --dotfiles` needs the dotfiles setting; said before anything is built."""
    if again and not spec.dotfiles:
        raise DeepboxError(
            f"`deepbox up --dotfiles` installs the dotfiles setting, and {spec.source or 'deepbox.toml'} has "
            'none: set dotfiles = "URL or path of your dotfiles repository" there.'
        )


def ensure(spec: Spec, site: Site, reporter: Reporter, *, again: bool = False) -> str | None:
    """After `up`: install the dotfiles in the running box unless they are already there (`again`:
    install anyway). Returns what was done, or None when nothing was. A failing install script raises,
    with its output, and the box stays up."""
    check_setting(spec, again=again)
    if not spec.dotfiles:
        return None
    from deepbox import box

    with box.box_lock(spec.name, reporter):
        engine = site.engine()
        container = engine.container(spec.container_name)
        if container is None or container.status != "running":
            raise DeepboxError(f"Box '{spec.name}' is not running; start it with `deepbox up`.")
        done = install(spec, engine, container, reporter, again=again)
    if done is not None:
        reporter.step(f"Dotfiles installed: {done}")
    return done


def install(spec: Spec, engine: Engine, container: Container, reporter: Reporter, *, again: bool) -> str | None:
    """Install spec.dotfiles in the box, unless the marker says they are (and not `again`)."""
    home = spec.user.home
    _, installed = engine.exec(container, ["cat", f"{home}/{MARKER}"])
    if not again and installed.strip() == spec.dotfiles:
        return None
    code, _ = engine.exec(container, ["test", "-e", f"{home}/{MARKER}"])
    ours = code == 0
    code, _ = engine.exec(container, ["test", "-e", f"{home}/{TARGET}"])
    if code == 0 and not ours:
        raise DeepboxError(
            f"~/{TARGET} in box '{spec.name}' was not put there by deepbox, so the dotfiles cannot go there; "
            "move it away in the box, then run `deepbox up --dotfiles`."
        )
    reporter.step(f"Installing the dotfiles from {spec.dotfiles} into ~/{TARGET} in the box")
    with temporary_folder("deepbox-dotfiles-") as temporary:
        clone = fetch(spec, temporary)
        steps = plan(clone)
        content = archive(clone)
    user = spec.user
    _root(engine, container, f"rm -rf {shlex.quote(f'{home}/{TARGET}')}")
    engine.put_archive(container, home, content)
    _root(engine, container, f"chown -R {user.uid}:{user.gid} {shlex.quote(f'{home}/{TARGET}')}")
    environment = f"export HOME={shlex.quote(home)} USER={shlex.quote(user.name)}"
    try:
        code, output = engine.exec(
            container, ["sh", "-c", f"{environment} && cd ~/{TARGET} && {steps.command(home)}"], user=user.name
        )
    except TimeoutError as exc:  # the engine connection's read timeout: the script printed nothing for long
        raise DeepboxError(
            f"The dotfiles' {steps.installer} printed nothing for 2 minutes, so deepbox stopped waiting for it (it "
            f"may still run in box '{spec.name}'); make it print its progress, then run `deepbox up --dotfiles`."
        ) from exc
    # Recorded even when the script failed, so a plain `up` does not run it again until asked to.
    marker = shlex.quote(f"{home}/{MARKER}")
    engine.exec(
        container,
        ["sh", "-c", f"mkdir -p \"$(dirname {marker})\" && printf '%s\\n' {shlex.quote(spec.dotfiles)} >{marker}"],
        user=user.name,
    )
    if code != 0:
        tail = "\n".join(output.rstrip().splitlines()[-30:])
        raise DeepboxError(
            f"The dotfiles' {steps.installer or 'links'} exited with status {code} in box '{spec.name}' (its output "
            f"is above); the box is up: fix it in {spec.dotfiles}, then run `deepbox up --dotfiles`.",
            detail=tail,
        )
    return steps.describe()


def _root(engine: Engine, container: Container, command: str) -> None:
    code, output = engine.exec(container, ["sh", "-c", command])
    if code != 0:
        raise DeepboxError(f"Could not prepare ~/{TARGET} in the box ({output.strip() or f'exit {code}'}).")
