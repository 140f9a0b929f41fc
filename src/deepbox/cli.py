"""The command layer: parse, call the core, render. No Docker calls here.

Heavy modules (docker, pydantic, rich) are imported inside the commands so `deepbox --help` stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from deepbox import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from deepbox.config import BoxConfig, Spec
    from deepbox.engine import Location
    from deepbox.images import BoxImage
    from deepbox.model import BoxStatus, BuildContext, BuildEvent, UpResult
    from deepbox.site import Site


def _console(stderr: bool = True) -> Console:
    """A console that prints text as it is: paths, keys such as [user] uid and extras such as jax[cuda12]
    would be taken for markup; the few colours pass markup=True with the data in them escaped."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False)


class ConsoleReporter:
    """Progress for long operations, on stderr so that --json output on stdout stays clean. plain: a
    build reports one line a step instead of a live display (so it does when stderr is no terminal)."""

    def __init__(self, plain: bool = False) -> None:
        self._console: Console | None = None
        self.plain = plain or bool(os.environ.get("DEEPBOX_PLAIN"))

    @property
    def console(self) -> Console:
        # Made at the first message: importing rich takes ~30 ms, which `up` spends while the engine
        # starts the box (see box.up) rather than before.
        if self._console is None:
            self._console = _console()
        return self._console

    def step(self, message: str) -> None:
        # soft_wrap: a long path in a step (a build log's) is never broken inside
        self.console.print(f"[bold cyan]>[/] {_escape(message)}", markup=True, soft_wrap=True)

    def build_line(self, line: str) -> None:
        if line.startswith("Step "):
            self.console.print(f"  [bold]{_escape(line)}[/]", markup=True, soft_wrap=True)
        else:
            self.console.print(f"  [dim]{_escape(line)}[/]", markup=True, soft_wrap=True)

    def build_progress(self) -> contextlib.AbstractContextManager[Callable[[BuildEvent], None]]:
        from deepbox import progress

        if self.plain or not self.console.is_terminal:
            return contextlib.nullcontext(progress.plain(lambda line: self.console.print(f"  {line}", soft_wrap=True)))
        return progress.live(self.console)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _folder(ctx: click.Context) -> Path:
    """The folder the command was run in, or -C DIR."""
    return Path((ctx.obj or {}).get("project") or ".").resolve()


def _existing_folder(ctx: click.Context) -> Path:
    folder = _folder(ctx)
    if not folder.is_dir():
        from deepbox.errors import DeepboxError

        raise DeepboxError(f"The project folder {folder} does not exist; pass an existing folder to -C.")
    return folder


def _project(ctx: click.Context) -> Path:
    """The project: the nearest folder, from here (or -C DIR) up, with deepbox.toml or [tool.deepbox], as
    git finds its repository; with none above, the folder itself, with the defaults."""
    from deepbox.config import find_project

    folder = _folder(ctx)
    return find_project(folder) if folder.is_dir() else folder


def _site_at(ctx: click.Context, location: Location) -> Site:
    """The site at a location, closed (its engine connection, a server's ssh tunnel) when the command ends."""
    from deepbox.site import site_for

    site = site_for(location)
    ctx.call_on_close(site.close)
    return site


def _site(ctx: click.Context, config: BoxConfig | None) -> Site:
    """Where the box lives, from --host/--context, the config's host/context, DOCKER_HOST and the Docker
    contexts (engine.locate). Nothing is contacted yet."""
    from deepbox.engine import locate

    location = locate(
        ctx.obj.get("host") or "",
        ctx.obj.get("context") or "",
        config.host if config else "",
        config.context if config else "",
    )
    return _site_at(ctx, location)


def _chosen_box(ctx: click.Context) -> str:
    """The [box.NAME] table --box (or DEEPBOX_BOX) picks; "" for the project's box."""
    return str((ctx.obj or {}).get("box") or "")


def _config(ctx: click.Context) -> tuple[BoxConfig, Path | None]:
    from deepbox.config import load_config

    _existing_folder(ctx)
    return load_config(_project(ctx), _chosen_box(ctx))


def _spec(ctx: click.Context, *, bind: bool = False) -> tuple[Spec, Site]:
    """The project's spec where its box lives. A server's account is asked for here (one ssh call), never
    while reading the config; `bind` also fits the spec to the engine (rootless UID mapping)."""
    from deepbox.config import resolve

    config, source = _config(ctx)
    site = _site(ctx, config)
    spec = resolve(config, _project(ctx), source, site.account(), site.host, _chosen_box(ctx))
    site.select(spec.engine_name)  # on a Slurm cluster, the engine is this box's job's
    return (site.bind(spec) if bind else spec), site


def _local_spec(ctx: click.Context) -> Spec:
    """The spec without asking anyone (no engine, no server): enough for the alias and the lock check."""
    from deepbox.config import resolve

    config, source = _config(ctx)
    return resolve(config, _project(ctx), source, box=_chosen_box(ctx))


def _every_box_spec(ctx: click.Context) -> list[Spec]:
    """The project's box and each of its [box.NAME] boxes, as _local_spec reads them (`lock --check`)."""
    from deepbox.config import box_names, load_config, resolve

    _existing_folder(ctx)
    project = _project(ctx)
    config, source = load_config(project)
    specs = []
    for table in box_names(config, project, source):
        settings, source = load_config(project, table)
        specs.append(resolve(settings, project, source, box=table))
    return specs


def _rendered(ctx: click.Context) -> tuple[Spec, BuildContext]:
    """The project's build context as `up` would build it here, from the base image's facts and the lock
    when the engine has them; pulls and locks nothing (the Dockerfile says what it could not read)."""
    from deepbox import lock
    from deepbox.baseimage import check_reference, known_facts
    from deepbox.dockerfile import render

    spec, site = _spec(ctx)
    check_reference(spec.base, str(spec.source or "deepbox.toml"))
    facts = known_facts(site, spec.base)
    if facts is not None:
        spec = site.bind(spec)
    return spec, render(spec, facts=facts, lock=lock.current(spec, facts))


def _target(ctx: click.Context, name: str | None) -> tuple[str, Site]:
    """(the box's name on the engine, where it lives) for NAME or this project's box."""
    if name is not None and (ctx.obj or {}).get("box_typed"):
        raise click.UsageError("Name the box once: NAME (a box on the engine) or --box (one of the project's).")
    spec, site = _spec(ctx)
    if name is not None:
        spec = dataclasses.replace(spec, name=name)
        site.select(spec.engine_name)
    return spec.engine_name, site


