"""Box lifecycle: up / down / rm / status / snapshot / logs / exec. Idempotent, state kept in engine labels.

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
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from deepbox import baseimage, boxsecrets, catalog, drift, gpu, lock, paths, progress, slurm, ssh, state
from deepbox.config import BoxPort, Spec
from deepbox.dockerfile import VENV, plan_for, render
from deepbox.engine import (
    LABEL_ALIAS,
    LABEL_BOX,
    LABEL_OWNER,
    LABEL_PROJECT,
    LABEL_RUN,
    LABEL_SPEC,
    BuildKitUnavailable,
    Container,
    Engine,
    EngineWentAway,
    Image,
    NewContainer,
    PortInUseError,
    RegistryUnreachable,
    buildlog,
)
from deepbox.errors import DeepboxError
from deepbox.fsutil import atomic_write, file_lock
from deepbox.model import BoxStatus, BuildContext, BuildEvent, FrameworkCheck, ReachedPort, UpResult
from deepbox.profile import PROFILE_VERSION, box_profile
from deepbox.site import Site, site_for
from deepbox.verify import verify

HOST_KEY = "/etc/ssh/deepbox/ssh_host_ed25519_key.pub"
SSHD_NOTES = "/run/deepbox/notes"  # written by the box's sshd-config.sh
JUPYTER_TOKEN_FILE = "/run/deepbox/jupyter-token"  # noqa: S105 - a path, read by the box's deepbox-jupyter
READY_TIMEOUT = 90.0
# How a box ends when it is stopped rather than failing: sshd exits 0 on SIGTERM; a shell still in the
# entrypoint dies of the signal (128 + 15, or 128 + 9 after the stop's grace).
STOPPED_FROM_OUTSIDE = (0, 143, 137)
BOOTSTRAP_HINT = "deepbox base bootstrap --tag {tag}"
SSH_PORT, JUPYTER_PORT = "22/tcp", "8888/tcp"
# What the box's sshd hands to every login session (assets/sshd-config.sh), besides DEEPBOX_SESSION_ENV's names.
SESSION_ENV = ("PATH", "VIRTUAL_ENV", "LANG", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
STTY_SIZE = 'stty rows "$1" cols "$2" 2>/dev/null; shift 2; exec "$@"'
LABEL_PORTS = "deepbox.ports"  # the box ports `ports` publishes: "6006,8501"
LABEL_IMAGE_SOURCE = "deepbox.image-source"  # how the box's image came to this engine: built | pulled
LABEL_BASE = "deepbox.base"  # the base image a box image was built on, by digest when a registry gave it


class Reporter(Protocol):
    def step(self, message: str) -> None: ...
    def build_line(self, line: str) -> None: ...
    def build_progress(self) -> contextlib.AbstractContextManager[Callable[[BuildEvent], None]]: ...


def image_tag(spec: Spec, context: BuildContext) -> str:
    return f"deepbox/{spec.engine_name}:{context.spec_hash}"


def registry_ref(registry: str, box: str, spec_hash: str) -> str:
    """Where a box image is shared: the same settings and lock give the same name on every machine."""
    return f"{registry.rstrip('/')}/{box}:{spec_hash}"


def pinned_base(base: str, image: Image | None) -> str:
    """The base image by digest ("python@sha256:...") when a registry gave it; else its name as written."""
    if image is None or not image.digests or "@" in base:
        return base
    last = base.rsplit("/", 1)[-1]
    repository = base.rsplit(":", 1)[0] if ":" in last else base
    named = [digest for digest in image.digests if digest.split("@")[0] in (repository, f"docker.io/{repository}")]
    return (named or list(image.digests))[0]


def volume_names(box: str) -> tuple[str, str]:
    return f"deepbox-{box}-home", f"deepbox-{box}-hostkeys"


@contextlib.contextmanager
def box_lock(box: str, reporter: Reporter) -> Iterator[None]:
    """One `up`/`down`/`rm` per box at a time; a second waits and then finds the first's result."""
    with file_lock(
        paths.locks_dir() / f"{box}.lock",
        timeout=1800,
        waiting=lambda: reporter.step(f"Waiting for another deepbox command on box '{box}' to finish"),
        held_too_long=f"Another deepbox command has held box '{box}' for 30 minutes; let it finish or stop it.",
    ):
        yield


def _tcp(box_port: int) -> str:
    return f"{box_port}/tcp"


