"""Box lifecycle: up / down / rm / status / snapshot / logs. Idempotent, state kept in engine labels.

A box is one container named `deepbox-<name>` plus two named volumes (the user's home and the SSH
host key). Images are tagged `deepbox/<name>:<spec hash>`; a changed spec builds a new image first
and only then replaces the container, so a failed build leaves the old box running. Where the box
lives (this machine or a server) is the Site's business; talking to the engine is the Engine's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout

from deepbox import baseimage, boxsecrets, catalog, gpu, lock, paths, ssh, state
from deepbox.config import Spec
from deepbox.dockerfile import VENV, plan_for, render
from deepbox.engine import (
    LABEL_ALIAS,
    LABEL_BOX,
    LABEL_PROJECT,
    LABEL_RUN,
    LABEL_SPEC,
    Container,
    Engine,
    Image,
    NewContainer,
    PortInUseError,
)
from deepbox.errors import DeepboxError
from deepbox.model import BoxStatus, BuildContext, FrameworkCheck, UpResult
from deepbox.site import Site, site_for
from deepbox.verify import verify

HOST_KEY = "/etc/ssh/deepbox/ssh_host_ed25519_key.pub"
SSHD_NOTES = "/run/deepbox/notes"  # written by the box's sshd-config.sh
JUPYTER_TOKEN_FILE = "/run/deepbox/jupyter-token"  # noqa: S105 - a path, read by the box's deepbox-jupyter
READY_TIMEOUT = 90.0
BOOTSTRAP_HINT = "deepbox base bootstrap --tag {tag}"
SSH_PORT, JUPYTER_PORT = "22/tcp", "8888/tcp"


class Reporter(Protocol):
    def step(self, message: str) -> None: ...
    def build_line(self, line: str) -> None: ...


def image_tag(spec: Spec, context: BuildContext) -> str:
    return f"deepbox/{spec.engine_name}:{context.spec_hash}"


def volume_names(box: str) -> tuple[str, str]:
    return f"deepbox-{box}-home", f"deepbox-{box}-hostkeys"


@contextlib.contextmanager
def box_lock(box: str, reporter: Reporter) -> Iterator[None]:
    """One `up`/`down`/`rm` per box at a time; a second waits and then finds the first's result."""
    paths.locks_dir().mkdir(parents=True, exist_ok=True)
    held = FileLock(paths.locks_dir() / f"{box}.lock")
    try:
        held.acquire(timeout=0)
    except Timeout:
        reporter.step(f"Waiting for another deepbox command on box '{box}' to finish")
        try:
            held.acquire(timeout=1800)
        except Timeout as exc:
            raise DeepboxError(
                f"Another deepbox command has held box '{box}' for 30 minutes; let it finish or stop it."
            ) from exc
    try:
        yield
    finally:
        held.release()


