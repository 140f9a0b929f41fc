"""`deepbox doctor`: is this machine ready for the project's box? One finding per check, each with its fix.

The settings are checked with the very functions `up` and `dockerfile` use (each failure a finding,
not the end of the run). The decisions are pure functions over recorded inputs (`docker info`,
`nvidia-smi` output, free bytes) so they are unit-tested without a GPU; `run` gathers the live values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from deepbox import baseimage, box, catalog, cudachoice, gpu, lock, ssh, sync
from deepbox.baseimage import BaseFacts, check_reference
from deepbox.catalog import cuda as catalog_cuda
from deepbox.config import Spec
from deepbox.dockerfile import render
from deepbox.engine import NO_GPU_RUNTIME, Container, Engine, EngineInfo
from deepbox.errors import DeepboxError
from deepbox.lock import Variant
from deepbox.site import Site

GIB = 1024**3
# Roughly what a box image needs: a CPU box with the scientific stack, or CUDA wheels (several GB).
DISK_NEEDED = {"cpu": 5 * GIB, "cuda": 20 * GIB}


@dataclass(frozen=True)
class Finding:
    check: str
    level: str  # ok | warning | error
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def engine_findings(info: EngineInfo, spec: Spec) -> list[Finding]:
    """Which engine answered, how it was reached, and what a rootless one means for the box."""
    findings = [Finding("engine", "ok", f"{info.describe()} answers.")]
    if not info.rootless:
        return findings
    if info.kind == "podman":
        meaning = (
            "rootless Podman: the box runs with --userns=keep-id, so your UID is the box user's and files it "
            "writes in mounted folders are yours; no step needs root or the docker group."
        )
        return [*findings, Finding("rootless", "ok", meaning)]
    if spec.user_configured:
        return [
            *findings,
            Finding(
                "rootless",
                "warning",
                f"rootless Docker maps every UID but root to a subordinate one, so files the box user "
                f"{spec.user.name} (UID {spec.user.uid}, from [user]) writes in mounted folders will not be yours; "
                "remove [user] to let the box user be root inside, which is you outside.",
            ),
        ]
    meaning = (
        "rootless Docker: the box user is root inside, which is you outside, so files it writes in mounted "
        "folders are yours (still key-only SSH, on 127.0.0.1); no step needs root or the docker group."
    )
    return [*findings, Finding("rootless", "ok", meaning)]


def disk_finding(free_bytes: int | None, where: str, device: str) -> Finding:
    needed = DISK_NEEDED.get(device, DISK_NEEDED["cpu"])
    if free_bytes is None:
        return Finding(
            "disk", "warning", f"Could not read the free space of {where}; make sure it has {needed // GIB} GB."
        )
    free_gb = free_bytes / GIB
    if free_bytes < needed:
        return Finding(
            "disk",
            "error",
            f"{where} has {free_gb:.1f} GB free, less than the {needed // GIB} GB a {device} box image needs; "
            "free space (docker system prune removes unused images) or move Docker's data-root.",
        )
    return Finding("disk", "ok", f"{where} has {free_gb:.0f} GB free.")


def port_finding(spec: Spec, free: bool, held_by_box: bool, holder: str = "another program") -> Finding:
    if not spec.ssh_port:
        return Finding("port", "ok", f"ssh.port = 0: a free port on {spec.ssh_bind} is chosen when the box is created.")
    if free or held_by_box:
        owner = " (this project's box holds it)" if held_by_box else ""
        return Finding("port", "ok", f"Port {spec.ssh_bind}:{spec.ssh_port} is available{owner}.")
    return Finding(
        "port",
        "error",
        f"Port {spec.ssh_bind}:{spec.ssh_port} is taken by {holder}; set ssh.port = 0 in "
        f"{spec.source or 'deepbox.toml'} to let deepbox pick a free one, or stop that program.",
    )


def _attempt(check: str, action: Callable[[], object], ok: str, failed: str = "error") -> Finding:
    """A check that `up` makes by raising: its sentence becomes the finding instead of stopping doctor."""
    try:
        action()
    except DeepboxError as exc:
        return Finding(check, failed, exc.message)
    return Finding(check, "ok", ok)


def settings_findings(spec: Spec, facts: BaseFacts | None) -> list[Finding]:
    """The checks `up` and `dockerfile` make on the settings before building, with the same functions:
    the frameworks, the base's name, and the build context (Python and CUDA against the catalog and the
    base, the requirements, CA and find-links files). Needs no engine; `facts` when the base was read."""
    names = ", ".join(spec.framework_names)
    known = f"Frameworks {names} are in the catalog." if names else "No frameworks: the box gets Python only."
    findings = [_attempt("frameworks", lambda: catalog.check_names(spec.framework_names), known)]
    try:
        check_reference(spec.base, str(spec.source or "deepbox.toml"))
    except DeepboxError as exc:
        findings.append(Finding("base", "error", exc.message))
    if any(finding.level == "error" for finding in findings):
        return findings
    fits = "the base image's Python and system" if facts else "the settings (the base image is not read yet)"
    rendered = f"The box's Dockerfile renders: its frameworks fit {fits}, and every file the settings name can be read."
    findings.append(_attempt("build", lambda: render(spec, facts=facts, lock=lock.current(spec, facts)), rendered))
    return findings


def mounts_findings(spec: Spec, site: Site) -> list[Finding]:
    """Mount folders of this machine the box user could not write to (up notes the same)."""
    if site.host:
        return []  # a server's folders are the server user's, the box user's too
    notes = box.unwritable_mounts(spec)
    if not notes:
        missing = [str(mount.host) for mount in spec.mounts if not mount.host.exists()]
        made = f"; `up` creates {', '.join(missing)}" if missing else ""
        return [Finding("mounts", "ok", f"The box user {spec.user.name} can write to its mounts{made}.")]
    return [Finding("mounts", "warning", note[0].upper() + note[1:]) for note in notes]


def tools_findings(site: Site) -> list[Finding]:
    """The programs of this machine deepbox runs: OpenSSH's client always, rsync for a server box (only
    `deepbox sync` needs it, so its absence is a warning)."""
    findings = [_attempt("tools", ssh.require_client, "ssh and ssh-keygen are installed.")]
    if site.server is not None:
        findings.append(_attempt("rsync", sync.require_rsync, "rsync is installed.", failed="warning"))
    return findings


def live_port_finding(spec: Spec, site: Site, container: Container | None) -> Finding:
    """The box's SSH port: an address of this machine, free, or the box's own (a stopped box's port that
    another program took since is the error `up` would stop at)."""
    bind_error = site.bind_error(spec.ssh_bind, str(spec.source or "deepbox.toml"))
    if bind_error is not None:
        return Finding("port", "error", bind_error.message)
    published = container.ports.get(box.SSH_PORT) if container is not None else None
    if container is not None and published and container.status != "running" and not spec.ssh_port:
        if not site.port_is_free(spec.ssh_bind, published):
            return Finding("port", "error", box.port_clash(spec, site, container).message)
        return Finding("port", "ok", f"Port {spec.ssh_bind}:{published} is free for box '{spec.name}' to start on.")
    held = published is not None and published == spec.ssh_port
    free = bool(spec.ssh_port) and site.port_is_free(spec.ssh_bind, spec.ssh_port)
    holder = site.port_holder(spec.ssh_port) if spec.ssh_port and not (free or held) else ""
    return port_finding(spec, free, held, holder)


def ports_finding(spec: Spec, site: Site, container: Container | None) -> Finding | None:
    """The fixed host ports of `ports` ("8501:8501"): free, or the box's own already."""
    if not spec.ports:
        return None
    error = box.fixed_port_error(spec, site, box.previous_ports(spec, site, container))
    if error is not None:
        return Finding("ports", "error", error.message)
    where = "forwarded from this machine's 127.0.0.1" if site.forwards_ports else f"published on {spec.ssh_bind}"
    fixed = [str(port.host) for port in spec.ports if port.host]
    many = len(fixed) > 1
    free = (
        f"; host port{'s' if many else ''} {', '.join(fixed)} {'are' if many else 'is'} free or the box's own"
        if fixed
        else ""
    )
    return Finding("ports", "ok", f"Box ports {', '.join(str(p.box) for p in spec.ports)} are {where}{free}.")