def _box_spec(ctx: click.Context, name: str | None) -> tuple[Spec, Site]:
    """The spec of box NAME, read from the project folder it was made from (its label), or this project's;
    fitted to the engine."""
    if name is not None and (ctx.obj or {}).get("box_typed"):
        raise click.UsageError("Name the box once: NAME (a box on the engine) or --box (one of the project's).")
    spec, site = _spec(ctx)
    if name is not None and name != spec.name:
        from deepbox import box
        from deepbox.config import box_names, load_config, resolve
        from deepbox.errors import DeepboxError

        site.select(dataclasses.replace(spec, name=name).engine_name)
        project = box.project_of(dataclasses.replace(spec, name=name).engine_name, site)
        if not project.is_dir():
            raise DeepboxError(
                f"Box '{name}' was made from {project}, which is not a folder here; run the command on the "
                "machine that ran its `deepbox up`."
            )
        config, source = load_config(project)
        # The box may be one of that project's [box.NAME] tables: its settings are the table's.
        table = next((table for table, named in box_names(config, project, source).items() if named == name), "")
        if table:
            config, source = load_config(project, table)
        spec = resolve(config, project, source, site.account(), site.host, table)
    return site.bind(spec), site


def _status_site(ctx: click.Context) -> Site:
    """The engine `status` lists: a broken config in the current folder must not stop it."""
    from deepbox.config import load_config
    from deepbox.errors import ConfigError

    config = None
    with contextlib.suppress(ConfigError):
        config = load_config(_project(ctx), _chosen_box(ctx))[0]
    return _site(ctx, config)


