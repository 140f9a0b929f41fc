"""Box lifecycle: up / down / rm / status / snapshot / logs. Idempotent, state kept in Docker labels.

A box is one container named `deepbox-<name>` plus two named volumes (the user's home and the SSH
host key). Images are tagged `deepbox/<name>:<spec hash>`; a changed spec builds a new image first
and only then replaces the container, so a failed build leaves the old box running.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from docker.types import DeviceRequest
from filelock import FileLock, Timeout

from deepbox import baseimage, catalog, gpu, lock, paths, remote, ssh
from deepbox.config import Spec
from deepbox.dockerfile import VENV, plan_for, render
from deepbox.engine import (
    LABEL_ALIAS,
    LABEL_BOX,
    LABEL_PROJECT,
    LABEL_RUN,
    LABEL_SPEC,
    Engine,
    PortInUseError,
)
from deepbox.errors import DeepboxError
from deepbox.fsutil import atomic_write
from deepbox.model import BoxStatus, BuildContext, FrameworkCheck, UpResult

HOST_KEY = "/etc/ssh/deepbox/ssh_host_ed25519_key.pub"
SSHD_NOTES = "/run/deepbox/notes"  # written by the box's sshd-config.sh
READY_TIMEOUT = 90.0
BOOTSTRAP_HINT = "deepbox base bootstrap --tag {tag}"


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
    lock = FileLock(paths.locks_dir() / f"{box}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        reporter.step(f"Waiting for another deepbox command on box '{box}' to finish")
        try:
            lock.acquire(timeout=1800)
        except Timeout as exc:
            raise DeepboxError(
                f"Another deepbox command has held box '{box}' for 30 minutes; let it finish or stop it."
            ) from exc
    try:
        yield
    finally:
        lock.release()


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
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def connect_host(spec: Spec) -> str:
    """Where ssh connects: for a box on a server, the server's own loopback (reached through the jump)."""
    if spec.host:
        return "127.0.0.1"
    return "127.0.0.1" if spec.ssh_bind in ("", "0.0.0.0", "127.0.0.1") else spec.ssh_bind  # noqa: S104