def gpu_findings(spec: Spec, smi_output: str | None, gpu_runtime: bool) -> list[Finding]:
    """Driver, CUDA and runtime checks. smi_output None: nvidia-smi is not installed or failed."""
    wanted = spec.gpus.wanted or spec.device == "cuda"
    if smi_output is None:
        if not wanted:
            return [Finding("gpu", "ok", "No NVIDIA driver on this host; the box is a CPU box, so none is needed.")]
        return [
            Finding(
                "gpu",
                "error",
                f"The box asks for {spec.gpus.describe()} but this host has no working NVIDIA driver (nvidia-smi "
                'is missing or fails); install the driver, or set device = "cpu" and gpus = "none".',
            )
        ]
    gpus = gpu.parse_nvidia_smi(smi_output)
    if not gpus:
        level = "error" if wanted else "ok"
        return [Finding("gpu", level, "nvidia-smi lists no GPU; check that the GPU is seated and the driver loaded.")]
    names = ", ".join(f"{g.index}: {g.name}" for g in gpus)
    findings = [
        Finding("gpu", "ok", f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} ({names}), driver {gpus[0].driver}.")
    ]
    missing = gpu.mismatched_ids(spec.gpus, gpus)
    if missing:
        findings.append(
            Finding(
                "gpu-ids",
                "error",
                f"gpus lists {', '.join(missing)}, which this host does not have "
                f"(it has {', '.join(g.index for g in gpus)}); fix gpus in the configuration.",
            )
        )
    if wanted:
        if gpu_runtime:
            findings.append(Finding("runtime", "ok", "The engine can give GPUs to containers (NVIDIA runtime or CDI)."))
        else:
            findings.append(Finding("runtime", "error", NO_GPU_RUNTIME))
    return findings