def _complete_boxes(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Box names for the shell's TAB, from the engine the command would use. A TAB must be quick and
    quiet: a server's engine (an ssh round trip) is not asked, and an engine that does not answer offers
    nothing rather than an error."""
    from deepbox import box

    ctx.ensure_object(dict)  # the group's callback, which makes it, does not run for a TAB
    try:
        site = _status_site(ctx)
        if site.location.server:
            return []
        try:
            names = [row.box for row in box.status(site)]
        finally:
            site.close()
    except Exception:  # whatever went wrong, TAB completes nothing
        return []
    return [name for name in names if name.startswith(incomplete)]


def _complete_project_boxes(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """The [box.NAME] tables of the project here (or -C DIR) for the shell's TAB; a broken config offers none."""
    from deepbox.config import load_config

    ctx.ensure_object(dict)
    try:
        tables = load_config(_project(ctx))[0].box
    except Exception:  # whatever went wrong, TAB completes nothing
        return []
    return sorted(table for table in tables if table.startswith(incomplete))


def _complete_frameworks(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Catalog names and presets for the shell's TAB; in a list (`--frameworks pytorch,sci`) the last one."""
    from deepbox import catalog

    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + name for name in sorted([*catalog.FRAMEWORKS, *catalog.PRESETS]) if name.startswith(last)]


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option lands in ctx.obj wherever it was given: before the command or after it."""
    if value is not None and value is not False:
        ctx.ensure_object(dict)[str(param.name)] = value


def _global(*declarations: str, **settings: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(*declarations, expose_value=False, callback=_remember, **settings)


def _remember_box(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--box before the command or after it; DEEPBOX_BOX when neither is typed. Typed (not from the
    environment) it also names the box where a command's NAME could: the two do not go together."""
    if value is None:
        return
    typed = ctx.get_parameter_source(str(param.name)) is click.core.ParameterSource.COMMANDLINE
    obj = ctx.ensure_object(dict)
    if typed or not obj.get("box_typed"):
        obj.update(box=value, box_typed=typed)


# The global options are declared on the group and again on each command, as users type them
# (`deepbox up -C DIR --debug`); main() looks for --debug itself, before any command runs.
_project_opt = _global(
    "-C",
    "--project",
    type=click.Path(file_okay=False),
    help="Project folder [default: the nearest one up from here with deepbox.toml or [tool.deepbox]].",
)
_host_opt = _global(
    "--host",
    metavar="ssh://USER@SERVER",
    help="Use the engine of this server (or a unix:// socket); overrides `host` in the config and DOCKER_HOST.",
)
_context_opt = _global("--context", metavar="NAME", help="Use the engine of this Docker context.")
_box_opt = click.option(
    "--box",
    metavar="NAME",
    envvar="DEEPBOX_BOX",
    expose_value=False,
    callback=_remember_box,
    shell_complete=_complete_project_boxes,
    help="Act on the project's box NAME, a [box.NAME] table of its config [env: DEEPBOX_BOX; default: the "
    "project's own box].",
)
_debug_opt = _global("--debug", is_flag=True, help="Show tracebacks for errors.")
_plain_opt = _global(
    "--plain",
    is_flag=True,
    help="Show a build's progress as one line a step instead of a live display (as when stderr is no "
    "terminal) [env: DEEPBOX_PLAIN=1].",
)


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--host, --context and --debug after the command, as before it."""
    return _host_opt(_context_opt(_debug_opt(command)))


def project_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """-C DIR, --box and the engine options after the command, as before it."""
    return _project_opt(_box_opt(engine_options(command)))


def json_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The command's --json; `deepbox --json COMMAND` means the same."""

    def given_anywhere(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        return value or bool((ctx.obj or {}).get("json"))

    return click.option("--json", "as_json", is_flag=True, callback=given_anywhere, help=help_text)


def _wrote(path: Path, then: str = "") -> None:
    """The "Wrote PATH" line of every command that writes project files: on stdout, whole (never wrapped)."""
    click.echo(f"Wrote {path}.{then}" if then else f"Wrote {path}")


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deepbox")
@project_option
@_global("--json", is_flag=True, help="Print the result as JSON on stdout (commands that have --json).")
@_plain_opt
@click.pass_context
def cli(ctx: click.Context) -> None:
    """deepbox: a ready, hardened ML development box in Docker, reached over SSH from your IDE.

    \b
    Typical use, in a project folder (or any folder inside it):
      deepbox up           build or reuse the box, start it, check SSH and imports
      ssh deepbox-NAME     or PyCharm / VS Code / Gateway through the same alias
      deepbox status       list boxes
      deepbox ide pycharm  connect an IDE (or vscode, gateway)
      deepbox down         stop the box; nothing is lost
    """
    ctx.ensure_object(dict)
    if ctx.obj.get("json") and ctx.invoked_subcommand:
        command = cli.get_command(ctx, ctx.invoked_subcommand)
        if command is not None and "as_json" not in {param.name for param in command.params}:
            raise click.UsageError(f"`deepbox {ctx.invoked_subcommand}` has no JSON output; drop --json.")


@cli.command()
@click.option("--force", is_flag=True, help="Overwrite an existing deepbox.toml, or make a project inside another one.")
@_project_opt
@engine_options
@click.pass_context
def init(ctx: click.Context, force: bool) -> None:
    """Write a commented deepbox.toml showing every setting."""
    from deepbox.config import CONFIG_FILE, config_template, find_config_file, find_project, sanitize_box_name
    from deepbox.errors import DeepboxError

    folder = _existing_folder(ctx)  # init alone makes a project: the folder itself, never one above it
    target = folder / CONFIG_FILE
    project = find_project(folder)
    source = find_config_file(project)
    if source is not None and not force:
        if project != folder:
            raise DeepboxError(
                f"{folder} is inside the deepbox project configured by {source}, which every command here "
                f"uses; pass --force to make {folder} a project of its own."
            )
        if source != target:
            raise DeepboxError(
                f"{source} already configures this project in [tool.deepbox]; edit it there, or pass --force "
                f"to write {CONFIG_FILE}, which takes its place."
            )
        raise DeepboxError(f"{target} already exists; edit it, or pass --force to replace it.")
    from deepbox.fsutil import atomic_write

    atomic_write(target, config_template(sanitize_box_name(folder.name)))
    _wrote(target, " Edit it, then run `deepbox up`.")


@cli.command()
@json_option("Print the result as JSON on stdout.")
@click.option("--frozen", is_flag=True, help="Build from deepbox.lock as it is; refuse when it is missing or stale.")
@click.option(
    "--new-port",
    is_flag=True,
    help="Move the box to free ports (another program took its own); the ssh alias and IDE files follow.",
)
@click.option("--dotfiles", "dotfiles_again", is_flag=True, help="Install the dotfiles setting in the box again.")
@click.option(
    "--check",
    is_flag=True,
    help="Log in to the box over SSH, hand it its secrets and import its frameworks in it, even when `up` "
    "did so before with the same settings, host key and secrets.",
)
@_plain_opt
@project_option
@click.pass_context
def up(ctx: click.Context, as_json: bool, frozen: bool, new_port: bool, dotfiles_again: bool, check: bool) -> None:
    """Build (or reuse) the box, start it and check it over SSH.

    Locks the packages when needed, builds the image when the spec changed, starts the container, waits
    for SSH and checks that the frameworks import (again only when the box's Python folders changed since the
    last check). A box `up` logged in to before, with the same settings, host key and secrets, is only
    confirmed to answer (--check logs in and imports again). --new-port moves a box whose port another
    program took.
    """
    from deepbox import box, dotfiles

    spec, site = _spec(ctx)
    dotfiles.check_setting(spec, again=dotfiles_again)
    spec = site.bind(spec)
    reporter = ConsoleReporter(plain=bool(ctx.obj.get("plain")))
    result = box.up(spec, site, reporter, frozen=frozen, new_port=new_port, check=check)
    written = _write_ide_files(spec, result)
    installed = dotfiles.ensure(spec, site, ConsoleReporter(), again=dotfiles_again)
    if as_json:
        _emit_json({**result.as_dict(), "ide_files": [str(path) for path in written], "dotfiles": installed})
        return
    _print_up(result)
    for path in written:
        _wrote(path)


def _write_ide_files(spec: Spec, result: UpResult) -> list[Path]:
    """The IDE project files named by `ide = [...]`, brought up to date after every `up`."""
    written: list[Path] = []
    if "pycharm" in spec.ide:
        from deepbox.ide import pycharm

        written += pycharm.write_project(spec, result)
    if "vscode" in spec.ide:
        from deepbox.ide import vscode

        written += vscode.write_settings(spec, result)
    return written


def _print_up(result: UpResult) -> None:
    from rich.table import Table

    console = _console(stderr=False)
    table = Table(title=f"Frameworks in box '{result.box}'", title_justify="left")
    for column in ("framework", "version", "GPU"):
        table.add_column(column)
    for check in result.frameworks:
        gpu = "-" if check.gpu is None else ("yes" if check.gpu else "no")
        if check.gpu_count:
            gpu = f"yes ({check.gpu_count})"
        table.add_row(check.name, check.version + (" (base image)" if check.from_base else ""), gpu)
    console.print(table)
    console.print(
        f"[green]Box '{result.box}' is {result.action}[/]: "
        + _escape(f"ssh {result.alias}  (or {result.ssh_command()}; project in {result.workspace})"),
        markup=True,
        soft_wrap=True,
    )
    if result.jupyter_url:
        console.print(f"JupyterLab: {result.jupyter_url}", soft_wrap=True)
    for port in result.ports:
        console.print(f"Port: {port.describe()}", soft_wrap=True)
    if result.jump and result.ports:
        console.print(_forward_hint(result.alias), soft_wrap=True)


def _forward_hint(alias: str) -> str:
    return (
        f"ssh forwards these ports while a session to {alias} is open: `ssh {alias}`, an IDE's, or "
        "`deepbox ports --forward`."
    )


@cli.command("lock")
@click.option("--check", is_flag=True, help="Exit 1 when deepbox.lock does not match deepbox.toml (for CI).")
@click.option(
    "--upgrade",
    is_flag=False,
    flag_value=":all:",
    default=None,
    multiple=True,
    metavar="[PKG]",
    help="Move every package forward, or only PKG (repeatable); otherwise locked versions are kept.",
)
@json_option("Print the locked variant as JSON on stdout.")
@project_option
@click.pass_context
def lock_command(ctx: click.Context, check: bool, upgrade: tuple[str, ...], as_json: bool) -> None:
    """Lock every package of the box into deepbox.lock (commit it).

    The packages are resolved for the box's Python, platform and device.
    """
    from deepbox import box, lock
    from deepbox.errors import DeepboxError

    if check:
        if upgrade:
            raise click.UsageError("--check and --upgrade do not go together.")
        specs = _every_box_spec(ctx)  # CI checks every box's lock, whichever box --box picks
        problems = [problem for spec in specs for problem in lock.check(spec)]
        if problems:
            raise DeepboxError(" ".join(problems))
        files = [str(lock.path(spec.project, spec.lock_file)) for spec in specs]
        listed = files[0] if len(files) == 1 else ", ".join(files[:-1]) + " and " + files[-1]
        _console().print(f"{listed} {'match' if len(files) > 1 else 'matches'} deepbox.toml.", soft_wrap=True)
        return
    moving: tuple[str, ...] | bool = True if ":all:" in upgrade else upgrade or False
    spec, site = _spec(ctx, bind=True)
    variant = box.lock_packages(spec, site, ConsoleReporter(), moving)
    if as_json:
        _emit_json(variant.as_dict())
        return
    cuda = f", CUDA {variant.cuda}" if variant.cuda else ""
    _console(stderr=False).print(
        f"{lock.path(spec.project, spec.lock_file)}: {variant.key} ({len(variant.packages)} packages{cuda}) for Python "
        f"{variant.python} on {variant.platform}, resolved as of {variant.exclude_newer}."
    )


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_boxes)
@project_option
@click.pass_context
def down(ctx: click.Context, name: str | None) -> None:
    """Stop the box (this project's, or NAME). Nothing is deleted.

    On a Slurm cluster the box is removed instead and its job cancelled: a node is lent for a job.
    """
    from deepbox import box

    box_name, site = _target(ctx, name)
    _console().print(box.down(box_name, site, ConsoleReporter()))


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_boxes)
@click.option("--volumes", is_flag=True, help="Also delete the box's volumes (its home folder and host key).")
@project_option
@click.pass_context
def rm(ctx: click.Context, name: str | None, volumes: bool) -> None:
    """Remove the box's container. Your project and mounted folders are never touched."""
    from deepbox import box

    box_name, site = _target(ctx, name)
    removed = box.rm(box_name, volumes, site, ConsoleReporter())
    _console().print(f"Removed {', '.join(removed)}.")


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_boxes)
@json_option("Print the boxes as JSON on stdout.")
@click.option("--all-hosts", is_flag=True, help="Also list the boxes on every server you ran `up` on.")
@project_option
@click.pass_context
def status(ctx: click.Context, name: str | None, as_json: bool, all_hosts: bool) -> None:
    """List the boxes: state, image, port, GPUs, project, uptime.

    With NAME (or --box NAME, the project's box NAME), that box alone, and the Python packages installed
    or changed in it since deepbox installed them from its lock.
    """
    from deepbox import box
    from deepbox.errors import DeepboxError

    if name is not None or (ctx.obj or {}).get("box_typed"):  # `status --box NAME`: that box of the project
        if all_hosts:
            raise click.UsageError(f"{'NAME' if name else '--box'} and --all-hosts do not go together.")
        box_name, site = _target(ctx, name)
        rows = box.status(site, box_name)
    elif not all_hosts:
        rows = box.status(_status_site(ctx))
    else:
        rows = []
        from deepbox import state
        from deepbox.engine import Location

        sites = [_status_site(ctx)]
        known = [host for host in state.known_hosts() if host != sites[0].host]
        sites += [_site_at(ctx, Location(host, "a server you ran `up` on")) for host in known]
        for site in sites:
            host = site.host
            try:
                rows += box.status(site)
            except DeepboxError as exc:  # one unreachable server must not hide the others
                _console().print(
                    f"[yellow]Skipped {_escape(host or 'the local engine')}:[/] {_escape(exc.message)}", markup=True
                )
    if as_json:
        _emit_json([row.as_dict() for row in rows])
        return
    from rich.table import Table

    table = Table()
    columns = ("box", "state", "image", "port", "gpus", "project", "uptime")
    jobs = any(row.job for row in rows)  # boxes on a Slurm cluster: their jobs too
    for column in ("host", *columns) if all_hosts else columns:
        table.add_column(column)
    if jobs:
        table.add_column("slurm job")
    for row in rows:
        table.add_row(
            *([row.host or "local"] if all_hosts else []),
            row.box,
            row.state,
            row.image,
            str(row.port or "-"),
            row.gpus or "-",
            row.project,
            _duration(row.uptime_seconds),
            *([_job_cell(row.job)] if jobs else []),
        )
    if rows:
        table.caption = "Engine: " + "; ".join(dict.fromkeys(row.engine for row in rows))
        _console(stderr=False).print(table)
        if name is not None or (ctx.obj or {}).get("box_typed"):
            _print_drift(rows[0])
    else:
        click.echo("No boxes yet: run `deepbox up` in a project folder.")


