"""CIS Docker Benchmark, section 5 (container runtime): a box against a plain `docker run -d BASE sleep`.

The checks are those of docker-bench-security's section 5 that apply to one container, evaluated on
`docker inspect` of each container, `docker top` (for sshd) and the engine's security options
(`docker info`: AppArmor and SELinux checks apply only where the engine has them). A small box (no
frameworks) is brought up under a throwaway HOME and removed at the end, as is the plain container;
both carry nothing of the user's. Prints a table (check, box, plain container, note) or `--json`.
Exits 1 when the box fails a check the plain container passes, unless that deviation is accepted
(ACCEPTED says why). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_BASE = "deepbox/debian:bookworm"
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"
SENSITIVE_HOST_DIRS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")
ALL_INTERFACES = ("", "0.0.0.0", "::")  # noqa: S104 (what the check looks for)
DANGEROUS_CAPABILITIES = {"ALL", "NET_ADMIN", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO", "NET_RAW"}
# Deviations a box makes on purpose, and why.
ACCEPTED = {
    "5.6": "a box is reached over SSH by design: key-only login on 127.0.0.1 with a pinned host key",
}
# What a box's failure of a check means, where it is a choice rather than an oversight.
NOTES = {
    "5.10": "no limit by default: a training job's memory need is the user's to know",
    "5.11": "default shares: a box is its user's main workload",
    "5.12": "a development box: apt, pip and the user write its root filesystem",
    "5.14": "unless-stopped brings a box back after a reboot or engine restart; the engine spaces crash-loop restarts",
    "5.26": "no HEALTHCHECK; `deepbox up` checks sshd itself (a login, then its greeting while nothing changed)",
    "5.29": "on the default bridge a box reaches the other containers there",
}


@dataclass(frozen=True)
class Facts:
    """What the checks read about one container."""

    inspect: dict
    processes: list[str]  # command names, from `docker top`
    engine_security: list[str]  # `docker info`'s SecurityOptions


@dataclass(frozen=True)
class Outcome:
    status: str  # pass, fail or n/a
    detail: str


def _host(facts: Facts) -> dict:
    return facts.inspect.get("HostConfig") or {}


def _security_opt(facts: Facts) -> list[str]:
    return _host(facts).get("SecurityOpt") or []


def _outcome(passed: bool, detail: str) -> Outcome:
    return Outcome("pass" if passed else "fail", detail)


def _published(facts: Facts) -> list[tuple[str, int]]:
    """(host address, host port) of every published port."""
    ports = (facts.inspect.get("NetworkSettings") or {}).get("Ports") or {}
    return [
        (binding.get("HostIp", ""), int(binding["HostPort"]))
        for bindings in ports.values()
        for binding in bindings or []
    ]


def apparmor(facts: Facts) -> Outcome:
    if not any("apparmor" in option for option in facts.engine_security):
        return Outcome("n/a", "the engine has no AppArmor")
    profile = facts.inspect.get("AppArmorProfile", "")
    return _outcome(profile not in ("", "unconfined"), f"profile {profile or 'none'}")


def selinux(facts: Facts) -> Outcome:
    if not any("selinux" in option for option in facts.engine_security):
        return Outcome("n/a", "the engine has no SELinux")
    labels = [option for option in _security_opt(facts) if option.startswith("label")]
    return _outcome(bool(labels), ", ".join(labels) or "no label option")


def capabilities(facts: Facts) -> Outcome:
    added = set(_host(facts).get("CapAdd") or [])
    dropped = _host(facts).get("CapDrop") or []
    dangerous = sorted(added & DANGEROUS_CAPABILITIES)
    if dangerous:
        return _outcome(False, f"adds {', '.join(dangerous)}")
    if "ALL" in dropped:
        return _outcome(True, f"drops ALL, keeps {len(added)}")
    return _outcome(True, f"Docker's default set{f', drops {len(dropped)}' if dropped else ''}")


def not_privileged(facts: Facts) -> Outcome:
    return _outcome(not _host(facts).get("Privileged"), "privileged" if _host(facts).get("Privileged") else "")


def _sensitive(source: str) -> bool:
    return source == "/" or any(source == top or source.startswith(f"{top}/") for top in SENSITIVE_HOST_DIRS[1:])


def no_sensitive_mounts(facts: Facts) -> Outcome:
    mounts = facts.inspect.get("Mounts") or []
    found = [mount["Source"] for mount in mounts if mount.get("Type") == "bind" and _sensitive(mount["Source"])]
    return _outcome(not found, ", ".join(found))


def no_sshd(facts: Facts) -> Outcome:
    running = any(name.startswith("sshd") for name in facts.processes)
    return _outcome(not running, "sshd runs" if running else "")


def no_privileged_ports(facts: Facts) -> Outcome:
    low = sorted({port for _, port in _published(facts) if port < 1024})
    return _outcome(not low, ", ".join(map(str, low)))


def no_host_network(facts: Facts) -> Outcome:
    mode = _host(facts).get("NetworkMode", "")
    return _outcome(mode != "host", mode)


def memory_limit(facts: Facts) -> Outcome:
    memory = _host(facts).get("Memory") or 0
    return _outcome(memory > 0, f"{memory // 2**20} MiB" if memory else "none")


def cpu_priority(facts: Facts) -> Outcome:
    shares = _host(facts).get("CpuShares") or 0
    return _outcome(shares not in (0, 1024), f"{shares} shares" if shares else "default shares")


def read_only_rootfs(facts: Facts) -> Outcome:
    return _outcome(bool(_host(facts).get("ReadonlyRootfs")), "" if _host(facts).get("ReadonlyRootfs") else "writable")


def bound_to_an_interface(facts: Facts) -> Outcome:
    published = _published(facts)
    if not published:
        return Outcome("pass", "no port published")
    wild = sorted({f"{address or '*'}:{port}" for address, port in published if address in ALL_INTERFACES})
    return _outcome(not wild, ", ".join(wild) or ", ".join(sorted({address for address, _ in published})))


def restart_on_failure_5(facts: Facts) -> Outcome:
    policy = _host(facts).get("RestartPolicy") or {}
    name, retries = policy.get("Name") or "no", policy.get("MaximumRetryCount", 0)
    return _outcome(name == "on-failure" and retries == 5, f"{name}:{retries}" if name == "on-failure" else name)


def no_host_pid(facts: Facts) -> Outcome:
    return _outcome(_host(facts).get("PidMode") != "host", _host(facts).get("PidMode") or "")


def no_host_ipc(facts: Facts) -> Outcome:
    return _outcome(_host(facts).get("IpcMode") != "host", _host(facts).get("IpcMode") or "")


def no_host_devices(facts: Facts) -> Outcome:
    devices = [device.get("PathOnHost", "") for device in _host(facts).get("Devices") or []]
    return _outcome(not devices, ", ".join(devices))


def default_seccomp(facts: Facts) -> Outcome:
    off = [option for option in _security_opt(facts) if option.replace(":", "=") == "seccomp=unconfined"]
    return _outcome(not off, "unconfined" if off else "the engine's default profile")


def default_cgroup(facts: Facts) -> Outcome:
    parent = _host(facts).get("CgroupParent") or ""
    return _outcome(not parent, parent or "the engine's")


def no_new_privileges(facts: Facts) -> Outcome:
    on = any(
        option.replace(":", "=") in ("no-new-privileges", "no-new-privileges=true") for option in _security_opt(facts)
    )
    return _outcome(on, "" if on else "not set")


def healthcheck(facts: Facts) -> Outcome:
    test = ((facts.inspect.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    on = bool(test) and test[0] != "NONE"
    return _outcome(on, " ".join(test[1:]) if on else "none")


def pids_limit(facts: Facts) -> Outcome:
    limit = _host(facts).get("PidsLimit") or 0
    return _outcome(limit > 0, str(limit) if limit > 0 else "none")


def not_default_bridge(facts: Facts) -> Outcome:
    mode = _host(facts).get("NetworkMode", "")
    return _outcome(mode not in ("default", "bridge"), mode)


def no_host_user_namespace(facts: Facts) -> Outcome:
    mode = _host(facts).get("UsernsMode") or ""
    return _outcome(mode != "host", mode)


def no_docker_socket(facts: Facts) -> Outcome:
    found = [
        m["Source"]
        for m in facts.inspect.get("Mounts") or []
        if m.get("Source", "").endswith(("docker.sock", "podman.sock"))
    ]
    return _outcome(not found, ", ".join(found))


CHECKS: list[tuple[str, str, Callable[[Facts], Outcome]]] = [
    ("5.1", "AppArmor profile", apparmor),
    ("5.2", "SELinux options", selinux),
    ("5.3", "capabilities restricted", capabilities),
    ("5.4", "not privileged", not_privileged),
    ("5.5", "no sensitive host dirs mounted", no_sensitive_mounts),
    ("5.6", "no sshd", no_sshd),
    ("5.7", "no privileged host ports", no_privileged_ports),
    ("5.9", "host network not shared", no_host_network),
    ("5.10", "memory limited", memory_limit),
    ("5.11", "CPU priority set", cpu_priority),
    ("5.12", "read-only root filesystem", read_only_rootfs),
    ("5.13", "bound to a host interface", bound_to_an_interface),
    ("5.14", "restart policy on-failure:5", restart_on_failure_5),
    ("5.15", "host PID namespace not shared", no_host_pid),
    ("5.16", "host IPC namespace not shared", no_host_ipc),
    ("5.17", "no host devices", no_host_devices),
    ("5.21", "default seccomp profile", default_seccomp),
    ("5.24", "cgroup as the engine's", default_cgroup),
    ("5.25", "no-new-privileges", no_new_privileges),
    ("5.26", "healthcheck", healthcheck),
    ("5.28", "pids limit", pids_limit),
    ("5.29", "not on the default bridge", not_default_bridge),
    ("5.30", "host user namespace not shared", no_host_user_namespace),
    ("5.31", "engine socket not mounted", no_docker_socket),
]


@dataclass(frozen=True)
class Row:
    check: str
    title: str
    box: str  # pass, fail, accepted or n/a
    box_detail: str
    plain: str
    plain_detail: str
    note: str


def evaluate(box: Facts, plain: Facts) -> list[Row]:
    """Every check on the box and on the plain container; a box's failure in ACCEPTED reads 'accepted'."""
    rows = []
    for number, title, check in CHECKS:
        ours, theirs = check(box), check(plain)
        accepted = ours.status == "fail" and number in ACCEPTED
        rows.append(
            Row(
                number,
                title,
                "accepted" if accepted else ours.status,
                ours.detail,
                theirs.status,
                theirs.detail,
                ACCEPTED[number] if accepted else NOTES.get(number, "") if ours.status == "fail" else "",
            )
        )
    return rows


