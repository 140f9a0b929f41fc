"""Boxes on a Slurm cluster: the job that holds one box, as sbatch and squeue see it.

`host = "slurm://[user@]login[:port]"`: deepbox reaches the login node with the user's own ssh client,
submits one job per box (named deepbox-BOX) that runs the user's rootless Podman on the node Slurm
picks, and reaches that engine and the box through the login node. This module is the pure part:
the job script, sbatch's arguments, and what squeue and the job report. site.SlurmSite runs them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib import resources

JOB_PREFIX = "deepbox-"
LABEL_JOB = "deepbox.slurm.job"  # on the box's container and volumes: the job that holds them
STATE_DIR = "$HOME/.local/state/deepbox/slurm"  # on the cluster's shared home: job logs, ready files; in "..."
# %i id, %j name, %T state, %N node, %L time left, %r reason (why it is pending)
SQUEUE_FORMAT = "%i|%j|%T|%N|%L|%r"
ENDED = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"})


@dataclass(frozen=True)
class JobRequest:
    """[slurm]: what the box's job asks Slurm for; empty settings are left to the cluster's defaults."""

    partition: str = ""
    gres: str = ""  # "gpu:1", "gpu:a100:2"
    gpus: int = 0  # --gpus, for clusters that allocate GPUs that way instead of --gres
    time: str = ""  # "8:00:00", "1-00:00:00"
    account: str = ""
    qos: str = ""
    constraint: str = ""
    cpus: int = 0  # --cpus-per-task
    mem: str = ""  # "32G"

    @property
    def asks_for_gpus(self) -> bool:
        return bool(self.gpus) or self.gres.startswith("gpu")


@dataclass(frozen=True)
class Job:
    """One of the user's deepbox jobs, as squeue lists it."""

    id: str
    box: str
    state: str  # PENDING, RUNNING, COMPLETING, ...
    node: str  # "" while pending
    time_left: str  # "7:59:12", "UNLIMITED"
    reason: str  # why it waits ("Resources", "Priority"); "None" when it runs

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "state": self.state, "node": self.node, "time_left": self.time_left}

    def describe(self) -> str:
        where = f" on {self.node}" if self.node and self.state == "RUNNING" else ""
        waiting = f" ({self.reason})" if self.state == "PENDING" and self.reason not in ("", "None") else ""
        left = f", {self.time_left} left" if self.state == "RUNNING" and self.time_left else ""
        return f"Slurm job {self.id}{where}, {self.state}{waiting}{left}"


@dataclass(frozen=True)
class Ready:
    """What the job reports once the box's engine listens: written by the job to its ready file."""

    node: str
    socket: str
    host_keys: tuple[str, ...]  # the node's ssh host keys, "ssh-ed25519 AAAA..."
    gpus: tuple[str, ...]  # the GPUs Slurm gave the job (CUDA_VISIBLE_DEVICES)

    @property
    def host_key(self) -> str:
        """The key to pin: ed25519 where the node has one."""
        return next((key for key in self.host_keys if key.startswith("ssh-ed25519 ")), self.host_keys[0])


def job_name(box: str) -> str:
    return JOB_PREFIX + box


def squeue_command() -> str:
    """The user's jobs (every state squeue still lists), one per line in SQUEUE_FORMAT."""
    return f'squeue -h -u "$(id -un)" -o {shlex.quote(SQUEUE_FORMAT)}'


def parse_squeue(output: str) -> list[Job]:
    """deepbox's jobs out of squeue's lines; other jobs of the user are none of ours."""
    jobs = []
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6 or not fields[1].startswith(JOB_PREFIX):
            continue
        job_id, name, state, node, left, reason = (field.strip() for field in fields)
        node = "" if node in ("", "(null)") else node
        jobs.append(Job(job_id, name.removeprefix(JOB_PREFIX), state, node, left, reason))
    return jobs


def sbatch_command(box: str, settings: JobRequest) -> str:
    """The shell command, run on the login node, that submits the box's job (its script on stdin) and
    prints the job id. One node, one task: the box is one container."""
    args = ["sbatch", "--parsable", f"--job-name={job_name(box)}", "--nodes=1", "--ntasks=1"]
    args += [f"--{option}={value}" for option, value in _options(settings) if value]
    # $HOME is expanded by the login node's shell, before sbatch reads --output.
    return f'mkdir -p "{STATE_DIR}" && {shlex.join(args)} --output="{STATE_DIR}/%j.log"'


def _options(settings: JobRequest) -> list[tuple[str, str]]:
    return [
        ("partition", settings.partition),
        ("gres", settings.gres),
        ("gpus", str(settings.gpus) if settings.gpus else ""),
        ("time", settings.time),
        ("account", settings.account),
        ("qos", settings.qos),
        ("constraint", settings.constraint),
        ("cpus-per-task", str(settings.cpus) if settings.cpus else ""),
        ("mem", settings.mem),
    ]


def job_script(box: str) -> str:
    """The batch script of the box's job (assets/slurm-job.sh, with the box's name)."""
    script = resources.files("deepbox.assets").joinpath("slurm-job.sh").read_text()
    return script.replace("@BOX@", shlex.quote(box)).replace("@STATE@", STATE_DIR)


def ready_path(job_id: str) -> str:
    return f"{STATE_DIR}/{job_id}.ready"


def log_path(job_id: str) -> str:
    return f"{STATE_DIR}/{job_id}.log"


def parse_ready(text: str) -> Ready | None:
    """The job's ready file; None while it is not (completely) written."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip(), []).append(value.strip())
    node, socket = values.get("node", [""])[0], values.get("socket", [""])[0]
    keys = tuple(key for key in values.get("hostkey", []) if key.startswith(("ssh-", "ecdsa-")))
    if not node or not socket or not keys or "end" not in values:
        return None
    gpus = tuple(gpu for gpu in values.get("gpus", [""])[0].split(",") if gpu)
    return Ready(node=node, socket=socket, host_keys=keys, gpus=gpus)