def _job_cell(job: dict[str, str] | None) -> str:
    """'1234 RUNNING on node1, 7:59:12 left' for a box on a Slurm cluster."""
    if not job:
        return "-"
    where = f" on {job['node']}" if job["node"] else ""
    left = f", {job['time_left']} left" if job["state"] == "RUNNING" and job["time_left"] else ""
    return f"{job['id']} {job['state']}{where}{left}"


def _print_drift(row: BoxStatus) -> None:
    """`status NAME`: how the box's packages differ from deepbox.lock, or why that was not checked."""
    from deepbox import drift

    if row.drift is not None:
        line = drift.sentence(row.box, row.drift)
    elif row.state != "running":
        line = f"Box '{row.box}' is not running, so its packages were not compared with deepbox.lock."
    else:
        line = f"Box '{row.box}' keeps no list of the packages deepbox installed, so they were not compared."
    _console(stderr=False).print(line, soft_wrap=True)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


_PASSTHROUGH = "deepbox.passthrough"


class PassThroughCommand(click.Command):
    """A command whose arguments after `--` belong to another program, untouched (ctx.meta[_PASSTHROUGH]):
    before `--` come its own NAME and options, so `deepbox ssh NAME -- ls -C` is never ambiguous."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            args, ctx.meta[_PASSTHROUGH] = args[:cut], args[cut + 1 :]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- CMD...]"]


@cli.command(cls=PassThroughCommand)
@click.argument("name", required=False, shell_complete=_complete_boxes)
@project_option
@click.pass_context
def ssh(ctx: click.Context, name: str | None) -> NoReturn:
    """Open a shell in the box (this project's, or NAME) over SSH.

    `deepbox ssh [NAME] -- CMD...` runs CMD in the box instead; what follows `--` goes to it untouched.
    """
    from deepbox import box
    from deepbox.ssh import ssh_base_args

    spec = _local_spec(ctx)
    alias = dataclasses.replace(spec, name=name).alias if name else spec.alias
    box_name, site = _target(ctx, name)
    box.running(box_name, site)  # a missing or stopped box is said as such, not as ssh's "Could not resolve"
    site.close()  # exec replaces this process: nothing on close would run
    args = [*ssh_base_args(), alias, *ctx.meta.get(_PASSTHROUGH, [])]
    sys.stdout.flush()
    os.execvp(args[0], args)  # noqa: S606 - hand the terminal to the system ssh


@cli.command("exec", cls=PassThroughCommand)
@click.argument("name", required=False, shell_complete=_complete_boxes)
@click.option("-t", "--tty", is_flag=True, help="Give CMD a terminal (for a shell; Ctrl-C reaches CMD).")
@project_option
@click.pass_context
def exec_command(ctx: click.Context, name: str | None, tty: bool) -> None:
    """Run CMD in the box (this project's, or NAME) without ssh.

    `deepbox exec [NAME] -- CMD...` runs CMD as the box user, in the workspace, with the environment an ssh
    login gets; it works before sshd is up. Output comes as it is written, piped input goes to CMD, and
    CMD's exit code is deepbox's.
    """
    from deepbox import box
    from deepbox.errors import DeepboxError, ExitCode

    command = ctx.meta.get(_PASSTHROUGH) or []
    if not command:
        raise click.UsageError("Give the command after `--`, for example `deepbox exec -- python train.py`.")
    stdin = _stdin_fd()
    terminal = stdin is not None and os.isatty(stdin)
    if tty and not (terminal and sys.stdout.isatty()):
        raise DeepboxError("-t needs a terminal for input and output; run it from one, or drop -t.")
    box_name, site = _target(ctx, name)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    sys.stdout.flush()
    try:
        if tty:
            with _raw_terminal(stdin):
                code = box.exec_in(
                    box_name, command, site, stdin=stdin, stdout=out, stderr=err,
                    term=os.environ.get("TERM") or "xterm", window=_window,
                )  # fmt: skip
        else:
            # Like `docker exec` without -i, input from a terminal stays here; piped input goes to CMD.
            code = box.exec_in(box_name, command, site, stdin=None if terminal else stdin, stdout=out, stderr=err)
    except KeyboardInterrupt:
        raise DeepboxError(
            "Interrupted; the command may still run in the box (with -t, Ctrl-C reaches the command instead).",
            exit_code=ExitCode.INTERRUPTED,
        ) from None
    except BrokenPipeError:
        # The reader went away (`deepbox exec -- cat log | head`): end quietly, as a shell's command would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 128 + signal.SIGPIPE
    ctx.exit(code)


def _stdin_fd() -> int | None:
    """This process's stdin as a file descriptor; None when there is none (closed, or not a real file)."""
    try:
        return sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        return None


def _window() -> tuple[int, int]:
    size = os.get_terminal_size(sys.stdout.fileno())
    return size.lines, size.columns


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """Keys go to the box's terminal as typed (Ctrl-C included); the terminal is restored afterwards."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_boxes)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new log lines.")
@project_option
@click.pass_context
def logs(ctx: click.Context, name: str | None, follow: bool) -> None:
    """Print the box's log (this project's, or NAME's).

    It is sshd's log: logins, refused keys, errors.
    """
    from deepbox import box

    out = sys.stdout.buffer
    box_name, site = _target(ctx, name)
    for chunk in box.logs(box_name, follow, site):
        out.write(chunk)
        out.flush()


@cli.command()
@click.argument("tag")
@click.argument("name", required=False, shell_complete=_complete_boxes)
@project_option
@click.pass_context
def snapshot(ctx: click.Context, tag: str, name: str | None) -> None:
    """Commit the box (this project's, or NAME) to image TAG.

    Use it as `base = "TAG"`. No keys end up in it.
    """
    from deepbox import box

    box_name, site = _target(ctx, name)
    image_id = box.snapshot(box_name, tag, site, ConsoleReporter())
    _console().print(f'Saved {tag} ({image_id[:19]}). Use it with base = "{tag}" in deepbox.toml.')


def _images_of(ctx: click.Context, name: str | None) -> tuple[list[BoxImage], Site]:
    """Box NAME's images (or --box NAME's), else every box image on the engine."""
    from deepbox import images

    if name is not None or (ctx.obj or {}).get("box_typed"):
        box_name, site = _target(ctx, name)
        return images.box_images(site, box_name), site
    site = _status_site(ctx)
    if site.listed_boxes() is not None:  # a Slurm cluster: the project's box's job holds its images
        return _images_of(ctx, _spec(ctx)[0].name)
    return images.box_images(site), site


def _image_table(rows: list[BoxImage]) -> None:
    from rich.table import Table

    from deepbox.images import human_size

    table = Table()
    table.add_column("image", overflow="fold")
    for column in ("size", "created", "state"):
        table.add_column(column)
    table.add_column("why", overflow="fold")
    for row in rows:
        table.add_row(row.name, human_size(row.size), row.created[:10], row.state, row.why)
    _console(stderr=False).print(table)


@cli.command("images")
@click.argument("name", required=False, shell_complete=_complete_boxes)
@json_option("Print the images as JSON on stdout.")
@project_option
@click.pass_context
def images_command(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List the box images, their sizes, and which are unused.

    Each is in use (by a container), superseded (its box uses another), unused (no such box) or a
    snapshot. With NAME (or --box NAME), that box's alone. Sizes count the layers no other image shares.
    `deepbox prune` removes the superseded and unused ones.
    """
    rows, _site = _images_of(ctx, name)
    if as_json:
        _emit_json([row.as_dict() for row in rows])
    elif rows:
        _image_table(rows)
    else:
        click.echo(f"Box '{name}' has no images." if name else "No box images yet: `deepbox up` builds one.")


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_boxes)
@click.option("--yes", is_flag=True, help="Remove them; without it, only list what would go.")
@click.option("--snapshots", is_flag=True, help="Also remove the snapshot images no container uses.")
@json_option("Print what would go (or went) as JSON on stdout.")
@project_option
@click.pass_context
def prune(ctx: click.Context, name: str | None, yes: bool, snapshots: bool, as_json: bool) -> None:
    """Remove the box images no box uses.

    Superseded spec tags and the images of removed boxes. First a dry run: it lists what would go and
    the space that frees; --yes removes them. An image a container (running or stopped) uses always
    stays; snapshots stay unless --snapshots. With NAME (or --box NAME), that box's images alone.
    """
    from deepbox import images

    rows, site = _images_of(ctx, name)
    doomed = images.removable(rows, snapshots)
    if yes and doomed:
        doomed = images.prune(site, doomed, ConsoleReporter())
    size = images.human_size(images.freed(doomed))
    count = f"{len(doomed)} image{'' if len(doomed) == 1 else 's'}"
    if as_json:
        _emit_json({"removed": yes, "bytes": images.freed(doomed), "images": [row.as_dict() for row in doomed]})
    elif not doomed:
        click.echo("Nothing to remove: every box image is in use" + ("." if snapshots else " or a snapshot."))
    elif yes:
        click.echo(f"Removed {count}, {size} freed.")
    else:
        _image_table(doomed)
        scope = [name] if name else ["--box", ctx.obj["box"]] if (ctx.obj or {}).get("box_typed") else []
        again = " ".join(["deepbox prune", *scope, *(["--snapshots"] if snapshots else []), "--yes"])
        click.echo(f"Would remove {count}, {size}. Run `{again}` to remove them.")


@cli.command()
@json_option("Print what was pushed as JSON on stdout.")
@project_option
@click.pass_context
def push(ctx: click.Context, as_json: bool) -> None:
    """Push the box image to the registry, for the team.

    It goes to REGISTRY/NAME:HASH, HASH from the box's settings and lock: `deepbox up` on any machine with the
    same settings and lock pulls it instead of building.
    """
    from deepbox import box

    spec, site = _spec(ctx, bind=True)
    pushed = box.push(spec, site, ConsoleReporter())
    if as_json:
        _emit_json(pushed)
        return
    click.echo(f"Pushed {pushed['image']} as {pushed['pushed']} ({pushed['digest']}).")


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_boxes)
@project_option
@click.pass_context
def jupyter(ctx: click.Context, name: str | None) -> None:
    """Print the box's JupyterLab URL (this project's, or NAME's).

    The box needs `jupyter = true` in its deepbox.toml.
    """
    from deepbox import box
    from deepbox.errors import DeepboxError

    spec, site = _box_spec(ctx, name)
    if not spec.jupyter:
        raise DeepboxError(
            f"Box '{spec.name}' does not run JupyterLab: set jupyter = true in "
            f"{spec.source or 'deepbox.toml'} and run `deepbox up`."
        )
    url = box.describe(spec, site).jupyter_url
    if url is None:
        raise DeepboxError(f"Box '{spec.name}' was started without JupyterLab; run `deepbox up` to recreate it.")
    click.echo(url)


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_boxes)
@json_option("Print the ports as JSON on stdout.")
@click.option("--forward", is_flag=True, help="A server box: hold its ports' forwards open until Ctrl-C.")
@project_option
@click.pass_context
def ports(ctx: click.Context, name: str | None, as_json: bool, forward: bool) -> None:
    """Print the URLs of the box's ports (this project's, or NAME's).

    A box here publishes them; a server box's ssh alias forwards them while an ssh session is open.
    """
    from deepbox import box
    from deepbox.ssh import ssh_base_args

    box_name, site = _target(ctx, name)
    container, reached = box.ports(box_name, site)
    alias = container.labels.get(box.LABEL_ALIAS, f"deepbox-{box_name}")
    if as_json:
        _emit_json([dataclasses.asdict(port) for port in reached])
    elif not reached:
        click.echo(f"Box '{box_name}' has no ports; add ports = [6006] to deepbox.toml and run `deepbox up`.")
    else:
        for port in reached:
            click.echo(port.describe())
        if site.forwards_ports and not forward:
            click.echo(_forward_hint(alias))
        if container.status != "running":
            click.echo(f"Box '{box_name}' is {container.status}; `deepbox up` starts it.")
    if not forward:
        return
    if not site.forwards_ports:
        _console().print(f"Box '{box_name}' is on this machine: the engine publishes its ports, nothing to forward.")
        return
    _console().print(f"Forwarding through ssh {alias} until Ctrl-C.")
    args = [*ssh_base_args(), "-N", alias]
    sys.stdout.flush()
    os.execvp(args[0], args)  # noqa: S606 - the system ssh holds the forwards