def _run_hash(spec: Spec, image: str, public_key: str, forwards_ports: bool = False) -> str:
    """Hash of the container's settings: a change recreates the container (not the image). A server
    box's `ports` are its ssh alias's forwards (forwards_ports), not the container's: changing them
    recreates nothing."""
    published = [[port.box, port.host] for port in spec.ports] if not forwards_ports else []
    material = json.dumps(
        {
            "image": image,
            "port": [spec.ssh_bind, spec.ssh_port],
            "mounts": [[str(m.host), m.box, m.read_only] for m in spec.mounts],
            "env": spec.env,
            "shm": spec.shm_size,
            "key": public_key,
            "jupyter": spec.jupyter,
            # A box made before its profile was tightened is made again with it.
            "profile": PROFILE_VERSION,
            **({"gpus": [spec.gpus.count, list(spec.gpus.device_ids)]} if spec.gpus.wanted else {}),
            **({"userns": spec.user_namespace} if spec.user_namespace else {}),
            **({"ports": published} if published else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def choose_host_ports(
    wanted: tuple[BoxPort, ...],
    previous: dict[int, int],
    is_free: Callable[[int], bool],
    free_port: Callable[[], int],
    avoid: set[int],
) -> dict[int, int]:
    """Box port -> host port: the fixed one; else the one it had before (a recreated box keeps its
    URLs); else the box port's own number when free (http://127.0.0.1:6006 for TensorBoard); else a free
    one. `avoid`: host ports the box uses for something else."""
    taken = set(avoid) | {port.host for port in wanted if port.host}
    chosen = {}
    for port in wanted:
        pick = port.host or previous.get(port.box, 0)
        if not port.host and (not pick or pick in taken):
            pick = port.box if port.box not in taken and is_free(port.box) else free_port()
            while pick in taken:
                pick = free_port()
        taken.add(pick)
        chosen[port.box] = pick
    return chosen


def fixed_port_taken(spec: Spec, site: Site, port: BoxPort, bind: str) -> DeepboxError:
    """A "HOST:BOX" entry of `ports` whose host port another program holds."""
    return DeepboxError(
        f"Port {port.host} on {bind}, where ports in {spec.source or 'deepbox.toml'} puts box port {port.box}, is "
        f"already in use by {site.port_holder(port.host)}; stop that program, or change {port.written} there to "
        f'another host port (for example "{site.free_port(bind)}:{port.box}") or to {port.box} to let deepbox pick one.'
    )


def previous_ports(spec: Spec, site: Site, container: Container | None) -> dict[int, int]:
    """Box port -> host port the box has now: what its container publishes, or a server box's forwards."""
    if site.forwards_ports:
        return ssh.forwards(spec.alias)
    return {int(box_port.split("/")[0]): host for box_port, host in container.ports.items()} if container else {}


def fixed_port_error(spec: Spec, site: Site, previous: dict[int, int]) -> DeepboxError | None:
    """A fixed host port of `ports` ("8501:8501") that another program holds, where the box's ports are
    reached (see Site.port_site); None when each is free or the box's own already."""
    here = site.port_site()
    bind = "127.0.0.1" if site.forwards_ports else spec.ssh_bind
    for port in spec.ports:
        if port.host and previous.get(port.box) != port.host and not here.port_is_free(bind, port.host):
            return fixed_port_taken(spec, here, port, bind)
    return None


def host_ports(spec: Spec, site: Site, previous: dict[int, int], avoid: set[int], reporter: Reporter) -> dict[int, int]:
    """The host ports of the box's `ports` where they are reached (see Site.port_site): a fixed one that
    another program holds is refused, and a box port that could not keep its own number is noted."""
    error = fixed_port_error(spec, site, previous)
    if error is not None:
        raise error
    here = site.port_site()
    bind = "127.0.0.1" if site.forwards_ports else spec.ssh_bind
    chosen = choose_host_ports(
        spec.ports, previous, lambda number: here.port_is_free(bind, number), lambda: here.free_port(bind), avoid
    )
    for box_port, host_port in chosen.items():
        if host_port != box_port and previous.get(box_port) != host_port:
            holder = here.port_holder(box_port) if not here.port_is_free(bind, box_port) else "this box"
            where = "forwarded from" if site.forwards_ports else "published on"
            reporter.step(
                f"Note: box port {box_port} is {where} {bind}:{host_port}, since {box_port} is taken by {holder}"
            )
    return chosen


# up ---------------------------------------------------------------------------------------------


def up(
    spec: Spec, site: Site, reporter: Reporter, *, frozen: bool = False, new_port: bool = False, check: bool = False
) -> UpResult:
    """Bring the box up from its lock (locking first when the lock is missing or stale, unless frozen).
    new_port: recreate the box on free ports (another program took its own while it was stopped).
    check: log in, hand over the secrets and import the frameworks in the box even when an earlier `up` did
    so with the same settings, host key and secrets."""
    if new_port and spec.ssh_port:
        raise DeepboxError(
            f"ssh.port = {spec.ssh_port} in {spec.source or 'deepbox.toml'} fixes the box's port, so `up --new-port` "
            "cannot move it; set ssh.port to another port there, or to 0 to let deepbox pick a free one."
        )
    with box_lock(spec.name, reporter):
        try:
            return _up(spec, site, reporter, frozen, new_port, check)
        except BaseException:
            site.abandon()  # a Slurm job this `up` submitted: cancelled
            raise


def _prepare(spec: Spec, site: Site, reporter: Reporter, **locking: object) -> tuple[baseimage.BaseFacts, lock.Variant]:
    """The base image (pulled when missing), what it has, and the lock variant this host builds from."""
    engine = site.engine()
    facts = baseimage.facts(engine, spec.base, _ensure_base(engine, spec.base, reporter))
    gpus = gpu.parse_nvidia_smi(smi) if spec.device == "cuda" and (smi := site.nvidia_smi()) is not None else None
    return facts, lock.ensure(spec, facts, reporter, gpus=gpus, **locking)  # type: ignore[arg-type]


def build_image(
    engine: Engine,
    spec: Spec,
    context: BuildContext,
    tag: str,
    labels: dict[str, str],
    reporter: Reporter,
    classic: Callable[[], BuildContext],
) -> None:
    """Build the box image; when the engine refuses BuildKit, again with the classic builder from the
    Dockerfile without cache mounts (`classic`): the same image, under the same tag."""
    try:
        _build(engine, spec, context, tag, labels, reporter)
    except BuildKitUnavailable as refused:
        reporter.step(f"Note: {refused.message} Building with the classic builder (no download caches).")
        _build(engine, spec, classic(), tag, labels, reporter)


def _build(
    engine: Engine, spec: Spec, context: BuildContext, tag: str, labels: dict[str, str], reporter: Reporter
) -> None:
    """Build the box image with live progress, the whole log kept in a file that a failure names."""
    builder = "BuildKit" if context.buildkit else "the classic builder"
    log = paths.build_log(spec.engine_name)
    # The engine went away during this box's last build: its cache may hold a step it never finished.
    interrupted = log.with_name(f"{log.name}.interrupted")
    fresh = interrupted.exists()
    reporter.step(f"Building image {tag} with {builder} (log: {log})")
    if fresh:
        reporter.step("Note: the engine went away during the last build; building without its cache this once")
    try:
        with reporter.build_progress() as show, progress.logged(log, show) as on_event:
            engine.build(context, tag, labels, spec.build_network, on_event, no_cache=fresh)
    except buildlog.BuildFailed as failed:
        raise buildlog.failure(failed.step, failed.error, failed.tail, log) from failed
    except EngineWentAway:
        interrupted.touch()
        raise
    interrupted.unlink(missing_ok=True)


def _check_settings(spec: Spec) -> None:
    """What the settings alone can get wrong, checked before any engine call (doctor makes each check
    on its own, to report them all)."""
    catalog.check_names(spec.framework_names)
    baseimage.check_reference(spec.base, str(spec.source or "deepbox.toml"))


def _up(spec: Spec, site: Site, reporter: Reporter, frozen: bool, new_port: bool, check: bool) -> UpResult:
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
    spec = site.start(spec, reporter)  # a Slurm cluster: the box's job, running, and the GPUs it was given
    engine = site.engine()
    existing = engine.container(spec.container_name)
    if existing is not None:
        _check_owner(existing, spec.engine_name, spec.server_user)
    if existing is not None and existing.labels.get(LABEL_PROJECT) != str(spec.project):
        raise DeepboxError(
            f"A box named '{spec.name}' already belongs to {existing.labels.get(LABEL_PROJECT, 'another project')}; "
            f'set name = "..." in {spec.source or "deepbox.toml"} to give this project its own box.'
        )
    facts, locked = _prepare(spec, site, reporter, frozen=frozen)
    plan = plan_for(spec, facts, cuda_major=locked.cuda_major)
    context = render(spec, plan, facts, locked, buildkit=engine.builder() == "buildkit")

    tag = image_tag(spec, context)
    image_source = _obtain_image(engine, spec, context, tag, reporter, lambda: render(spec, plan, facts, locked))

    public_key = ssh.public_key(key)
    # A recreated box keeps its ports, so IDE settings and bookmarks stay valid (unless asked to move).
    kept = existing if existing is not None and not new_port else None
    port = spec.ssh_port or (kept.ports.get(SSH_PORT) if kept is not None else None) or 0
    jupyter_port = kept.ports.get(JUPYTER_PORT) if kept is not None else None
    action = "running"
    # A fixed host port another program holds: refused before the box is touched.
    taken = fixed_port_error(spec, site, previous_ports(spec, site, existing))
    if taken is not None:
        raise taken
    forwards: tuple[tuple[int, int], ...] = ()
    if site.forwards_ports and spec.ports:
        if new_port:
            ssh.close_master(spec.alias)  # its forwards would hold the ports on this machine
        previous = previous_ports(spec, site, None) if not new_port else {}
        forwards = tuple(
            (local, box_port) for box_port, local in host_ports(spec, site, previous, set(), reporter).items()
        )
    if kept is not None and kept.labels.get(LABEL_RUN) == _run_hash(spec, tag, public_key, site.forwards_ports):
        if kept.status != "running":
            # The engine's start is a few hundred ms of waiting: the step is printed meanwhile.
            with ThreadPoolExecutor(max_workers=1) as pool:
                starting = pool.submit(engine.start, kept)
                reporter.step(f"Starting box '{spec.name}'")
                try:
                    starting.result()
                except PortInUseError as exc:
                    raise port_clash(spec, site, kept, str(exc)) from None
            action = "started"
            # Read again: its start time is what a later `up` compares with what this one checks.
            kept = engine.container(kept.id) or kept
        container = kept
    else:
        if existing is not None:
            # A port the new container would take that another program holds: refused while the old box
            # is still whole (removing it first would leave no box at all).
            clash = _taken_before_recreate(spec, site, existing, kept)
            if clash is not None:
                raise clash
            why = "to free ports" if new_port else "its settings changed"
            reporter.step(f"Replacing box '{spec.name}' ({why}; volumes are kept)")
            engine.remove(existing.id)
            _forget_checks(existing.id)
            ssh.close_master(spec.alias)
            if existing.image != tag and existing.image.startswith(f"deepbox/{spec.engine_name}:"):
                engine.untag(existing.image)  # old images would otherwise pile up with every change
        action = "recreated" if existing is not None else "created"
        previous = previous_ports(spec, site, kept)
        container = _create(engine, site, spec, tag, public_key, port, jupyter_port, previous, reporter, image_source)

    try:
        port = container.ports.get(SSH_PORT) or port
        endpoint = ssh.Endpoint(
            spec.alias, site.connect_host(spec.ssh_bind), port, spec.user.name, key, site.jump, forwards
        )
        # A kept box (same container settings, same host-key volume) is reached with the key pinned before:
        # ssh checks it itself, so it is read out of band only for a new box or one that shows another key.
        trusted = action in ("running", "started") and ssh.pinned_host_key(spec.alias) is not None
        if not trusted:
            ssh.pin_host_key(spec.alias, _host_key(engine, container))
        ssh.write_host(endpoint)
        handed = _handed_over_digest(spec, secrets, key)
        proven = None if check or not trusted else _proven(spec, site, container, handed)
        host = endpoint.host
        same_start = proven is not None and action == "running" and proven.started_at == container.started_at
        if same_start and not ssh.answers(host, port):
            proven, same_start = None, False  # its sshd stopped answering while it ran: log in
        if proven is not None and same_start:
            # Logged in to and handed its secrets since it started: the frameworks are still checked, as
            # a `pip uninstall` in the box may have broken one since.
            reporter.step(
                f"Box '{spec.name}' has run unchanged since `up` reached it, and its sshd answers on port {port}; "
                "checking its frameworks"
            )
            notes = proven.notes
            python_version, checks = verify(engine, container, spec, plan.frameworks)
        else:
            # The hand-over and the framework check go through the engine, not SSH: run them while SSH comes up.
            if proven is not None:
                reporter.step(
                    f"Waiting for sshd to greet on {host}:{port} (`up` logged in to this box before, as it is "
                    "set up now) and checking frameworks inside the box"
                )
            else:
                reporter.step(f"Waiting for SSH on {host}:{port} and checking frameworks inside the box")
            with ThreadPoolExecutor(max_workers=2) as pool:
                handing = pool.submit(_hand_over, engine, container, spec, secrets, reporter)
                checking = pool.submit(verify, engine, container, spec, plan.frameworks, not check)
                try:
                    failed = _first_error(handing, checking)
                    if proven is not None:
                        ssh.await_greeting(host, port, READY_TIMEOUT, failed=failed)
                        notes = proven.notes
                    else:
                        notes = _reach(
                            engine, container, spec.alias, trusted, shared=action == "running", failed=failed
                        )
                except DeepboxError as exc:
                    checking.cancel()
                    exc.detail = _log_tail(engine, container)
                    raise
                handing.result()
                _record_reached(spec, container, handed, notes)
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


def _obtain_image(
    engine: Engine,
    spec: Spec,
    context: BuildContext,
    tag: str,
    reporter: Reporter,
    classic: Callable[[], BuildContext],
) -> str:
    """The box image: already on the engine, pulled from the registry (someone pushed the same settings and
    lock), or built (`classic`: the context for the classic builder). Returns how it came: "built" or
    "pulled"."""
    if engine.image(tag) is not None:
        return state.image_source(tag)
    if spec.registry:
        remote = registry_ref(spec.registry, spec.name, context.spec_hash)
        reporter.step(f"Pulling {remote} instead of building")
        try:
            found = engine.pull_if_present(remote, reporter.build_line)
        except RegistryUnreachable as exc:
            why = exc.message.rstrip(".")
            reporter.step(f"Note: registry {spec.registry} cannot be reached ({why}); building here")
            found = False
        else:
            if not found:
                reporter.step(f"Note: {remote} is not in the registry yet; building here (`deepbox push` shares it)")
        if found:
            engine.tag(remote, tag)
            pulled = engine.image(tag)
            engine.untag(remote)  # the box's own name holds the image, as it does a built one
            digest = next((d for d in (pulled.digests if pulled else ()) if d.startswith(remote.rsplit(":", 1)[0])), "")
            state.remember_image(tag, {"source": "pulled", "from": remote, "digest": digest})
            return "pulled"
    base = pinned_base(spec.base, engine.image(spec.base))
    labels = {
        LABEL_BOX: spec.engine_name,
        LABEL_PROJECT: str(spec.project),
        LABEL_SPEC: context.spec_hash,
        LABEL_BASE: base,
    }
    build_image(engine, spec, context, tag, labels, reporter, classic)
    state.remember_image(tag, {"source": "built", "base": base})
    return "built"


def push(spec: Spec, site: Site, reporter: Reporter) -> dict[str, str]:
    """`deepbox push`: the box image for the current settings and lock, to the registry under the name
    `up` on any machine with the same settings and lock looks for."""
    source = spec.source or "deepbox.toml"
    if not spec.registry:
        raise DeepboxError(
            f"No registry is set for box '{spec.name}': add registry = \"host[:port]/namespace\" to {source}, "
            'for example registry = "registry.example.com:5000/ml-team".'
        )
    _check_settings(spec)
    engine = site.engine()
    facts, locked = _prepare(spec, site, reporter)
    context = render(spec, plan_for(spec, facts, cuda_major=locked.cuda_major), facts, locked)
    tag = image_tag(spec, context)
    if engine.image(tag) is None:
        raise DeepboxError(
            f"There is no image {tag} of box '{spec.name}' for its current settings and lock on this engine; "
            "run `deepbox up` to build it, then `deepbox push`."
        )
    remote = registry_ref(spec.registry, spec.name, context.spec_hash)
    reporter.step(f"Pushing {tag} to {remote}")
    engine.tag(tag, remote)
    try:
        digest = engine.push(remote, reporter.build_line)
    except RegistryUnreachable as exc:
        raise DeepboxError(
            f'{exc.message} Check registry = "{spec.registry}" in {source} and that the registry runs '
            "(`docker login HOST` first when it asks for credentials)."
        ) from None
    finally:
        engine.untag(remote)  # the pushed name is the registry's; locally the box's own name is enough
    return {"image": tag, "pushed": remote, "digest": digest, "base": state.image_record(tag).get("base", "")}


def _reach(
    engine: Engine,
    container: Container,
    alias: str,
    trusted: bool,
    *,
    shared: bool,
    failed: Callable[[], BaseException | None] | None = None,
) -> list[str]:
    """Wait for an authenticated ssh login to the box; its login also reads the notes the box wrote on
    choices its OpenSSH forced. trusted: try the pinned host key first (see ssh.probe); shared: a box
    that was running already may be reached through the alias's ControlMaster, when it has one;
    failed: the error of the engine work done meanwhile, which ends the wait."""
    command = f"cat {SSHD_NOTES} 2>/dev/null; true"
    if trusted:
        output = ssh.probe(alias, READY_TIMEOUT, command, trusting_pin=True, shared=shared, failed=failed)
        if output is not None:
            return output.splitlines()
        ssh.pin_host_key(alias, _host_key(engine, container))
    return (ssh.probe(alias, READY_TIMEOUT, command, failed=failed) or "").splitlines()


# A box reached before ---------------------------------------------------------------------------------
# `up` proves a box reachable with an authenticated ssh login and the secrets handed over, and records
# what that proof rests on: the container's settings, its pinned host key and the secrets. What the login
# proved follows from those alone (the box's sshd setup is made from its settings on each start), so
# while they stay the same, `up` only confirms that the box's sshd greets: at once while the box runs from
# the same start (the hand-over is skipped too), after waiting for sshd after any start (the tmpfs the
# secrets live in is emptied by a stop, so they are handed over again). The frameworks are checked every
# time. `up --check`, a box behind a jump hop, and any change log in again.


@dataclass(frozen=True)
class _Proven:
    started_at: str  # the container start the login was made in
    notes: list[str]  # what that login read: the box's notes on choices its OpenSSH forced


def _handed_over_digest(spec: Spec, secrets: dict[str, str], key: Path) -> str:
    """What `up` hands the box (secrets, Jupyter token), as a digest keyed by the box's private client key:
    whoever could read the secrets back from it could log in to the box with that key anyway."""
    handed = boxsecrets.box_file(secrets) + (state.jupyter_token(spec.name).encode() if spec.jupyter else b"")
    try:
        secret_key = hashlib.blake2b(key.read_bytes()).digest()  # 64 bytes, blake2b's longest key
    except OSError:
        return ""  # no key to read: never taken for the same hand-over
    return hashlib.blake2b(handed, key=secret_key).hexdigest()


def _proof(spec: Spec, container: Container, handed: str) -> list[str]:
    """What a login proves the box by: its settings, its pinned host key and what was handed over."""
    return [container.labels.get(LABEL_RUN, ""), ssh.pinned_host_key(spec.alias) or "", handed]


def _proven(spec: Spec, site: Site, container: Container, handed: str) -> _Proven | None:
    """The last login `up` made to this container, when the container's settings, pinned host key and
    secrets are still what they were then; None when `up` must log in again."""
    if site.jump is not None or not handed or not container.started_at:
        return None  # a jump hop is checked by logging in through it
    record = state.read_json(paths.up_checks(container.id))
    if not isinstance(record, dict) or record.get("proof") != _proof(spec, container, handed):
        return None
    notes = record.get("notes")
    if not isinstance(notes, list):
        return None
    return _Proven(str(record.get("started_at", "")), [str(note) for note in notes])


def _record_reached(spec: Spec, container: Container, handed: str, notes: list[str]) -> None:
    record = {"started_at": container.started_at, "proof": _proof(spec, container, handed), "notes": notes}
    with contextlib.suppress(OSError):  # a record not kept only makes the next `up` log in again
        atomic_write(paths.up_checks(container.id), json.dumps(record), mode=0o600)


def _forget_checks(container_id: str) -> None:
    paths.framework_checks(container_id).unlink(missing_ok=True)
    paths.up_checks(container_id).unlink(missing_ok=True)


def _first_error(*running: Future[Any]) -> Callable[[], BaseException | None]:
    """The error of the first of these tasks that failed, once one has (None while none has)."""
    return lambda: next((error for task in running if task.done() and (error := task.exception())), None)


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


def _taken_before_recreate(spec: Spec, site: Site, existing: Container, kept: Container | None) -> DeepboxError | None:
    """The clash a recreate would meet: the fixed ssh.port, or a port the kept box had (SSH, JupyterLab),
    held by another program. A running box's own ports are its own; a stopped box holds none."""
    own = existing.ports if existing.status == "running" else {}
    wanted = {SSH_PORT: spec.ssh_port or (kept.ports.get(SSH_PORT) if kept is not None else 0) or 0}
    if spec.jupyter and kept is not None:
        wanted[JUPYTER_PORT] = kept.ports.get(JUPYTER_PORT) or 0
    for box_port, host_port in wanted.items():
        if host_port and own.get(box_port) != host_port and not site.port_is_free(spec.ssh_bind, host_port):
            if box_port == SSH_PORT and spec.ssh_port:
                return site.port_taken(host_port, spec.ssh_bind, str(spec.source or "deepbox.toml"))
            return port_clash(spec, site, existing, f":{host_port}: bind")
    return None


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
    fixed = next((entry for entry in spec.ports if entry.host == port and _tcp(entry.box) == box_port), None)
    if fixed is not None:
        return fixed_port_taken(spec, site, fixed, spec.ssh_bind)
    services = {SSH_PORT: "SSH", **({JUPYTER_PORT: "JupyterLab"} if spec.jupyter else {})}
    service = services.get(box_port, f"box port {box_port.split('/')[0]}")
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
    previous: dict[int, int],
    reporter: Reporter,
    image_source: str = "built",
) -> Container:
    """previous: box port -> host port of the box this one replaces, kept where they are still free."""
    home_volume, key_volume = volume_names(spec.engine_name)
    job = site.job()
    labels = {
        LABEL_BOX: spec.engine_name,
        LABEL_PROJECT: str(spec.project),
        **({LABEL_OWNER: spec.server_user} if spec.server_user else {}),
        # A Slurm job's box: its job removes it (and the Epilog, if the job was killed).
        **({slurm.LABEL_JOB: job.id} if job is not None else {}),
    }
    engine.volume_ensure(home_volume, labels)
    engine.volume_ensure(key_volume, labels)
    site.make_folders([mount.host for mount in spec.mounts], (spec.user.uid, spec.user.gid))
    if not site.host:
        for note in unwritable_mounts(spec):
            reporter.step(f"Note: {note}")
    if spec.ssh_port and not site.port_is_free(spec.ssh_bind, spec.ssh_port):
        raise site.port_taken(spec.ssh_port, spec.ssh_bind, str(spec.source or "deepbox.toml"))
    extra: dict[int, int] = {}
    if not site.forwards_ports and spec.ports:
        avoid = {number for number in (port, jupyter_port) if number}
        extra = host_ports(spec, site, previous, avoid, reporter)

    run_hash = _run_hash(spec, tag, public_key, site.forwards_ports)
    for attempt in range(3):
        chosen = port or site.free_port(spec.ssh_bind)
        made_from = {**labels, LABEL_IMAGE_SOURCE: image_source}
        new = _new_container(site, spec, tag, made_from, run_hash, public_key, chosen, jupyter_port, extra)
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
            # A port the box had before it was recreated (or a fixed one of `ports`): the same way out as
            # for a stopped box.
            box_port = clashing_port(str(exc), container.ports)
            taken = container.ports.get(box_port)
            if taken and box_port != SSH_PORT and box_port != JUPYTER_PORT:
                raise port_clash(spec, site, container, str(exc)) from None
            if taken and not spec.ssh_port and taken in (port, jupyter_port):
                raise port_clash(spec, site, container, str(exc)) from None
            if spec.ssh_port or attempt == 2:
                raise site.port_taken(chosen, spec.ssh_bind, str(spec.source or "deepbox.toml")) from None
        except BaseException:
            _discard(site, container)  # its own failure (an engine gone meanwhile) must not hide this one
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
    extra: dict[int, int],
) -> NewContainer:
    home_volume, key_volume = volume_names(spec.engine_name)
    published = {LABEL_PORTS: ",".join(str(box_port) for box_port in extra)} if extra else {}
    profile = box_profile(spec.sudo)
    return NewContainer(
        image=tag,
        name=spec.container_name,
        hostname=spec.name,
        labels={
            **labels,
            LABEL_SPEC: tag.rsplit(":", 1)[1],
            LABEL_RUN: run_hash,
            LABEL_ALIAS: spec.alias,
            **published,
        },
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
            **{_tcp(box_port): (spec.ssh_bind, host_port) for box_port, host_port in extra.items()},
        },
        volumes={home_volume: spec.user.home, key_volume: "/etc/ssh/deepbox"},
        binds=tuple((str(m.host), m.box, m.read_only) for m in spec.mounts),
        # authorized_keys, the secrets and the Jupyter token live on a tmpfs: never in the container
        # layer, so never in a snapshot.
        tmpfs={"/run/deepbox": "mode=0755"},
        shm_size=spec.shm_size,
        gpus=spec.gpus,
        user_namespace=spec.user_namespace,
        capabilities=profile.capabilities,
        no_new_privileges=profile.no_new_privileges,
        pids_limit=profile.pids_limit,
    )


