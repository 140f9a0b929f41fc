"""A real Slurm cluster in containers: a login node and two compute nodes, for the slurm:// host.

`PREFIX-login` runs slurmctld, munged and sshd (the only port published here, on 127.0.0.1);
`PREFIX-node1` and `PREFIX-node2` run slurmd, munged and sshd. They share a docker network, where
`login`, `node1` and `node2` resolve, one munge key (baked into the image) and one home for user
alice (a docker volume on /home/alice, as a shared filesystem would be). alice has a rootless Podman
on each node: its storage is node-local (overlay on a tmpfs at the same path on every node) and
its runtime folder a fixed /run/user/<uid>, as jobs run without systemd. Each node's Podman has
the base image loaded.

Jobs get no XDG_RUNTIME_DIR (no login session); /run/user/<uid> exists on each node, so Podman
finds it anyway, but a job script should export it. With proctrack/linuxproc, conmon leaves the
job's process tree and the container outlives scancel: only an epilog (or the job's own TERM trap)
removes it. Containers run with --init, which reaps what jobs leave behind.

Every job ends with /etc/slurm/epilog.sh on its node: src/deepbox/assets/slurm-epilog.sh when the
repository has it, else a script that does nothing; `Cluster.set_epilog` swaps it.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import BASE_IMAGE, PREFIX
from test_remote import _close_masters

REPO = Path(__file__).resolve().parents[2]
EPILOG_ASSET = REPO / "src" / "deepbox" / "assets" / "slurm-epilog.sh"
NOOP_EPILOG = "#!/bin/sh\nexit 0\n"

USER = "alice"
UID = 2000
NODES = ("node1", "node2")
HOSTS = ("login", *NODES)
# alice's Podman: the same node-local paths on every node (its config files are on the shared home).
RUNTIME_DIR = f"/run/user/{UID}"
GRAPHROOT = f"/var/lib/rootless/{USER}/storage"
JOB_ENV = {"XDG_RUNTIME_DIR": RUNTIME_DIR, "HOME": f"/home/{USER}", "USER": USER}

CLUSTER_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      slurm-wlm munge openssh-server podman uidmap slirp4netns catatonit rsync python3 ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
RUN groupadd -g {UID} {USER} && useradd -m -u {UID} -g {UID} -s /bin/bash {USER} \\
 && echo '{USER}:100000:65536' > /etc/subuid && echo '{USER}:100000:65536' > /etc/subgid \\
 && mkdir -p /run/sshd /run/munge /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm \\
 && chown munge:munge /run/munge \\
 && (test -s /etc/munge/munge.key || mungekey --create) \\
 && chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
CMD ["sh", "-c", "ssh-keygen -A && /usr/sbin/sshd && runuser -u munge -- /usr/sbin/munged && exec sleep infinity"]
"""

# Rootless Podman in a container, as test_remote's server has it, plus CAP_SYS_ADMIN (the job's Podman
# makes its user namespace's mounts from slurmd's process tree).
NODE_OPTIONS = [
    "--cap-add=SYS_ADMIN",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--security-opt=systempaths=unconfined",
    "--tmpfs=/var/lib/rootless:exec,mode=1777",
    "--device=/dev/net/tun",
]


def slurm_conf(epilog: str = "/etc/slurm/epilog.sh") -> str:
    return f"""\
ClusterName=deepbox
SlurmctldHost=login
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
KillWait=5
MinJobAge=5
Epilog={epilog}
GresTypes=gpu
NodeName=node[1-2] CPUs=2 State=UNKNOWN
PartitionName=cpu Nodes=node[1-2] Default=YES MaxTime=INFINITE State=UP
"""


ROOTLESS_SETUP = f"""
chmod 666 /dev/net/tun
install -d -m 700 -o {USER} -g {USER} {RUNTIME_DIR} /var/lib/rootless/{USER}
"""
# On the shared home: written once, from the login node.
ROOTLESS_CONFIG = f"""
install -d -m 700 -o {USER} -g {USER} /home/{USER}/.ssh
install -d -o {USER} -g {USER} /home/{USER}/.config /home/{USER}/.config/containers
printf '[containers]\\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\\n' \\
  > /home/{USER}/.config/containers/containers.conf
printf '[storage]\\ndriver = "overlay"\\ngraphroot = "{GRAPHROOT}"\\n' \\
  > /home/{USER}/.config/containers/storage.conf
chown -R {USER}: /home/{USER}/.config
"""


@dataclass
class Job:
    id: str
    state: str
    node: str  # "" while pending