@cli.command()
@click.option(
    "--frameworks",
    default=None,
    metavar="A,B",
    shell_complete=_complete_frameworks,
    help="Catalog names or presets (e.g. pytorch,scikit-learn): print a Dockerfile without a project.",
)
@click.option("--cuda", default=None, metavar="X.Y", help="With --frameworks: CUDA builds for this CUDA version.")
@click.option("--python", "python_version", default=None, metavar="X.Y", help="With --frameworks: the box's Python.")
@click.option("--base", default=None, metavar="IMAGE", help="With --frameworks: the base image.")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Write the whole build context (the Dockerfile and every file it copies) into DIR: new, empty, or "
    "written by --output before.",
)
@project_option
@click.pass_context
def dockerfile(
    ctx: click.Context,
    frameworks: str | None,
    cuda: str | None,
    python_version: str | None,
    base: str | None,
    output: Path | None,
) -> None:
    """Print the Dockerfile for this project, or for --frameworks.

    With --frameworks it needs no project, like Deepo's generator.
    """
    from deepbox import dockerfile as generator

    if frameworks is None:
        if cuda or python_version or base:
            raise click.UsageError("--cuda, --python and --base go with --frameworks.")
        context = _rendered(ctx)[1]
    else:
        names = [name.strip() for name in frameworks.split(",") if name.strip()]
        context = generator.standalone(names, cuda=cuda, python=python_version, base=base)
    if output is not None:
        folder = output.resolve()
        written = generator.write_context(context, folder)
        _console(stderr=False).print(
            f"Wrote the build context to {folder} (the Dockerfile and {len(written) - 1} files it copies); "
            f"`docker build {folder}` builds it.",
            soft_wrap=True,
        )
        return
    click.echo(context.dockerfile, nl=False)
    if context.files:  # on stderr: stdout stays the Dockerfile alone
        _console().print(
            f"The Dockerfile copies {len(context.files)} files that are not printed; "
            "`deepbox dockerfile --output DIR` writes them beside it, a context `docker build DIR` builds.",
            soft_wrap=True,
        )


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_frameworks)
@json_option("Print the catalog (entries and presets), or NAME's entry, as JSON on stdout.")
@_debug_opt
def catalog(name: str | None, as_json: bool) -> None:
    """List the frameworks deepbox installs, or entry NAME in full.

    `frameworks = [...]` takes these names and presets: version, CPU/CUDA builds, status.
    """
    from deepbox import catalog as frameworks

    if name is not None:
        _catalog_entry(name, as_json)
        return
    rows = frameworks.table()
    if as_json:
        _emit_json({"frameworks": rows, "presets": frameworks.presets()})
        return
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for column in ("name", "version", "cuda", "status", "description"):
        table.add_column(column)
    for row in rows:
        if row["status"] == "ok":
            state = "ok"
        else:
            state = Text.assemble(("refused", "red"), f": use {row['replacement']}" if row["replacement"] else "")
        table.add_row(
            str(row["name"]), str(row["version"]), "yes" if row["cuda"] else "-", state, str(row["description"])
        )
    console = _console(stderr=False)
    console.print(table)
    presets = ", ".join(f"{name} ({len(members)})" for name, members in frameworks.presets().items())
    console.print(f"Presets: {presets}. `deepbox catalog --json` lists their members.")