def _host_key(engine: Engine, container: Container) -> str:
    """The box's host public key, read through the engine (authenticated, out of band)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = engine.container(container.id)
        status = current.status if current is not None else "removed"
        if status not in ("running", "created"):
            if current is not None and current.exit_code in STOPPED_FROM_OUTSIDE:
                _stopped_from_outside(engine, container)
            # An engine that is shutting down stops its containers first: asked again a moment later, it
            # shows that it went away (EngineWentAway), which is then the sentence.
            time.sleep(1)
            engine.container(container.id)
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


def _stopped_from_outside(engine: Engine, container: Container) -> None:
    """The box ended as a stop ends it (sshd's clean exit on SIGTERM, or the signal's own code), not on a
    failure of its own: a `docker stop`, or its engine shutting down, which may take some seconds to stop
    answering once its containers are down. That is EngineWentAway when the engine goes; else this."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(0.5)
        engine.container(container.id)  # raises EngineWentAway once the engine is gone
    raise DeepboxError(
        "The box was stopped from outside right after it started (a `docker stop`, or its engine stopping); "
        "run `deepbox up` again."
    )


def _log_tail(engine: Engine, container: Container) -> str:
    try:
        return b"".join(engine.logs(container, follow=False, tail=30)).decode(errors="replace")
    except DeepboxError:
        return ""