def worse_than_plain(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.box == "fail" and row.plain == "pass"]


def table(rows: list[Row]) -> str:
    lines = ["| check | box | plain container | note |", "|---|---|---|---|"]
    for row in rows:
        box = f"{row.box} ({row.box_detail})" if row.box_detail else row.box
        plain = f"{row.plain} ({row.plain_detail})" if row.plain_detail else row.plain
        lines.append(f"| {row.check} {row.title} | {box} | {plain} | {row.note} |")
    return "\n".join(lines)


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout


def facts_of(container: str, engine_security: list[str]) -> Facts:
    inspect = json.loads(_docker("inspect", container))[0]
    processes = [line.split(maxsplit=1)[1] for line in _docker("top", container, "-eo", "pid,comm").splitlines()[1:]]
    return Facts(inspect, processes, engine_security)


def _clean(project: Path, home: Path, name: str, run_label: str, env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "deepbox.cli", "-C", str(project), "rm", "--volumes"]
    subprocess.run(command, capture_output=True, env=env, timeout=120, check=False)
    config = home / ".ssh" / "config"
    subprocess.run(
        ["ssh", "-F", str(config), "-O", "exit", f"deepbox-{name}"], capture_output=True, timeout=10, check=False
    )
    for label in (f"deepbox.box={name}", run_label):
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"],
                             capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
        if ids:
            subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True, check=False)
        volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label={label}"],
                                 capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
        if volumes:
            subprocess.run(["docker", "volume", "rm", "-f", *volumes], capture_output=True, check=False)
    tags = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"deepbox/{name}"],
                          capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
    if tags:
        subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True, check=False)