def _catalog_entry(name: str, as_json: bool) -> None:
    """`deepbox catalog NAME`: a preset's members, or an entry in full."""
    from deepbox import catalog as frameworks

    presets = frameworks.presets()
    if name.lower() in presets:
        members = presets[name.lower()]
        if as_json:
            _emit_json({"preset": name.lower(), "members": members})
        else:
            click.echo(f"{name.lower()}: a preset of {len(members)} frameworks: {', '.join(members)}.")
        return
    entry = frameworks.entry(name)
    if as_json:
        _emit_json(entry)
        return
    console = _console(stderr=False)
    for key, value in entry.items():
        if isinstance(value, dict):
            value = ", ".join(f"{series} ({pythons})" for series, pythons in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(item) for item in value)
        if value not in ("", None):
            console.print(f"[bold]{key:>12}[/]  {_escape(str(value))}", soft_wrap=True, markup=True)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of deepbox.toml, for editors.

    Save it next to the file (`deepbox schema > deepbox.schema.json`) and make `#:schema ./deepbox.schema.json`
    the first line of deepbox.toml: editors that read TOML through Taplo (Even Better TOML in VS Code, the
    taplo language server elsewhere) then complete and check every key.
    """
    from deepbox.config import json_schema

    _emit_json(json_schema())


@cli.command()
@json_option("Print the findings as JSON on stdout.")
@project_option
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the settings and this machine for the box.

    Every check `up` makes, reported all at once, each ok, a warning or an error with its fix: the
    settings (frameworks, base, Dockerfile, mounts), ssh tools, the engine, free disk, the SSH port and `ports`, the
    base image, the lock, the NVIDIA driver and container runtime.
    """
    from deepbox import doctor as checks
    from deepbox.errors import DeepboxError

    spec, site = _spec(ctx)
    with contextlib.suppress(DeepboxError):  # an engine that does not answer is doctor's first finding
        spec = site.bind(spec)
    findings = checks.run(spec, site)
    if as_json:
        _emit_json([finding.as_dict() for finding in findings])
    else:
        console = _console(stderr=False)
        colours = {"ok": "green", "warning": "yellow", "error": "red"}
        for finding in findings:
            console.print(
                f"[{colours[finding.level]}]{finding.level:>7}[/]  {finding.check}: {_escape(finding.message)}",
                soft_wrap=True,
                markup=True,
            )
    if any(finding.level == "error" for finding in findings):
        ctx.exit(1)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be copied; change nothing.")