def describe(spec: Spec, site: Site) -> UpResult:
    """The endpoint of this project's running box, for the IDE commands (no build, no restart)."""
    engine = site.engine()
    container = _require(site, spec.engine_name)
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
    python_version, _ = verify(engine, container, spec, [], trust_unchanged=False)
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
        image_source=container.labels.get(LABEL_IMAGE_SOURCE, ""),
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
        ports=reached_ports(container, site),
    )


def reached_ports(container: Container, site: Site) -> list[ReachedPort]:
    """The box's `ports` and their URLs on this machine: published by the engine (the container's own
    record), or, for a server box, forwarded by its ssh alias (the alias's LocalForward lines)."""
    alias = container.labels.get(LABEL_ALIAS, "")
    if site.forwards_ports:
        forwarded = sorted(ssh.forwards(alias).items())
        return [ReachedPort(b, h, f"http://127.0.0.1:{h}", f"forwarded by ssh {alias}") for b, h in forwarded]
    host = ssh.host_name(alias) or "127.0.0.1"
    listed = [int(number) for number in container.labels.get(LABEL_PORTS, "").split(",") if number]
    return [
        ReachedPort(
            box_port, container.ports[_tcp(box_port)], f"http://{host}:{container.ports[_tcp(box_port)]}", "published"
        )
        for box_port in listed
        if _tcp(box_port) in container.ports
    ]