def published_port(container: Any, box_port: str = "22/tcp") -> int | None:
    bindings = (container.attrs.get("HostConfig", {}).get("PortBindings") or {}).get(box_port) or []
    for binding in bindings:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def free_port(bind: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((bind or "127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_server_port(engine: Engine) -> int:
    """A port no container on the server's engine publishes; a clash with another program there is
    caught when the container starts, and `up` then tries another one."""
    used = engine.published_ports()
    candidates = [port for port in range(20000, 61000) if port not in used]
    return secrets.choice(candidates)


def port_is_free(bind: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((bind or "127.0.0.1", port))
        except OSError:
            return False
        return True


# up ---------------------------------------------------------------------------------------------


def up(spec: Spec, reporter: Reporter, *, frozen: bool = False) -> UpResult:
    """Bring the box up from its lock (locking first when the lock is missing or stale, unless frozen)."""
    with box_lock(spec.name, reporter):
        return _up(spec, reporter, frozen)


def _up(spec: Spec, reporter: Reporter, frozen: bool) -> UpResult:
    # Unknown, refused or conflicting frameworks fail here, before any Docker call; versions, Python
    # and CUDA are checked against what the base image has, once it is read.
    catalog.check_names(spec.framework_names)
    key = ssh.ensure_client_key(spec.name, spec.ssh_key)
    engine = Engine(spec.host)
    existing = engine.container(spec.container_name)
    if existing is not None and existing.labels.get(LABEL_PROJECT) != str(spec.project):
        raise DeepboxError(
            f"A box named '{spec.name}' already belongs to {existing.labels.get(LABEL_PROJECT, 'another project')}; "
            f'set name = "..." in {spec.source or "deepbox.toml"} to give this project its own box.'
        )
    _ensure_base(engine, spec.base, reporter)
    facts = baseimage.facts(engine, spec.base)
    gpus = gpu.host_gpus(spec.host) if spec.device == "cuda" else None
    locked = lock.ensure(spec, facts, reporter, gpus=gpus, frozen=frozen)
    plan = plan_for(spec, facts, cuda_major=locked.cuda_major) if locked.cuda_major else plan_for(spec, facts)
    frameworks = plan.frameworks
    context = render(spec, plan, facts, locked)

    tag = image_tag(spec, context)
    if engine.image(tag) is None:
        reporter.step(f"Building image {tag}")
        labels = {LABEL_BOX: spec.engine_name, LABEL_PROJECT: str(spec.project), LABEL_SPEC: context.spec_hash}
        engine.build(context, tag, labels, spec.build_network, reporter.build_line)

    public_key = ssh.public_key(key)
    # A recreated box keeps its ports, so IDE settings and bookmarks stay valid.
    port = spec.ssh_port or (published_port(existing) if existing is not None else None) or 0
    jupyter_port = published_port(existing, "8888/tcp") if existing is not None else None
    action = "running"
    if existing is not None and existing.labels.get(LABEL_RUN) == _run_hash(spec, tag, public_key):
        if existing.status != "running":
            reporter.step(f"Starting box '{spec.name}'")
            engine.start(existing)
            action = "started"
        container = existing
    else:
        if existing is not None:
            reporter.step(f"Replacing box '{spec.name}' (its settings changed; volumes are kept)")
            existing.remove(force=True)
            paths.framework_checks(existing.id).unlink(missing_ok=True)
            ssh.close_master(spec.alias)
            superseded = existing.attrs.get("Config", {}).get("Image", "")
            if superseded != tag and superseded.startswith(f"deepbox/{spec.engine_name}:"):
                engine.untag(superseded)  # old images would otherwise pile up with every change
        action = "recreated" if existing is not None else "created"
        container = _create(engine, spec, tag, public_key, port, jupyter_port, reporter)

    try:
        port = published_port(container) or port
        jump = remote.parse(spec.host).jump if spec.host else None
        endpoint = ssh.Endpoint(spec.alias, connect_host(spec), port, spec.user.name, key, jump)
        host_key, notes = _host_key(engine, container)
        for note in notes:
            reporter.step(f"Note: {note}")
        ssh.pin_host_key(spec.alias, host_key)
        ssh.write_host(endpoint)
        # The framework check goes through the Docker API, not SSH: run it while SSH comes up.
        reporter.step(f"Waiting for SSH on {endpoint.host}:{port} and checking frameworks inside the box")
        with ThreadPoolExecutor(max_workers=1) as pool:
            checking = pool.submit(verify, engine, container, spec, frameworks)
            try:
                ssh.probe(spec.alias, READY_TIMEOUT)
            except DeepboxError as exc:
                checking.cancel()
                exc.detail = _log_tail(engine, container)
                raise
            python_version, checks = checking.result()
    except BaseException:
        if action in ("created", "recreated"):
            _discard(spec, container)
        raise
    if spec.host:
        remember_host(spec.host)
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
    result = _result(spec, container, action, key, python_version, checks, notes)
    result.lock = locked.key
    result.cuda = locked.cuda
    return result


def lock_packages(spec: Spec, reporter: Reporter, upgrade: tuple[str, ...] | bool = False) -> lock.Variant:
    """`deepbox lock`: resolve (or keep, when fresh) the variant this box would be built from here."""
    catalog.check_names(spec.framework_names)
    engine = Engine(spec.host)
    _ensure_base(engine, spec.base, reporter)
    facts = baseimage.facts(engine, spec.base)
    gpus = gpu.host_gpus(spec.host) if spec.device == "cuda" else None
    return lock.ensure(spec, facts, reporter, gpus=gpus, upgrade=upgrade)


def _warn_unwritable_mounts(spec: Spec, reporter: Reporter) -> None:
    if spec.user.uid == 0:
        return  # a root box user writes everywhere
    for mount in spec.mounts:
        if mount.read_only or not mount.host.exists():
            continue
        info = mount.host.stat()
        if info.st_uid != spec.user.uid and not info.st_mode & 0o002:
            reporter.step(
                f"Note: the box user {spec.user.name} (UID {spec.user.uid}) cannot write to {mount.host}, which "
                f"UID {info.st_uid} owns: run `chown -R {spec.user.uid}:{spec.user.gid} {mount.host}` or set "
                "[user] uid."
            )


def _ensure_base(engine: Engine, base: str, reporter: Reporter) -> None:
    if engine.image(base) is not None:
        return
    reporter.step(f"Pulling base image {base}")
    try:
        engine.pull(base)
    except DeepboxError as exc:
        raise DeepboxError(
            f"Base image '{base}' is not on this engine and cannot be pulled ({exc.message.rstrip('.')}); "
            f"on a host without a registry build one with `{BOOTSTRAP_HINT.format(tag=base)}`, or set "
            "base in deepbox.toml to an image you have."
        ) from exc


def _create(
    engine: Engine, spec: Spec, tag: str, public_key: str, port: int, jupyter_port: int | None, reporter: Reporter
) -> Any:
    home_volume, key_volume = volume_names(spec.engine_name)
    labels = {LABEL_BOX: spec.engine_name, LABEL_PROJECT: str(spec.project)}
    engine.volume_ensure(home_volume, labels)
    engine.volume_ensure(key_volume, labels)
    if spec.host:
        # Made by the server user, so the box user (the same UID) can write to them.
        remote.make_folders(remote.parse(spec.host), [str(mount.host) for mount in spec.mounts])
    else:
        for mount in spec.mounts:
            if not mount.host.exists():
                mount.host.mkdir(parents=True)
                if os.geteuid() == 0:  # a folder deepbox makes for the box belongs to the box user
                    os.chown(mount.host, spec.user.uid, spec.user.gid)
        _warn_unwritable_mounts(spec, reporter)
        if spec.ssh_port and not port_is_free(spec.ssh_bind, spec.ssh_port):
            raise _port_taken(spec, spec.ssh_port)

    for attempt in range(3):
        chosen = port or (free_server_port(engine) if spec.host else free_port(spec.ssh_bind))
        run_hash = _run_hash(spec, tag, public_key)
        try:
            container = _create_container(engine, spec, tag, labels, run_hash, public_key, chosen, jupyter_port)
        except BaseException:
            _remove_half_created(spec, run_hash)
            raise
        try:
            where = f"{spec.host} (its 127.0.0.1:{chosen})" if spec.host else f"{connect_host(spec)}:{chosen}"
            reporter.step(f"Starting box '{spec.name}' on {where}")
            engine.start(container)
            return container
        except PortInUseError:
            container.remove(force=True)
            if spec.ssh_port or attempt == 2:
                raise _port_taken(spec, chosen) from None
        except BaseException:
            container.remove(force=True)
            raise
    raise AssertionError("unreachable")


def _discard(spec: Spec, container: Any) -> None:
    """Remove a box that never became ready. If Ctrl-C broke the client's connection mid-request,
    a fresh client does it."""
    try:
        container.remove(force=True)
    except Exception:
        with contextlib.suppress(Exception):
            Engine(spec.host).client.containers.get(container.id).remove(force=True)


def _remove_half_created(spec: Spec, run_hash: str) -> None:
    """Create was interrupted (Ctrl-C) while the engine still worked on it: the engine finishes on its
    own, so look for the container for a moment and remove it. A fresh client, since the interrupted
    one may hold an unread answer on its connection."""
    with contextlib.suppress(Exception):
        engine = Engine(spec.host)
        for _ in range(30):
            made = engine.container(spec.container_name)
            if made is not None:
                if made.labels.get(LABEL_RUN) == run_hash:
                    made.remove(force=True)
                return
            time.sleep(0.1)


def _create_container(
    engine: Engine,
    spec: Spec,
    tag: str,
    labels: dict[str, str],
    run_hash: str,
    public_key: str,
    chosen: int,
    jupyter_port: int | None,
) -> Any:
    home_volume, key_volume = volume_names(spec.engine_name)
    return engine.create(
        image=tag,
        name=spec.container_name,
        hostname=spec.name,
        detach=True,
        init=True,
        restart_policy={"Name": "unless-stopped"},
        shm_size=spec.shm_size,
        labels={
            **labels,
            LABEL_SPEC: tag.rsplit(":", 1)[1],
            LABEL_RUN: run_hash,
            LABEL_ALIAS: spec.alias,
        },
        environment={
            **dict(spec.env),
            "DEEPBOX_AUTHORIZED_KEYS": public_key,
            "DEEPBOX_SESSION_ENV": " ".join(name for name, _ in spec.env),
            **({"DEEPBOX_JUPYTER_TOKEN": jupyter_token(spec.name)} if spec.jupyter else {}),
        },
        ports={
            "22/tcp": (spec.ssh_bind, chosen),
            **({"8888/tcp": (spec.ssh_bind, jupyter_port or free_port(spec.ssh_bind))} if spec.jupyter else {}),
        },
        volumes={
            home_volume: {"bind": spec.user.home, "mode": "rw"},
            key_volume: {"bind": "/etc/ssh/deepbox", "mode": "rw"},
            **{str(m.host): {"bind": m.box, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts},
        },
        # authorized_keys lives on a tmpfs: never in the container layer, so never in a snapshot.
        tmpfs={"/run/deepbox": "mode=0755"},
        **({"device_requests": [DeviceRequest(**r) for r in spec.gpus.docker()]} if spec.gpus.wanted else {}),
    )


def _port_taken(spec: Spec, port: int) -> DeepboxError:
    if spec.host:
        return DeepboxError(
            f"Port {port} on the server {spec.host} is already in use by another program; set ssh.port to 0 "
            f"in {spec.source or 'deepbox.toml'} to let deepbox pick a free one there."
        )
    return DeepboxError(
        f"Port {port} on {spec.ssh_bind} is already in use; set ssh.port to a free one "
        f"(for example {free_port(spec.ssh_bind)}) or to 0 to pick one automatically in "
        f"{spec.source or 'deepbox.toml'}."
    )


def _host_key(engine: Engine, container: Any) -> tuple[str, list[str]]:
    """The box's host public key, read through the Docker API (authenticated, out of band), and the
    notes the box wrote on choices its OpenSSH forced (they exist once its sshd_config does)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        container.reload()
        if container.status not in ("running", "created"):
            raise DeepboxError(
                f"The box stopped right after starting (state {container.status}); its log is below. "
                "Fix the cause, then run `deepbox up` again.",
                detail=_log_tail(engine, container),
            )
        code, output = engine.exec(container, ["cat", SSHD_NOTES, HOST_KEY])
        lines = output.strip().splitlines()
        if code == 0 and lines and lines[-1].startswith("ssh-"):
            return lines[-1], lines[:-1]
        time.sleep(0.2)
    raise DeepboxError(
        "The box did not create its SSH host key within 30 s; see its log below.",
        detail=_log_tail(engine, container),
    )


def _log_tail(engine: Engine, container: Any) -> str:
    try:
        return b"".join(engine.logs(container, follow=False, tail=30)).decode(errors="replace")
    except DeepboxError:
        return ""


# Runs inside the box. The fingerprint covers every directory on sys.path (entry names and mtimes),
# so a `pip install` or uninstall in the box changes it; with an unchanged fingerprint the last
# passing result is reused instead of importing every framework again (seconds for the big ones).
_VERIFY = """
import hashlib, importlib, json, os, platform, sys
checks, previous = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def fingerprint():
    digest = hashlib.sha256(platform.python_version().encode())
    for folder in sys.path:
        if not folder:
            continue  # the working directory ("/" here), whose /dev, /run, /tmp change on every start
        try:
            entries = sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(folder))
        except OSError:
            continue
        digest.update(json.dumps([folder, entries]).encode())
    return digest.hexdigest()
if previous and previous["fingerprint"] == fingerprint() and checks == previous["request"]:
    print(json.dumps(dict(previous, cached=True)))
    sys.exit(0)
results = []
for check in checks:
    try:
        m = importlib.import_module(check["module"])
        seen = eval(check["gpu"], {"m": m}) if check["gpu"] else None
        count = int(seen) if isinstance(seen, int) and not isinstance(seen, bool) else None
        gpu = None if seen is None else bool(seen)
        version = str(getattr(m, "__version__", ""))
        results.append(dict(check, ok=True, version=version, gpu=gpu, gpu_count=count, error=""))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        results.append(dict(check, ok=False, version="", gpu=None, gpu_count=None, error=error))
# Taken after the imports: a first import writes __pycache__ folders, which must not count as a change.
print(json.dumps({"python": platform.python_version(), "checks": results, "request": checks,
                  "fingerprint": fingerprint(), "cached": False}))
"""


def verify(
    engine: Engine, container: Any, spec: Spec, frameworks: list[catalog.Framework]
) -> tuple[str, list[FrameworkCheck]]:
    """Import every framework inside the box as the box user; report versions and GPU visibility.

    Returns the box's Python version and one check per framework."""
    checks = [{"name": fw.name, "module": fw.module, "gpu": fw.gpu_check} for fw in frameworks]
    # A GPU can come or go between starts (driver, runtime): on a cuda box every check runs afresh.
    cache = paths.framework_checks(container.id) if spec.device != "cuda" else None
    previous = _read_json(cache) if cache is not None else None
    code, output = engine.exec(
        container,
        [f"{VENV}/bin/python", "-c", _VERIFY, json.dumps(checks), json.dumps(previous)],
        user=spec.user.name,
    )
    try:
        report = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise DeepboxError(
            f"The framework check could not run in the box (exit {code}): {output.strip()[-300:]}."
        ) from exc
    if cache is not None and not report.get("cached") and all(row["ok"] for row in report["checks"]):
        atomic_write(cache, json.dumps(report), mode=0o600)
    fields = ("name", "module", "ok", "version", "gpu", "gpu_count", "error")
    checks_out = [FrameworkCheck(**{k: row.get(k) for k in fields if k in row}) for row in report["checks"]]
    return report["python"], checks_out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # no usable earlier result: check afresh


def describe(spec: Spec) -> UpResult:
    """The endpoint of this project's running box, for the IDE commands (no build, no restart)."""
    engine = Engine(spec.host)
    container = _require(engine, spec.engine_name)
    if container.status != "running":
        raise DeepboxError(f"Box '{spec.name}' is not running; start it with `deepbox up`.")
    port = published_port(container)
    if port is None:
        raise DeepboxError(f"Box '{spec.name}' publishes no SSH port; run `deepbox up` to recreate it.")
    key = ssh.ensure_client_key(spec.name, spec.ssh_key)
    python_version, _ = verify(engine, container, spec, [])
    return _result(spec, container, "running", key, python_version, [])


def _result(
    spec: Spec,
    container: Any,
    action: str,
    key: Path,
    python_version: str,
    checks: list[FrameworkCheck],
    notes: list[str] | None = None,
) -> UpResult:
    jupyter_port = published_port(container, "8888/tcp") if spec.jupyter else None
    return UpResult(
        box=spec.name,
        alias=spec.alias,
        action=action,
        image=container.attrs.get("Config", {}).get("Image", ""),
        host=connect_host(spec),
        port=published_port(container) or 0,
        user=spec.user.name,
        workspace=spec.workspace,
        key=str(key),
        python=f"{VENV}/bin/python",
        python_version=python_version,
        jupyter_url=(
            f"http://{connect_host(spec)}:{jupyter_port}/lab?token={jupyter_token(spec.name)}" if jupyter_port else None
        ),
        frameworks=checks,
        notes=notes or [],
    )


def jupyter_token(box: str) -> str:
    """The box's JupyterLab token: random, made once, kept 0600 in deepbox's data folder."""
    path = paths.jupyter_token(box)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, secrets.token_urlsafe(32), 0o600)
    return path.read_text().strip()


# The other verbs ----------------------------------------------------------------------------------


def _require(engine: Engine, box: str) -> Any:
    container = engine.container(f"deepbox-{box}")
    if container is None or LABEL_BOX not in container.labels:
        raise DeepboxError(f"There is no box named '{box}'; `deepbox status` lists the boxes, `deepbox up` makes one.")
    return container


def down(box: str, reporter: Reporter, host: str = "") -> bool:
    """Stop the box; returns False when it was not running. Nothing is deleted."""
    with box_lock(box, reporter):
        engine = Engine(host)
        container = _require(engine, box)
        ssh.close_master(container.labels.get(LABEL_ALIAS, f"deepbox-{box}"))
        if container.status != "running":
            return False
        reporter.step(f"Stopping box '{box}'")
        container.stop(timeout=10)
        return True


def rm(box: str, volumes: bool, reporter: Reporter, host: str = "") -> list[str]:
    """Remove the container (and with volumes=True its volumes); mounted host folders are never touched."""
    with box_lock(box, reporter):
        engine = Engine(host)
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
            container.remove(force=True)
            paths.framework_checks(container.id).unlink(missing_ok=True)
            removed.append(container.name)
        for volume in box_volumes:
            volume.remove(force=True)
            removed.append(volume.name)
        if volumes:
            ssh.forget_host(alias)
        ssh.remove_host(alias)
        return removed


def remember_host(host: str) -> None:
    known = known_hosts()
    if host not in known:
        atomic_write(paths.remote_hosts(), json.dumps(sorted([*known, host]), indent=1) + "\n")


def known_hosts() -> list[str]:
    """The servers boxes were brought up on from this machine."""
    hosts = _read_json(paths.remote_hosts())
    return [h for h in hosts if isinstance(h, str)] if isinstance(hosts, list) else []


def status(host: str = "") -> list[BoxStatus]:
    engine = Engine(host)
    rows = []
    for container in engine.boxes():
        state = container.attrs.get("State", {})
        uptime = None
        if container.status == "running" and state.get("StartedAt"):
            started = datetime.fromisoformat(state["StartedAt"][:26].rstrip("Z") + "+00:00")
            uptime = max(0, int((datetime.now(UTC) - started).total_seconds()))
        tags = container.attrs.get("Config", {}).get("Image", "")
        rows.append(
            BoxStatus(
                box=container.labels[LABEL_BOX],
                state=container.status,
                image=tags,
                port=published_port(container),
                project=container.labels.get(LABEL_PROJECT, ""),
                alias=container.labels.get(LABEL_ALIAS, ""),
                uptime_seconds=uptime,
                gpus=held_gpus(container.attrs),
                host=host,
            )
        )
    return sorted(rows, key=lambda row: row.box)


def held_gpus(attrs: dict[str, Any]) -> str:
    """The GPUs a container asked for, from its DeviceRequests: "all", a count, or the ids."""
    held: list[str] = []
    for request in attrs.get("HostConfig", {}).get("DeviceRequests") or []:
        if not any("gpu" in caps for caps in request.get("Capabilities") or []):
            continue
        if request.get("DeviceIDs"):
            held += request["DeviceIDs"]
        elif request.get("Count") == -1:
            return "all"
        elif request.get("Count"):
            held.append(str(request["Count"]))
    return ",".join(held)


def snapshot(box: str, tag: str, reporter: Reporter, host: str = "") -> str:
    """Commit the box to an image usable as `base = TAG`. Keys never end up in it: host keys and the
    home are volumes, authorized_keys is on a tmpfs, and none of those are committed. The run-time
    environment (public key, Jupyter token, the project's [env]) is blanked, since commit copies it."""
    engine = Engine(host)
    container = _require(engine, box)
    reporter.step(f"Committing box '{box}' to {tag}")
    repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
    image_env = set(container.image.attrs.get("Config", {}).get("Env") or [])
    runtime_names = sorted(
        {entry.split("=", 1)[0] for entry in container.attrs.get("Config", {}).get("Env") or []}
        - {entry.split("=", 1)[0] for entry in image_env}
    )
    try:
        image = container.commit(
            repository=repository,
            tag=version,
            message=f"deepbox snapshot of box {box}",
            changes=[f"LABEL deepbox.snapshot-of={box}", *(f"ENV {name}=" for name in runtime_names)],
        )
    except Exception as exc:
        raise DeepboxError(f"Docker could not commit box '{box}' to {tag}: {exc}.") from exc
    return str(image.id)


def logs(box: str, follow: bool, host: str = "") -> Iterator[bytes]:
    engine = Engine(host)
    return engine.logs(_require(engine, box), follow=follow)