@click.option("--delete", is_flag=True, help="Also delete server files gone here (only in the project's folder).")
@click.option("--watch", is_flag=True, help="Keep pushing after every change (Ctrl-C to stop).")
@project_option
@click.pass_context
def sync(ctx: click.Context, dry_run: bool, delete: bool, watch: bool) -> None:
    """Copy the project to the server of a box with `host`.

    rsync over ssh into `remote_path`; .gitignore files are honoured.
    """
    from deepbox import sync as syncing

    spec, site = _spec(ctx)
    console = _console(stderr=False)

    def report(changes: list[str]) -> None:
        verb = "Would copy" if dry_run else "Copied"
        console.print(f"{verb} {len(changes)} change(s) to {spec.host}:{spec.remote_path}")
        for line in changes:
            console.print(f"  {line}", soft_wrap=True)

    if watch:
        if dry_run:
            raise click.UsageError("--watch and --dry-run do not go together.")
        syncing.watch(spec, site, report, delete=delete)
    else:
        report(syncing.push(spec, site, dry_run=dry_run, delete=delete))


@cli.group()
def ide() -> None:
    """Connect an IDE to the running box: PyCharm, VS Code, Gateway."""


@ide.command("pycharm")
@click.option(
    "--register-interpreter",
    is_flag=True,
    help="Also add the interpreter to PyCharm's own settings (PyCharm must be closed; a backup is kept).",
)
@click.option(
    "--ide-config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="PyCharm's config folder [default: the newest PyCharm one].",
)
@project_option
@click.pass_context
def ide_pycharm(ctx: click.Context, register_interpreter: bool, ide_config_dir: Path | None) -> None:
    """Write the project's .idea files for the box's interpreter.

    SSH config, deployment mapping, interpreter, run configurations; other settings are kept.
    """
    from deepbox import box
    from deepbox.ide import pycharm

    spec, site = _spec(ctx, bind=True)
    result = box.describe(spec, site)
    console = _console(stderr=False)
    written = pycharm.write_project(spec, result)
    for path in written:
        _wrote(path)
    if not written:
        console.print(f"{spec.project / '.idea'} is up to date.")
    if register_interpreter:
        table = pycharm.register_interpreter(spec, result, ide_config_dir)
        console.print(f"Registered the interpreter in {table}; open the project in PyCharm.")
        console.print(pycharm.host_key_check(result), soft_wrap=True)
    else:
        console.print(pycharm.remaining_clicks(spec, result), soft_wrap=True)


@ide.command("vscode")
@click.option("--no-open", is_flag=True, help="Only write the settings and print how to open the box.")
@project_option
@click.pass_context
def ide_vscode(ctx: click.Context, no_open: bool) -> None:
    """Write .vscode settings and open the box in VS Code.

    The Python extension gets the box's interpreter; the box opens over Remote-SSH.
    """
    import subprocess

    from deepbox import box
    from deepbox.ide import vscode

    spec, site = _spec(ctx, bind=True)
    result = box.describe(spec, site)
    console = _console(stderr=False)
    for path in vscode.write_settings(spec, result):
        _wrote(path)
    command = None if no_open else vscode.open_command(result)
    if command is None:
        console.print(f"Open in VS Code: {vscode.open_url(result)}", soft_wrap=True)
        console.print(vscode.ssh_config_hint(result), soft_wrap=True)
        return
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        from deepbox.errors import DeepboxError

        raise DeepboxError(
            f"`{' '.join(command)}` failed (exit {completed.returncode}); open {vscode.open_url(result)} instead."
        )