def ports(box: str, site: Site) -> tuple[Container, list[ReachedPort]]:
    """`deepbox ports`: the box and its ports' URLs."""
    container = _require(site, box)
    return container, reached_ports(container, site)


# The other verbs ----------------------------------------------------------------------------------


def _require(site: Site, box: str) -> Container:
    container = site.engine().container(f"deepbox-{box}")
    if container is None or LABEL_BOX not in container.labels:
        raise DeepboxError(f"There is no box named '{box}'; `deepbox status` lists the boxes, `deepbox up` makes one.")
    _check_owner(container, box, _server_user(site))
    return container


def _server_user(site: Site) -> str:
    """The server account whose boxes this site's commands act on; "" on this machine."""
    account = site.account()
    return account.name if account is not None else ""


def _check_owner(container: Container, box: str, user: str) -> None:
    owner = container.labels.get(LABEL_OWNER, "")
    if owner and owner != user:
        raise DeepboxError(
            f"Box '{box}' on this server belongs to its user {owner}, not to {user or 'you'}; deepbox acts only on "
            'your own boxes: set name = "..." in deepbox.toml to give yours another name.'
        )


def _owned(container: Container, user: str) -> bool:
    """Whether `status` lists this box for server user `user` (every box on this machine's engine)."""
    if not user:
        return True
    owner = container.labels.get(LABEL_OWNER)
    return owner == user if owner is not None else container.labels[LABEL_BOX].startswith(f"{user}-")