def measure(base: str, ca: str, log: Callable[[str], None]) -> tuple[Facts, Facts]:
    """Bring a small box and a plain container up, check both, remove both."""
    run_id = secrets.token_hex(3)
    name, run_label = f"checks-{run_id}", f"deepbox.bench.run={run_id}"
    work = Path(tempfile.mkdtemp(prefix="deepbox-checks-"))
    project, home = work / "project", work / "home"
    project.mkdir()
    home.mkdir()
    ca_line = f'\n[build]\nca_certificates = ["{ca}"]\n' if ca and Path(ca).exists() else ""
    (project / "deepbox.toml").write_text(f'name = "{name}"\nbase = "{base}"\nframeworks = []\n{ca_line}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "SSH_AUTH_SOCK"}
    env["HOME"] = str(home)
    try:
        log(f"bringing up box {name}")
        up = subprocess.run([sys.executable, "-m", "deepbox.cli", "-C", str(project), "up"],
                            capture_output=True, text=True, env=env, timeout=1800, check=False)  # fmt: skip
        if up.returncode != 0:
            raise RuntimeError(f"deepbox up failed: {up.stderr.strip()[-600:]}")
        plain = f"{name}-plain"
        _docker(
            "run", "-d", "--name", plain, "--label", "deepbox.bench=1", "--label", run_label, base, "sleep", "infinity"
        )
        engine_security = json.loads(_docker("info", "--format", "{{json .SecurityOptions}}")) or []
        return facts_of(f"deepbox-{name}", engine_security), facts_of(plain, engine_security)
    finally:
        _clean(project, home, name, run_label, env)
        shutil.rmtree(work, ignore_errors=True)


def _recorded(facts: Facts) -> dict:
    """Facts as JSON, without the container's environment (the box's public key, paths of this host)."""
    inspect = {**facts.inspect, "Config": {k: v for k, v in facts.inspect.get("Config", {}).items() if k != "Env"}}
    return {**asdict(facts), "inspect": inspect}


def load(recorded: dict) -> Facts:
    return Facts(**recorded)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE)
    parser.add_argument("--ca", default=DEFAULT_CA)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--save", type=Path, help="also write what the checks read (environment left out) to FILE")
    options = parser.parse_args()
    try:
        box, plain = measure(options.base, options.ca, log=lambda line: print(line, file=sys.stderr, flush=True))
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"`{' '.join(error.cmd)}` failed: {error.stderr.strip()}", file=sys.stderr)
        return 2
    if options.save:
        options.save.write_text(json.dumps({"box": _recorded(box), "plain": _recorded(plain)}, indent=1) + "\n")
    rows = evaluate(box, plain)
    print(json.dumps([asdict(row) for row in rows], indent=2) if options.json else table(rows))
    worse = worse_than_plain(rows)
    if worse:
        print(f"the box fails what a plain container passes: {', '.join(r.check for r in worse)}", file=sys.stderr)
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