def lock_finding(spec: Spec, variants: dict[str, Variant], config: str) -> Finding:
    """Is there a lock for this box's device, and does it still match deepbox.toml?"""
    name = spec.lock_file
    wanted = lock.device_variants(spec, variants)
    if not wanted:
        return Finding(
            "lock",
            "warning",
            f"{name} has no {spec.device} variant yet: `{lock.up_command(spec)}` (or `{lock.lock_command(spec)}`) "
            "writes one.",
        )
    stale = [key for key in wanted if variants[key].config != config]
    if stale:
        return Finding(
            "lock",
            "warning",
            f"{name} ({', '.join(stale)}) is stale: deepbox.toml or the requirements changed since; "
            f"`{lock.up_command(spec)}` locks again (`{lock.lock_command(spec)}` to do it now, `up --frozen` refuses).",
        )
    described = ", ".join(
        f"{key} ({len(variants[key].packages)} packages, {variants[key].exclude_newer})" for key in wanted
    )
    return Finding("lock", "ok", f"{name} is fresh for deepbox.toml: {described}.")


def cuda_finding(spec: Spec, variants: dict[str, Variant], gpus: list[gpu.Gpu] | None) -> Finding | None:
    """Which CUDA the box gets on this host, and the driver that choice rests on."""
    if spec.device != "cuda":
        return None
    host = cudachoice.Host.of(gpus)
    setting = spec.cuda or "auto"
    usable = cudachoice.choose_existing(variants, setting, host) if host.driver else []
    majors, reasons = cudachoice.candidate_majors(setting, host)
    if usable:
        chosen = variants[usable[0]]
        if chosen.cuda in catalog_cuda.MIN_DRIVER:  # a GA release: full support, or only minor compatibility?
            verdict = gpu.driver_verdict(str(host.driver), chosen.cuda)
            return Finding("cuda", verdict.level, f"{chosen.key} in the lock: {verdict.message}")
        return Finding(
            "cuda",
            "ok",
            f"CUDA {chosen.cuda or chosen.cuda_major} ({chosen.key} in the lock) runs on driver {host.driver} "
            f"(needs {chosen.min_driver} or newer).",
        )
    if not host.driver:
        return Finding(
            "cuda",
            "warning",
            "No NVIDIA driver here to choose the CUDA for: `deepbox lock` takes the newest CUDA major every framework "
            "resolves for (the box's host needs its driver).",
        )
    locked = [key for key in variants if key.startswith("cuda")]
    if not majors:
        return Finding("cuda", "error", f"This host can run no CUDA major deepbox knows: {'; '.join(reasons)}.")
    why = f" ({'; '.join(reasons)})" if reasons else ""
    moved = f"the lock has {', '.join(locked)}, which driver {host.driver} cannot run; " if locked else ""
    return Finding(
        "cuda",
        "warning",
        f"{moved}`deepbox up` locks CUDA {majors[0]} or older for driver {host.driver}{why}.",
    )