@dataclass
class Cluster:
    """The running cluster. `url` is what a project's `host` says; ssh as alice to the login node works
    from this machine through the test HOME's ssh config (`ssh -F home/.ssh/config alice@127.0.0.1 -p
    port`), and on to a node with `-J` and `identity`, pinning `host_keys` (not in any known_hosts)."""

    containers: dict[str, object]  # "login", "node1", "node2" -> docker container
    port: int
    identity: Path  # alice's private key
    host_keys: dict[str, str]  # "node1" -> "ssh-ed25519 AAAA..." (also "login")
    ssh_config: Path
    conf_dir: Path  # the host folder mounted on /etc/slurm in every container
    user: str = USER
    uid: int = UID
    job_env: dict[str, str] = field(default_factory=lambda: dict(JOB_ENV))
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "image build", "cluster up"

    @property
    def url(self) -> str:
        return f"slurm://{self.user}@127.0.0.1:{self.port}"

    def name(self, node: str) -> str:
        return self.containers[node].name

    def sh(self, node: str, command: str, user: str = "root", env: dict[str, str] | None = None) -> str:
        """Run a shell command in a container (as root unless told), assert success, return its output."""
        code, output = self.containers[node].exec_run(["sh", "-c", command], user=user, environment=env)
        assert code == 0, f"{node}: {command}\n{output.decode(errors='replace')}"
        return output.decode(errors="replace")

    def as_alice(self, node: str, command: str) -> str:
        """As alice, with the environment a job's Podman needs (XDG_RUNTIME_DIR, HOME)."""
        return self.sh(node, f"cd && {command}", user=self.user, env=self.job_env)

    def podman_containers(self, node: str) -> list[str]:
        """The names of alice's Podman containers on a node, in every state."""
        return self.as_alice(node, "podman ps -a --format '{{.Names}}'").split()

    def ssh_login(self, command: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """`ssh alice@login command` from this machine, as deepbox's client would."""
        args = ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", "-p", str(self.port)]
        return subprocess.run(
            [*args, f"{self.user}@127.0.0.1", command],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def known_hosts(self, path: Path) -> Path:
        """Write `host_keys` of the compute nodes as a known_hosts file (for ssh -J login node)."""
        path.write_text("".join(f"{node} {self.host_keys[node]}\n" for node in NODES))
        return path

    def set_epilog(self, script: str | None = None) -> None:
        """Install the job epilog every node runs (read at each job's end, no restart needed): `script`,
        or the repository's slurm-epilog.sh when it has one, else one that does nothing."""
        if script is None:
            script = EPILOG_ASSET.read_text() if EPILOG_ASSET.exists() else NOOP_EPILOG
        epilog = self.conf_dir / "epilog.sh"
        epilog.write_text(script)
        epilog.chmod(0o755)

    def log(self, node: str) -> str:
        """slurmctld's log on the login node, slurmd's on a compute node."""
        daemon = "slurmctld" if node == "login" else "slurmd"
        return self.sh(node, f"cat /var/log/slurm/{daemon}.log")

    def drain(self, node: str, reason: str = "test") -> None:
        self.sh("login", f"scontrol update NodeName={node} State=DRAIN Reason={shlex.quote(reason)}")

    def resume(self, node: str) -> None:
        if self.node_states()[node].startswith("drain"):  # RESUME fails on a node that is not drained
            self.sh("login", f"scontrol update NodeName={node} State=RESUME")

    def jobs(self) -> list[Job]:
        """alice's jobs that squeue still lists."""
        lines = self.sh("login", f"squeue -h -u {self.user} -o '%i %T %N'").splitlines()
        return [Job(*[*line.split(), ""][:3]) for line in lines if line.strip()]

    def node_states(self) -> dict[str, str]:
        lines = self.sh("login", "sinfo -h -N -o '%N %T'").split("\n")
        return dict(line.split() for line in lines if line.strip())

    def wait_idle(self, timeout: float = 60) -> None:
        """Until no job is listed and every node that is not drained is idle."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.node_states()
            if not self.jobs() and all(s == "idle" or s.startswith("drain") for s in states.values()):
                return
            assert time.monotonic() < deadline, f"cluster not idle: {states} {self.jobs()}"
            time.sleep(0.5)

    def wait_job(self, job: str, states: tuple[str, ...] = ("RUNNING",), timeout: float = 60) -> Job | None:
        """Until job `job` is in one of `states` (returned), or gone from squeue when states is ()."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((j for j in self.jobs() if j.id == job), None)
            if (found is None and not states) or (found is not None and found.state in states):
                return found
            assert time.monotonic() < deadline, f"job {job}: {found}"
            time.sleep(0.3)


def _wait(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _ok(container, command: str) -> bool:
    return container.exec_run(["sh", "-c", command])[0] == 0


@pytest.fixture(scope="module")
def cluster(docker_client, home, tmp_path_factory):
    started = time.monotonic()
    image_tag = f"{PREFIX}-slurm:test"
    docker_client.images.build(
        fileobj=io.BytesIO(CLUSTER_DOCKERFILE.encode()), tag=image_tag, rm=True, labels={"deepbox.test": PREFIX}
    )
    built = time.monotonic()
    labels = {"deepbox.test": PREFIX}
    network = docker_client.networks.create(f"{PREFIX}-slurm", labels=labels)
    volume = docker_client.volumes.create(f"{PREFIX}-alice-home", labels=labels)
    conf_dir = tmp_path_factory.mktemp("slurm-etc")
    ssh_config = home / ".ssh" / "config"
    saved_config = ssh_config.read_bytes() if ssh_config.exists() else None
    containers: dict[str, object] = {}
    try:
        conf_dir.chmod(0o755)  # users read slurm.conf too
        (conf_dir / "slurm.conf").write_text(slurm_conf())
        (conf_dir / "slurm.conf").chmod(0o644)
        for host in HOSTS:
            name = f"{PREFIX}-{host}"
            subprocess.run(
                ["docker", "run", "-d", f"--name={name}", f"--hostname={host}", f"--label=deepbox.test={PREFIX}",
                 "--init", f"--network={network.name}", f"--network-alias={host}", f"-v={volume.name}:/home/{USER}",
                 f"-v={conf_dir}:/etc/slurm", *(["-p=127.0.0.1::22"] if host == "login" else NODE_OPTIONS),
                 image_tag],
                check=True, capture_output=True,
            )  # fmt: skip
            containers[host] = docker_client.containers.get(name)
        login = containers["login"]
        login.reload()
        port = int(login.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
        keys = tmp_path_factory.mktemp("slurm-keys")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "id")], check=True)
        cluster = Cluster(containers, port, keys / "id", {}, ssh_config, conf_dir)
        cluster.set_epilog()
        public = (keys / "id.pub").read_text().strip()
        cluster.sh(
            "login",
            f"{ROOTLESS_CONFIG}\necho '{public}' > /home/{USER}/.ssh/authorized_keys"
            f" && chown {USER}: /home/{USER}/.ssh/authorized_keys",
        )
        for host in HOSTS:
            _wait(lambda c=containers[host]: _ok(c, "pgrep -x munged && pgrep -x sshd"), f"munged and sshd on {host}")
            cluster.host_keys[host] = " ".join(cluster.sh(host, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2])
        # slurmctld before slurmd; the nodes register and turn idle.
        cluster.sh("login", "slurmctld")
        _wait(lambda: _ok(login, "scontrol ping | grep -q UP"), "slurmctld")
        for node in NODES:
            cluster.sh(node, ROOTLESS_SETUP + "slurmd")
        _wait(lambda: set(cluster.node_states().values()) == {"idle"}, "idle nodes")
        # The client's own ssh config for the login node, as test_remote's server has it.
        (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
        known = home / ".ssh" / "known_hosts_slurm"
        known.write_text(f"[127.0.0.1]:{port} {cluster.host_keys['login']}\n")
        with ssh_config.open("a") as config:
            config.write(
                f"\nHost 127.0.0.1\n    IdentityFile {keys / 'id'}\n    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {known}\n    StrictHostKeyChecking yes\n"
            )
        # No registry on the nodes either: the base image into alice's storage on each.
        archive = keys / "base.tar"
        subprocess.run(["docker", "save", "-o", str(archive), BASE_IMAGE], check=True)

        def load(node: str) -> None:
            env = [f"--env={k}={v}" for k, v in JOB_ENV.items()]
            with archive.open("rb") as stream:
                subprocess.run(
                    ["docker", "exec", "-i", "-u", USER, "-w", f"/home/{USER}", *env, cluster.name(node),
                     "podman", "load", "-q"],
                    stdin=stream, check=True, capture_output=True,
                )  # fmt: skip

        with ThreadPoolExecutor(len(NODES)) as pool:
            list(pool.map(load, NODES))
        archive.unlink()
        cluster.timings.update({"image build": built - started, "cluster up": time.monotonic() - built})
        yield cluster
    finally:
        _close_masters(ssh_config)
        for container in containers.values():
            container.remove(force=True, v=True)
        volume.remove(force=True)
        network.remove()
        docker_client.images.remove(image_tag, force=True)
        if saved_config is not None:
            ssh_config.write_bytes(saved_config)