def down(box: str, site: Site, reporter: Reporter) -> str:
    """Stop the box; nothing is deleted. Returns what happened, for the command's last line. A Slurm
    job's box is removed with its volumes and its job cancelled: nothing may stay on a lent node."""
    if not site.keeps_stopped_boxes:
        return f"Removed {', '.join(_end_job(box, site, reporter))}."
    return f"Box '{box}' {'stopped' if _stop(box, site, reporter) else 'was not running'}."


def _end_job(box: str, site: Site, reporter: Reporter) -> list[str]:
    """A Slurm job's box: the box and its volumes removed through its engine while the job runs, then the
    job cancelled (which would remove them too). Either may be gone already; not both."""
    job = site.job()
    removed = []
    if job is None or job.state == "RUNNING":
        removed = _remove(box, True, site, reporter)
    if job is not None:
        site.release(reporter)
        removed.append(f"Slurm job {job.id}")
    return removed


def _stop(box: str, site: Site, reporter: Reporter) -> bool:
    with box_lock(box, reporter):
        engine = site.engine()
        container = _require(site, box)
        ssh.close_master(container.labels.get(LABEL_ALIAS, f"deepbox-{box}"))
        if container.status != "running":
            return False
        reporter.step(f"Stopping box '{box}'")
        engine.stop(container, timeout=10)
        return True