def _run_hash(spec: Spec, image: str, public_key: str) -> str:
    """Hash of the container's settings: a change recreates the container (not the image)."""
    material = json.dumps(
        {
            "image": image,
            "port": [spec.ssh_bind, spec.ssh_port],
            "mounts": [[str(m.host), m.box, m.read_only] for m in spec.mounts],
            "env": spec.env,
            "shm": spec.shm_size,
            "key": public_key,
            "jupyter": spec.jupyter,
            **({"gpus": [spec.gpus.count, list(spec.gpus.device_ids)]} if spec.gpus.wanted else {}),
            **({"userns": spec.user_namespace} if spec.user_namespace else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:12]


# up ---------------------------------------------------------------------------------------------


def up(spec: Spec, site: Site, reporter: Reporter, *, frozen: bool = False, new_port: bool = False) -> UpResult:
    """Bring the box up from its lock (locking first when the lock is missing or stale, unless frozen).
    new_port: recreate the box on free ports (another program took its own while it was stopped)."""
    if new_port and spec.ssh_port:
        raise DeepboxError(
            f"ssh.port = {spec.ssh_port} in {spec.source or 'deepbox.toml'} fixes the box's port, so `up --new-port` "
            "cannot move it; set ssh.port to another port there, or to 0 to let deepbox pick a free one."
        )
    with box_lock(spec.name, reporter):
        return _up(spec, site, reporter, frozen, new_port)


def _prepare(spec: Spec, site: Site, reporter: Reporter, **locking: object) -> tuple[baseimage.BaseFacts, lock.Variant]:
    """The base image (pulled when missing), what it has, and the lock variant this host builds from."""
    engine = site.engine()
    facts = baseimage.facts(engine, spec.base, _ensure_base(engine, spec.base, reporter))
    gpus = gpu.parse_nvidia_smi(smi) if spec.device == "cuda" and (smi := site.nvidia_smi()) is not None else None
    return facts, lock.ensure(spec, facts, reporter, gpus=gpus, **locking)  # type: ignore[arg-type]


def _check_settings(spec: Spec) -> None:
    """What the settings alone can get wrong, checked before any engine call (doctor makes each check
    on its own, to report them all)."""
    catalog.check_names(spec.framework_names)
    baseimage.check_reference(spec.base, str(spec.source or "deepbox.toml"))


def _up(spec: Spec, site: Site, reporter: Reporter, frozen: bool, new_port: bool) -> UpResult:
    # Unknown, refused or conflicting frameworks fail here, before any engine call; versions, Python
    # and CUDA are checked against what the base image has, once it is read.
    _check_settings(spec)
    # A missing secrets file or variable stops `up` here, before anything is built or started.
    secrets = boxsecrets.read(spec)
    bind_error = site.bind_error(spec.ssh_bind, str(spec.source or "deepbox.toml"))
    if bind_error is not None:
        raise bind_error
    ssh.require_client()
    key = ssh.ensure_client_key(spec.name, spec.ssh_key)
    engine = site.engine()
    existing = engine.container(spec.container_name)
    if existing is not None and existing.labels.get(LABEL_PROJECT) != str(spec.project):
        raise DeepboxError(
            f"A box named '{spec.name}' already belongs to {existing.labels.get(LABEL_PROJECT, 'another project')}; "
            f'set name = "..." in {spec.source or "deepbox.toml"} to give this project its own box.'
        )
    facts, locked = _prepare(spec, site, reporter, frozen=frozen)
    plan = plan_for(spec, facts, cuda_major=locked.cuda_major)
    context = render(spec, plan, facts, locked)

    tag = image_tag(spec, context)
    if engine.image(tag) is None:
        reporter.step(f"Building image {tag}")
        labels = {LABEL_BOX: spec.engine_name, LABEL_PROJECT: str(spec.project), LABEL_SPEC: context.spec_hash}
        engine.build(context, tag, labels, spec.build_network, reporter.build_line)

    public_key = ssh.public_key(key)
    # A recreated box keeps its ports, so IDE settings and bookmarks stay valid (unless asked to move).
    kept = existing if existing is not None and not new_port else None
    port = spec.ssh_port or (kept.ports.get(SSH_PORT) if kept is not None else None) or 0
    jupyter_port = kept.ports.get(JUPYTER_PORT) if kept is not None else None
    action = "running"
    if kept is not None and kept.labels.get(LABEL_RUN) == _run_hash(spec, tag, public_key):
        if kept.status != "running":
            reporter.step(f"Starting box '{spec.name}'")
            try:
                engine.start(kept)
            except PortInUseError as exc:
                raise port_clash(spec, site, kept, str(exc)) from None
            action = "started"
        container = kept
    else:
        if existing is not None:
            why = "to free ports" if new_port else "its settings changed"
            reporter.step(f"Replacing box '{spec.name}' ({why}; volumes are kept)")
            engine.remove(existing.id)
            paths.framework_checks(existing.id).unlink(missing_ok=True)
            ssh.close_master(spec.alias)
            if existing.image != tag and existing.image.startswith(f"deepbox/{spec.engine_name}:"):
                engine.untag(existing.image)  # old images would otherwise pile up with every change
        action = "recreated" if existing is not None else "created"
        container = _create(engine, site, spec, tag, public_key, port, jupyter_port, reporter)

    try:
        port = container.ports.get(SSH_PORT) or port
        endpoint = ssh.Endpoint(spec.alias, site.connect_host(spec.ssh_bind), port, spec.user.name, key, site.jump)
        ssh.pin_host_key(spec.alias, _host_key(engine, container))
        _hand_over(engine, container, spec, secrets, reporter)
        ssh.write_host(endpoint)
        # The framework check goes through the engine, not SSH: run it while SSH comes up.
        reporter.step(f"Waiting for SSH on {endpoint.host}:{port} and checking frameworks inside the box")
        with ThreadPoolExecutor(max_workers=1) as pool:
            checking = pool.submit(verify, engine, container, spec, plan.frameworks)
            try:
                # The probe's login also reads the notes the box wrote on choices its OpenSSH forced.
                notes = ssh.probe(spec.alias, READY_TIMEOUT, f"cat {SSHD_NOTES} 2>/dev/null; true").splitlines()
            except DeepboxError as exc:
                checking.cancel()
                exc.detail = _log_tail(engine, container)
                raise
            python_version, checks = checking.result()
        for note in notes:
            reporter.step(f"Note: {note}")
    except BaseException:
        if action in ("created", "recreated"):
            _discard(site, container)
        raise
    if site.host:
        state.remember_host(site.host)
    provided = {item.name for item in plan.selected if item.provided}
    for check in checks:
        check.from_base = check.name in provided
    failed = [check for check in checks if not check.ok]
    if failed:
        first = failed[0]
        raise DeepboxError(
            f"Framework '{first.name}' does not import in the box: {first.error}. Fix its version or "
            f"packages in {spec.source or 'deepbox.toml'} and run `deepbox up` again."
        )
    result = _result(spec, site, container, action, key, python_version, checks, notes)
    result.lock = locked.key
    result.cuda = locked.cuda
    return result


def _hand_over(engine: Engine, container: Container, spec: Spec, secrets: dict[str, str], reporter: Reporter) -> None:
    """The secrets and the Jupyter token, written into the box's /run/deepbox tmpfs on every `up`: the
    tmpfs is emptied whenever the box stops, and a changed secret arrives without recreating the box."""
    if secrets:
        reporter.step(f"Handing the box its secrets: {', '.join(sorted(secrets))}")
    owner = (spec.user.uid, spec.user.gid)
    # Written even when empty: the box's shells tell a box the engine restarted (no file) from one without secrets.
    engine.write_file(container, boxsecrets.BOX_FILE, boxsecrets.box_file(secrets), owner, 0o400)
    if spec.jupyter:
        engine.write_file(container, JUPYTER_TOKEN_FILE, state.jupyter_token(spec.name).encode(), owner, 0o400)


def clashing_port(engine_error: str, ports: dict[str, int]) -> str:
    """Which of a box's published ports ("22/tcp") the engine's "address already in use" names."""
    named = re.search(r":(\d+)(?:: bind| failed)", engine_error)
    if named is not None:
        for box_port, host_port in ports.items():
            if host_port == int(named.group(1)):
                return box_port
    return SSH_PORT


def port_clash(spec: Spec, site: Site, container: Container, engine_error: str = "") -> DeepboxError:
    """A stopped box's port was taken meanwhile: which port, who holds it, and the way out."""
    box_port = clashing_port(engine_error, container.ports)
    port = container.ports.get(box_port, 0)
    if box_port == SSH_PORT and spec.ssh_port:
        return site.port_taken(port, spec.ssh_bind, str(spec.source or "deepbox.toml"))
    service = "SSH" if box_port == SSH_PORT else "JupyterLab"
    return DeepboxError(
        f"Port {port} on {spec.ssh_bind}, where box '{spec.name}' publishes {service}, is taken by "
        f"{site.port_holder(port)}; stop that program, or run `deepbox up --new-port` to move the box to free "
        "ports (its ssh alias and IDE files follow)."
    )


def lock_packages(spec: Spec, site: Site, reporter: Reporter, upgrade: tuple[str, ...] | bool = False) -> lock.Variant:
    """`deepbox lock`: resolve (or keep, when fresh) the variant this box would be built from here."""
    _check_settings(spec)
    return _prepare(spec, site, reporter, upgrade=upgrade)[1]


def unwritable_mounts(spec: Spec) -> list[str]:
    """A sentence for each existing, writable mount of this machine that the box user cannot write to."""
    if spec.user.uid == 0:
        return []  # a root box user writes everywhere
    notes = []
    for mount in spec.mounts:
        if mount.read_only or not mount.host.exists():
            continue
        info = mount.host.stat()
        if info.st_uid != spec.user.uid and not info.st_mode & 0o002:
            notes.append(
                f"the box user {spec.user.name} (UID {spec.user.uid}) cannot write to {mount.host}, which "
                f"UID {info.st_uid} owns: run `chown -R {spec.user.uid}:{spec.user.gid} {mount.host}` or set "
                "[user] uid."
            )
    return notes


def _ensure_base(engine: Engine, base: str, reporter: Reporter) -> Image | None:
    """The base image, pulled when the engine does not have it."""
    image = engine.image(base)
    if image is not None:
        return image
    reporter.step(f"Pulling base image {base}")
    try:
        engine.pull(base)
    except DeepboxError as exc:
        raise DeepboxError(
            f"Base image '{base}' is not on this engine and cannot be pulled ({exc.message.rstrip('.')}); "
            f"on a host without a registry build one with `{BOOTSTRAP_HINT.format(tag=base)}`, or set "
            "base in deepbox.toml to an image you have."
        ) from exc
    return engine.image(base)


def _create(
    engine: Engine,
    site: Site,
    spec: Spec,
    tag: str,
    public_key: str,
    port: int,
    jupyter_port: int | None,
    reporter: Reporter,
) -> Container:
    home_volume, key_volume = volume_names(spec.engine_name)
    labels = {LABEL_BOX: spec.engine_name, LABEL_PROJECT: str(spec.project)}
    engine.volume_ensure(home_volume, labels)
    engine.volume_ensure(key_volume, labels)
    site.make_folders([mount.host for mount in spec.mounts], (spec.user.uid, spec.user.gid))
    if not site.host:
        for note in unwritable_mounts(spec):
            reporter.step(f"Note: {note}")
    if spec.ssh_port and not site.port_is_free(spec.ssh_bind, spec.ssh_port):
        raise site.port_taken(spec.ssh_port, spec.ssh_bind, str(spec.source or "deepbox.toml"))

    run_hash = _run_hash(spec, tag, public_key)
    for attempt in range(3):
        chosen = port or site.free_port(spec.ssh_bind)
        new = _new_container(site, spec, tag, labels, run_hash, public_key, chosen, jupyter_port)
        try:
            container = engine.create(new)
        except BaseException:
            _remove_half_created(site, spec, run_hash)
            raise
        try:
            where = site.describe(f"{site.connect_host(spec.ssh_bind)}:{chosen}")
            reporter.step(f"Starting box '{spec.name}' on {where}")
            engine.start(container)
            return engine.container(container.id) or container
        except PortInUseError as exc:
            engine.remove(container.id)
            # A port the box had before it was recreated: the same way out as for a stopped box.
            taken = container.ports.get(clashing_port(str(exc), container.ports))
            if taken and not spec.ssh_port and taken in (port, jupyter_port):
                raise port_clash(spec, site, container, str(exc)) from None
            if spec.ssh_port or attempt == 2:
                raise site.port_taken(chosen, spec.ssh_bind, str(spec.source or "deepbox.toml")) from None
        except BaseException:
            engine.remove(container.id)
            raise
    raise AssertionError("unreachable")


def _discard(site: Site, container: Container) -> None:
    """Remove a box that never became ready. If Ctrl-C broke the engine connection mid-request, a fresh
    connection does it."""
    try:
        site.engine().remove(container.id)
    except Exception:
        with contextlib.suppress(Exception):
            fresh = site_for(site.location)
            try:
                fresh.engine().remove(container.id)
            finally:
                fresh.close()


def _remove_half_created(site: Site, spec: Spec, run_hash: str) -> None:
    """Create was interrupted (Ctrl-C) while the engine still worked on it: the engine finishes on its
    own, so look for the container for a moment and remove it. A fresh connection, since the
    interrupted one may hold an unread answer."""
    with contextlib.suppress(Exception):
        fresh = site_for(site.location)
        try:
            engine = fresh.engine()
            for _ in range(30):
                made = engine.container(spec.container_name)
                if made is not None:
                    if made.labels.get(LABEL_RUN) == run_hash:
                        engine.remove(made.id)
                    return
                time.sleep(0.1)
        finally:
            fresh.close()


def _new_container(
    site: Site,
    spec: Spec,
    tag: str,
    labels: dict[str, str],
    run_hash: str,
    public_key: str,
    chosen: int,
    jupyter_port: int | None,
) -> NewContainer:
    home_volume, key_volume = volume_names(spec.engine_name)
    return NewContainer(
        image=tag,
        name=spec.container_name,
        hostname=spec.name,
        labels={**labels, LABEL_SPEC: tag.rsplit(":", 1)[1], LABEL_RUN: run_hash, LABEL_ALIAS: spec.alias},
        environment={
            **dict(spec.env),
            "DEEPBOX_AUTHORIZED_KEYS": public_key,
            "DEEPBOX_SESSION_ENV": " ".join(name for name, _ in spec.env),
            # Only that JupyterLab runs: its token, like the secrets, is handed over on the tmpfs.
            **({"DEEPBOX_JUPYTER": "1"} if spec.jupyter else {}),
        },
        ports={
            SSH_PORT: (spec.ssh_bind, chosen),
            **({JUPYTER_PORT: (spec.ssh_bind, jupyter_port or site.free_port(spec.ssh_bind))} if spec.jupyter else {}),
        },
        volumes={home_volume: spec.user.home, key_volume: "/etc/ssh/deepbox"},
        binds=tuple((str(m.host), m.box, m.read_only) for m in spec.mounts),
        # authorized_keys, the secrets and the Jupyter token live on a tmpfs: never in the container
        # layer, so never in a snapshot.
        tmpfs={"/run/deepbox": "mode=0755"},
        shm_size=spec.shm_size,
        gpus=spec.gpus,
        user_namespace=spec.user_namespace,
    )


def _host_key(engine: Engine, container: Container) -> str:
    """The box's host public key, read through the engine (authenticated, out of band)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = engine.container(container.id)
        status = current.status if current is not None else "removed"
        if status not in ("running", "created"):
            raise DeepboxError(
                f"The box stopped right after starting (state {status}); its log is above. "
                "Fix the cause, then run `deepbox up` again.",
                detail=_log_tail(engine, container),
            )
        code, output = engine.exec(container, ["cat", HOST_KEY])
        if code == 0 and output.startswith("ssh-"):
            return output.strip()
        time.sleep(0.1)
    raise DeepboxError(
        "The box did not create its SSH host key within 30 s; see its log above.",
        detail=_log_tail(engine, container),
    )


def _log_tail(engine: Engine, container: Container) -> str:
    try:
        return b"".join(engine.logs(container, follow=False, tail=30)).decode(errors="replace")
    except DeepboxError:
        return ""


def describe(spec: Spec, site: Site) -> UpResult:
    """The endpoint of this project's running box, for the IDE commands (no build, no restart)."""
    engine = site.engine()
    container = _require(engine, spec.engine_name)
    owner = container.labels.get(LABEL_PROJECT)
    if owner != str(spec.project):
        # Its key, alias and workspace are that project's: settings written here would not reach it.
        raise DeepboxError(
            f"Box '{spec.name}' belongs to {owner or 'another project'}, not to {spec.project}; run this command "
            f'there, or set name = "..." in {spec.source or "deepbox.toml"} to give this project its own box.'
        )
    if container.status != "running":
        raise DeepboxError(f"Box '{spec.name}' is not running; start it with `deepbox up`.")
    if container.ports.get(SSH_PORT) is None:
        raise DeepboxError(f"Box '{spec.name}' publishes no SSH port; run `deepbox up` to recreate it.")
    key = ssh.ensure_client_key(spec.name, spec.ssh_key)
    python_version, _ = verify(engine, container, spec, [])
    return _result(spec, site, container, "running", key, python_version, [])


def _result(
    spec: Spec,
    site: Site,
    container: Container,
    action: str,
    key: Path,
    python_version: str,
    checks: list[FrameworkCheck],
    notes: list[str] | None = None,
) -> UpResult:
    jupyter_port = container.ports.get(JUPYTER_PORT) if spec.jupyter else None
    host = site.connect_host(spec.ssh_bind)
    return UpResult(
        box=spec.name,
        alias=spec.alias,
        action=action,
        image=container.image,
        host=host,
        port=container.ports.get(SSH_PORT) or 0,
        user=spec.user.name,
        workspace=spec.workspace,
        key=str(key),
        python=f"{VENV}/bin/python",
        python_version=python_version,
        jupyter_url=f"http://{host}:{jupyter_port}/lab?token={state.jupyter_token(spec.name)}"
        if jupyter_port
        else None,
        frameworks=checks,
        notes=notes or [],
        ide_host=site.ide_host(spec.alias, spec.ssh_bind),
        jump=site.jump or "",
    )


# The other verbs ----------------------------------------------------------------------------------


def _require(engine: Engine, box: str) -> Container:
    container = engine.container(f"deepbox-{box}")
    if container is None or LABEL_BOX not in container.labels:
        raise DeepboxError(f"There is no box named '{box}'; `deepbox status` lists the boxes, `deepbox up` makes one.")
    return container


def down(box: str, site: Site, reporter: Reporter) -> bool:
    """Stop the box; returns False when it was not running. Nothing is deleted."""
    with box_lock(box, reporter):
        engine = site.engine()
        container = _require(engine, box)
        ssh.close_master(container.labels.get(LABEL_ALIAS, f"deepbox-{box}"))
        if container.status != "running":
            return False
        reporter.step(f"Stopping box '{box}'")
        engine.stop(container, timeout=10)
        return True


def rm(box: str, volumes: bool, site: Site, reporter: Reporter) -> list[str]:
    """Remove the container (and with volumes=True its volumes); mounted host folders are never touched."""
    with box_lock(box, reporter):
        engine = site.engine()
        container = engine.container(f"deepbox-{box}")
        if container is not None and LABEL_BOX not in container.labels:
            container = None  # not a deepbox container: never ours to remove
        box_volumes = engine.volumes(box) if volumes else []
        if container is None and not box_volumes:
            _require(engine, box)  # raises the "no box named" error
        alias = container.labels.get(LABEL_ALIAS, f"deepbox-{box}") if container is not None else f"deepbox-{box}"
        ssh.close_master(alias)
        removed = []
        if container is not None:
            reporter.step(f"Removing box '{box}'")
            engine.remove(container.id)
            paths.framework_checks(container.id).unlink(missing_ok=True)
            removed.append(container.name)
        for volume in box_volumes:
            engine.remove_volume(volume)
            removed.append(volume)
        if volumes:
            ssh.forget_host(alias)
        ssh.remove_host(alias)
        return removed


def status(site: Site) -> list[BoxStatus]:
    engine = site.engine()
    where = engine.info().describe()
    rows = []
    for container in engine.boxes():
        uptime = None
        if container.status == "running" and container.started_at:
            started = datetime.fromisoformat(container.started_at[:26].rstrip("Z") + "+00:00")
            uptime = max(0, int((datetime.now(UTC) - started).total_seconds()))
        rows.append(
            BoxStatus(
                box=container.labels[LABEL_BOX],
                state=container.status,
                image=container.image,
                port=container.ports.get(SSH_PORT),
                project=container.labels.get(LABEL_PROJECT, ""),
                alias=container.labels.get(LABEL_ALIAS, ""),
                uptime_seconds=uptime,
                gpus=container.gpus,
                host=site.host,
                engine=where,
            )
        )
    return sorted(rows, key=lambda row: row.box)


def snapshot(box: str, tag: str, site: Site, reporter: Reporter) -> str:
    """Commit the box to an image usable as `base = TAG`. Keys and secrets never end up in it: host keys
    and the home are volumes, authorized_keys, the secrets and the Jupyter token are on a tmpfs, and none
    of those are committed. The run-time environment (public key, the project's [env]) is blanked, since
    commit copies it."""
    engine = site.engine()
    container = _require(engine, box)
    reporter.step(f"Committing box '{box}' to {tag}")
    image = engine.image(container.image)
    image_env = set(image.env if image is not None else ())
    runtime_names = sorted({e.split("=", 1)[0] for e in container.env} - {e.split("=", 1)[0] for e in image_env})
    return engine.commit(
        container.id,
        tag,
        f"deepbox snapshot of box {box}",
        [f"LABEL deepbox.snapshot-of={box}", *(f"ENV {name}=" for name in runtime_names)],
    )


def project_of(box: str, site: Site) -> Path:
    """The project folder the box was made from (its label), for commands given a box NAME."""
    return Path(_require(site.engine(), box).labels.get(LABEL_PROJECT, ""))


def logs(box: str, follow: bool, site: Site) -> Iterator[bytes]:
    engine = site.engine()
    return engine.logs(_require(engine, box), follow=follow)