@ide.command("gateway")
@click.option("--open", "open_it", is_flag=True, help="Open the link with the desktop's URL handler.")
@project_option
@click.pass_context
def ide_gateway(ctx: click.Context, open_it: bool) -> None:
    """Print the link that opens the box in JetBrains Gateway.

    A jetbrains-gateway:// link to the workspace in the box.
    """
    import subprocess

    from deepbox import box
    from deepbox.errors import DeepboxError
    from deepbox.ide import gateway

    spec, site = _spec(ctx, bind=True)
    url = gateway.gateway_url(box.describe(spec, site))
    click.echo(url)
    if open_it:
        command = gateway.open_command(url)
        if command is None:
            raise DeepboxError("No URL handler (xdg-open or open) is installed; paste the link into Gateway.")
        completed = subprocess.run(command, check=False)
        if completed.returncode != 0:
            raise DeepboxError(f"`{command[0]}` could not open the link (exit {completed.returncode}); paste it.")


@cli.group()
def export() -> None:
    """Export the box's environment for other tools."""


@export.command("devcontainer")
@click.option("--force", is_flag=True, help="Overwrite a .devcontainer/devcontainer.json that deepbox did not write.")
@project_option
@click.pass_context
def export_devcontainer(ctx: click.Context, force: bool) -> None:
    """Write .devcontainer/ for Dev Containers and Codespaces.

    devcontainer.json and the Dockerfile, for VS Code Dev Containers, Codespaces and PyCharm.
    """
    from deepbox import devcontainer

    spec, context = _rendered(ctx)
    written = devcontainer.export(spec, context, force=force)
    console = _console(stderr=False)
    for path in written:
        _wrote(path)
    if not written:
        console.print(f"{spec.project / '.devcontainer'} is up to date.")


@cli.group()
def base() -> None:
    """Base images for hosts without a container registry."""


@base.command()
@click.option(
    "--suite",
    default="bookworm",
    show_default=True,
    help="Debian (bullseye, bookworm, trixie) or Ubuntu (bionic, focal, jammy, noble) release to bootstrap.",
)
@click.option("--tag", default=None, help="Image name [default: deepbox/debian:SUITE or deepbox/ubuntu:SUITE].")
@click.option("--mirror", default=None, help="Package mirror [default: deb.debian.org or archive.ubuntu.com].")
@click.option(
    "--keyring",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Archive keyring that signs the suite [default for Ubuntu: /usr/share/keyrings/ubuntu-archive-keyring.gpg].",
)
@engine_options
@click.pass_context
def bootstrap(ctx: click.Context, suite: str, tag: str | None, mirror: str | None, keyring: Path | None) -> None:
    """Build a minimal Debian or Ubuntu base image (debootstrap).

    From the distribution's packages: debootstrap, then docker import.
    """
    from deepbox import base as base_images

    reporter = ConsoleReporter()
    target = tag or base_images.default_tag(suite)
    engine = _site(ctx, None).engine()
    reporter.step(f"Bootstrapping {base_images.distribution(suite).name.capitalize()} {suite} into {target}")
    base_images.bootstrap(engine, suite, target, mirror, reporter.build_line, keyring)
    _console().print(f'Base image {target} is ready: set base = "{target}" in deepbox.toml.')


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    For example `deepbox completion bash > ~/.local/share/bash-completion/completions/deepbox`; the README
    has the lines for zsh and fish.
    """
    from click.shell_completion import get_completion_class

    script = get_completion_class(shell)
    assert script is not None  # every choice has one
    click.echo(script(cli, {}, "deepbox", "_DEEPBOX_COMPLETE").source())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; errors become one sentence and an exit code (tracebacks only with --debug)."""
    # deepbox's settings models use no pydantic plugin; without this, pydantic looks through every
    # installed package's entry points for one when the first model is made (~30 ms a command).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    code = _run(argv)
    if argv is None:
        # The command is done: a Ctrl-C while the interpreter shuts down must not turn its result into
        # a KeyboardInterrupt (in-process callers such as tests keep their own Ctrl-C).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if threading.active_count() == 1:
            _end_process(code)
    return code


def _end_process(code: int) -> NoReturn:
    """End the process once the command is done, without the interpreter's teardown of every module and
    object it loaded (~80 ms after a command that used the engine client and the settings models): the
    exit handlers still run, and what is buffered for the terminal is written; no other thread is left."""
    getattr(atexit, "_run_exitfuncs", lambda: None)()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (`deepbox status --json | head -1`)
            stream.flush()
    os._exit(code)


def _disk_full(exc: OSError) -> bool:
    from deepbox.fsutil import disk_full

    return disk_full(exc)


def _run(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else argv
    own = args[: args.index("--")] if "--" in args else args  # after `--` they belong to another program
    debug = "--debug" in own or bool(os.environ.get("DEEPBOX_DEBUG"))
    try:
        # ctx.exit(N) (e.g. doctor's findings) comes back as the return value, not as an exception.
        returned = cli.main(args=args, prog_name="deepbox", standalone_mode=False)
    except click.exceptions.Abort:
        _console().print("Interrupted.", style="red")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        _console().print("Interrupted; nothing was left half-done.", style="red")
        return 130
    except Exception as exc:
        from deepbox.errors import DeepboxError

        if debug:
            raise
        console = _console()
        if isinstance(exc, OSError) and _disk_full(exc):
            where = f"The disk that holds {exc.filename}" if exc.filename else "A disk deepbox writes to"
            sentence = (
                f"{where} is full; free some space there and run the command again "
                "(the file deepbox was writing is unchanged)."
            )
            console.print(
                f"[red]Error:[/] {_escape(sentence)}",
                soft_wrap=True,
                markup=True,
            )
            return 1
        if isinstance(exc, DeepboxError):
            # The detail (a log's tail) first, so the sentence with the fix is the last thing on screen.
            if exc.detail:
                console.print(exc.detail.rstrip(), soft_wrap=True, style="dim")
            console.print(f"[red]Error:[/] {_escape(exc.message)}", soft_wrap=True, markup=True)
            return int(exc.exit_code)
        console.print(
            f"[red]Unexpected error:[/] {_escape(f'{type(exc).__name__}: {exc}')}. "
            "Run again with --debug for the traceback and report it.",
            soft_wrap=True,
            markup=True,
        )
        return 1
    return returned if isinstance(returned, int) else 0


if __name__ == "__main__":
    sys.exit(main())