def rm(box: str, volumes: bool, site: Site, reporter: Reporter) -> list[str]:
    """Remove the container (and with volumes=True its volumes); mounted host folders are never touched.
    A Slurm job's box goes with its volumes and its job."""
    if not site.keeps_stopped_boxes:
        return _end_job(box, site, reporter)
    return _remove(box, volumes, site, reporter)


def _remove(box: str, volumes: bool, site: Site, reporter: Reporter) -> list[str]:
    with box_lock(box, reporter):
        engine = site.engine()
        container = engine.container(f"deepbox-{box}")
        if container is not None and LABEL_BOX not in container.labels:
            container = None  # not a deepbox container: never ours to remove
        if container is not None:
            _check_owner(container, box, _server_user(site))
        box_volumes = engine.volumes(box, _server_user(site)) if volumes else []
        if container is None and not box_volumes:
            _require(site, box)  # raises the "no box named" error
        alias = container.labels.get(LABEL_ALIAS, f"deepbox-{box}") if container is not None else f"deepbox-{box}"
        ssh.close_master(alias)
        removed = []
        if container is not None:
            reporter.step(f"Removing box '{box}'")
            engine.remove(container.id)
            _forget_checks(container.id)
            removed.append(container.name)
        for volume in box_volumes:
            engine.remove_volume(volume)
            removed.append(volume)
        if volumes:
            ssh.forget_host(alias)
        ssh.remove_host(alias)
        return removed