def container_gpu_finding(output: str | None, error: str = "") -> Finding:
    """What `nvidia-smi -L` printed inside a throwaway container that asked for the box's GPUs."""
    if output is not None and "GPU " in output:
        count = sum(1 for line in output.splitlines() if line.startswith("GPU "))
        return Finding("container-gpu", "ok", f"A test container sees {count} GPU{'s' if count != 1 else ''}.")
    detail = f" ({error.strip().rstrip('.')})" if error else ""
    return Finding(
        "container-gpu",
        "error",
        f"A test container that asked for GPUs sees none{detail}; check the NVIDIA Container Toolkit "
        "(nvidia-ctk runtime configure --runtime=docker) and restart Docker.",
    )


def run(spec: Spec, site: Site) -> list[Finding]:
    """Every check `up` would make, against the live engine and host, each reported rather than stopping
    at the first. Without an engine, those that need none."""
    static = [*tools_findings(site), *mounts_findings(spec, site)]
    try:
        pending = site.engine_pending(spec)
    except DeepboxError as exc:
        return [Finding("engine", "error", exc.message), *settings_findings(spec, None), *static]
    if pending is not None:
        return [Finding("engine", "ok", pending), *settings_findings(spec, None), *static]
    try:
        engine = site.engine()
        info = engine.info()
    except DeepboxError as exc:
        findings = [Finding("engine", "error", exc.message), *settings_findings(spec, None), *static]
        return [*findings, live_port_finding(spec, site, None)] if not site.host else findings
    findings = engine_findings(info, spec)
    findings.append(disk_finding(site.free_bytes(info.root_dir), site.describe(info.root_dir), spec.device))
    container = engine.container(spec.container_name)
    findings.append(live_port_finding(spec, site, container))
    extra_ports = ports_finding(spec, site, container)
    if extra_ports is not None:
        findings.append(extra_ports)
    base, facts = _base_findings(spec, engine)
    findings += [*base, *settings_findings(spec, facts), *static]
    has_base = facts is not None
    names_known = not any(finding.check == "frameworks" and finding.level == "error" for finding in findings)
    smi = site.nvidia_smi()
    gpu_results = gpu_findings(spec, smi, info.gpu_runtime)
    findings += gpu_results
    try:
        if names_known:  # else the lock's digest would only repeat the unknown framework
            variants = lock.read(spec.project, spec.lock_file)
            findings.append(lock_finding(spec, variants, lock.config_digest(spec)))
            cuda = cuda_finding(spec, variants, gpu.parse_nvidia_smi(smi) if smi is not None else None)
            if cuda is not None:
                findings.append(cuda)
    except DeepboxError as exc:
        findings.append(Finding("lock", "error", exc.message))
    if spec.gpus.wanted and all(f.level != "error" for f in gpu_results) and has_base:
        try:
            output = engine.run_once(
                spec.base,
                ["nvidia-smi", "-L"],
                gpus=spec.gpus,
                environment={"NVIDIA_DRIVER_CAPABILITIES": "utility"},
                labels={"deepbox.doctor": "1"},
            )
            findings.append(container_gpu_finding(output))
        except DeepboxError as exc:
            findings.append(container_gpu_finding(None, exc.message))
    return findings


def _base_findings(spec: Spec, engine: Engine) -> tuple[list[Finding], BaseFacts | None]:
    """Is the base on the engine, and is it Debian or Ubuntu based (read as `up` reads it)?"""
    try:
        check_reference(spec.base, str(spec.source or "deepbox.toml"))
    except DeepboxError:
        return [], None  # settings_findings reports it
    try:
        image = engine.image(spec.base)
        if image is None:
            warning = (
                f"Base image {spec.base} is not on the engine; `up` pulls it, and without a registry "
                "`deepbox base bootstrap` makes a Debian one."
            )
            return [Finding("base", "warning", warning)], None
        facts = baseimage.facts(engine, spec.base, image)
    except DeepboxError as exc:
        return [Finding("base", "error", exc.message)], None
    python = f"Python {facts.python}" if facts.python else "no Python (the box installs one)"
    system = " ".join(part for part in (facts.os.capitalize(), facts.codename) if part)
    return [Finding("base", "ok", f"Base image {spec.base} is on the engine: {system}, {python}.")], facts