def status(site: Site, name: str | None = None) -> list[BoxStatus]:
    """Every box on the engine (on a server, the server user's own), quickly (no command runs in them);
    or box NAME alone, with how its packages differ from deepbox.lock when it runs (one command in the box).
    On a Slurm cluster, every box that has a job, each through its own job's engine."""
    jobs = site.listed_boxes() if name is None else None
    if jobs is None:
        return _engine_status(site, name)
    rows = []
    for box_name, job in jobs:
        site.select(box_name)
        # Still starting, or its box is gone: then the job's own row says where it stands.
        with contextlib.suppress(DeepboxError):
            rows += _engine_status(site, box_name, drift_check=False) if job.state == "RUNNING" else []
        if not any(row.box == box_name for row in rows):
            state = job.state.lower()
            rows.append(
                BoxStatus(box_name, state, "", None, "", f"deepbox-{box_name}", None, host=site.host, job=job.as_dict())
            )
    return sorted(rows, key=lambda row: row.box)


def _engine_status(site: Site, name: str | None, drift_check: bool = True) -> list[BoxStatus]:
    engine = site.engine()
    where = engine.info().describe()
    rows = []
    user = _server_user(site)
    listed = [c for c in engine.boxes() if _owned(c, user)] if name is None else [_require(site, name)]
    for container in listed:
        uptime = None
        if container.status == "running" and container.started_at:
            started = datetime.fromisoformat(container.started_at[:26].rstrip("Z") + "+00:00")
            uptime = max(0, int((datetime.now(UTC) - started).total_seconds()))
        rows.append(
            BoxStatus(
                box=container.labels[LABEL_BOX],
                state=container.status,
                image=container.image,
                image_source=container.labels.get(LABEL_IMAGE_SOURCE, ""),
                port=container.ports.get(SSH_PORT),
                project=container.labels.get(LABEL_PROJECT, ""),
                alias=container.labels.get(LABEL_ALIAS, ""),
                uptime_seconds=uptime,
                gpus=container.gpus,
                host=site.host,
                engine=where,
                ports=reached_ports(container, site),
                drift=drift.check(engine, container)
                if drift_check and name is not None and container.status == "running"
                else None,
                job=job.as_dict() if (job := site.job()) is not None else None,
            )
        )
    return sorted(rows, key=lambda row: row.box)


def snapshot(box: str, tag: str, site: Site, reporter: Reporter) -> str:
    """Commit the box to an image usable as `base = TAG`. Keys and secrets never end up in it: host keys
    and the home are volumes, authorized_keys, the secrets and the Jupyter token are on a tmpfs, and none
    of those are committed. The run-time environment (public key, the project's [env]) is blanked, since
    commit copies it."""
    engine = site.engine()
    container = _require(site, box)
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
    return Path(_require(site, box).labels.get(LABEL_PROJECT, ""))


def logs(box: str, follow: bool, site: Site) -> Iterator[bytes]:
    engine = site.engine()
    return engine.logs(_require(site, box), follow=follow)


def running(box: str, site: Site) -> Container:
    """The box's container, which must exist and run (`ssh` and `exec` need it)."""
    container = _require(site, box)
    if container.status != "running":
        raise DeepboxError(f"Box '{box}' is not running; start it with `deepbox up`.")
    return container


def session_environment(container_env: tuple[str, ...]) -> dict[str, str]:
    """The environment an ssh login to the box gets: the box user's HOME, USER, LOGNAME and SHELL, and what
    sshd hands on from the container (the venv's PATH, the CA bundle, the project's [env])."""
    env = dict(item.split("=", 1) for item in container_env if "=" in item)
    user = env.get("DEEPBOX_USER", "root")
    names = [*SESSION_ENV, *env.get("DEEPBOX_SESSION_ENV", "").split()]
    return {
        "HOME": "/root" if user == "root" else f"/home/{user}",
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/bash",
        **{name: env[name] for name in names if name in env},
    }


def exec_in(
    box: str,
    command: list[str],
    site: Site,
    *,
    stdin: int | None,
    stdout: IO[bytes],
    stderr: IO[bytes],
    term: str = "",
    window: Callable[[], tuple[int, int]] | None = None,
) -> int:
    """Run a command in the box without ssh, as an ssh login would: as the box user, in the workspace, with
    the session's environment and nothing else of the container's. `term` (the terminal type) asks for a
    terminal, `window()` gives its size. Returns the command's exit code."""
    container = running(box, site)
    env = session_environment(container.env)
    if term:
        env["TERM"] = term
    workspace = dict(item.split("=", 1) for item in container.env if "=" in item).get("DEEPBOX_WORKSPACE", "/")
    argv = ["env", "-i", *(f"{name}={value}" for name, value in env.items()), *command]
    if term and window is not None:
        # The terminal gets its size before the command starts; the engine's resize comes a moment late.
        rows, columns = window()
        argv = ["sh", "-c", STTY_SIZE, "sh", str(rows), str(columns), *argv]
    return site.engine().exec_attached(
        container,
        argv,
        user=env["USER"],
        workdir=workspace,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        tty=bool(term),
        window=window,
    )
