"""A box on a Slurm cluster (host = "slurm://..."): a real two-node cluster in containers (slurm_cluster.py).

Each box runs in a job of its own, under alice's rootless Podman on the node Slurm picks; ssh, the
IDEs and deepbox reach it through the login node. Nothing may outlive the job: not `down`, not the
time limit, not a job killed without TERM.
"""

from __future__ import annotations

import json
import subprocess
import time

from conftest import PREFIX, Project
from slurm_cluster import cluster  # noqa: F401  (the fixture)
from test_remote import remote_project


def _slurm_project(cluster, tmp_path, home, slug: str, extra: str = "") -> Project:  # noqa: F811
    return remote_project(tmp_path, home, slug, f'host = "{cluster.url}"\nframeworks = []\n{extra}')


def _left_on(cluster, node: str) -> list[str]:  # noqa: F811
    """alice's containers on the node, and the processes a box brings (conmon, its network helpers)."""
    containers = cluster.podman_containers(node)
    processes = cluster.sh(node, "ps -u alice -o comm= || true").split()
    return containers + [name for name in processes if name in ("conmon", "slirp4netns", "rootlessport")]


def _nothing_left_on(cluster, node: str, timeout: float = 30) -> None:  # noqa: F811
    deadline = time.monotonic() + timeout
    while (left := _left_on(cluster, node)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], cluster.sh(node, "ps -u alice -o pid,ppid,stat,etime,args")


def _until(check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return value


def _status(project: Project) -> dict:
    done = project.deepbox("status", "--json")
    assert done.code == 0, done.err
    rows = [row for row in json.loads(done.out) if row["box"] == f"alice-{project.name}"]
    assert len(rows) == 1, done.out
    return rows[0]


def test_a_box_in_a_slurm_job_end_to_end(cluster, tmp_path, home):  # noqa: F811
    project = _slurm_project(cluster, tmp_path, home, "slurm", '[slurm]\ntime = "30:00"\n')
    (project.path / "hello.py").write_text("import os, socket\nprint('hello from', socket.gethostname())\n")
    assert project.deepbox("sync").code == 0
    remote = f"/home/alice/deepbox/{project.name}"
    doctor = project.deepbox("doctor", "--json")
    assert doctor.code == 0, doctor.out + doctor.err
    engine = next(row for row in json.loads(doctor.out) if row["check"] == "engine")
    assert engine["message"] == (
        f"Box '{project.name}' has no Slurm job now; `deepbox up` submits one to the default partition of "
        f"{cluster.url} (2 of 2 nodes idle)."
    )
    try:
        up = project.deepbox("up", "--json", timeout=1500)
        assert up.code == 0, up.err
        assert json.loads(up.out)["user"] == "alice"
        assert "Submitted Slurm job" in up.err
        row = _status(project)
        job = row["job"]
        assert job["state"] == "RUNNING" and job["node"] in ("node1", "node2"), row
        assert row["state"] == "running"
        first = job["node"]

        # ssh deepbox-NAME: this machine -> login node -> the job's node -> the box, every hop pinned.
        ran = project.ssh("python3 /workspace/hello.py && id -u && touch /workspace/from-box")
        assert ran.code == 0, ran.err
        assert ran.out.splitlines()[1] == str(cluster.uid)
        assert cluster.sh("login", f"stat -c %u {remote}/from-box").strip() == str(cluster.uid)
        seen = subprocess.run(["ssh", "-F", str(home / ".ssh" / "config"), "-G", project.alias], capture_output=True,
                              text=True, check=True).stdout.splitlines()  # fmt: skip
        assert f"proxyjump deepbox-alice-{project.name}.node" in seen
        human = project.deepbox("status", env={"COLUMNS": "250"})
        assert f"{job['id']} RUNNING on {first}" in human.out, human.out

        # down: the box removed and the job cancelled; nothing of it stays on the node.
        down = project.deepbox("down")
        assert down.code == 0, down.err
        assert f"Slurm job {job['id']}." in " ".join(down.err.split())
        assert _until(lambda: all(j.id != job["id"] for j in cluster.jobs()))
        _nothing_left_on(cluster, first)
        assert {"from-box", "hello.py"} <= set(cluster.sh("login", f"ls {remote}").split()), "the project stays"

        # up again, with the first node drained: a new job on the other node, and the alias follows.
        cluster.drain(first)
        try:
            again = project.deepbox("up", "--json", timeout=1500)
            assert again.code == 0, again.err
            second = _status(project)["job"]
            assert second["node"] != first and second["id"] != job["id"]
            ran = project.ssh("hostname && cat /workspace/from-box && echo ok")
            assert ran.code == 0 and ran.out.strip().endswith("ok"), ran.err
        finally:
            cluster.resume(first)

        # The time limit ends the job: its TERM removes the box before Slurm kills what is left.
        cluster.sh("login", f"scontrol update JobId={second['id']} TimeLimit=00:00:01")
        assert _until(lambda: all(j.id != second["id"] for j in cluster.jobs()), timeout=120)
        _nothing_left_on(cluster, second["node"])
        gone = project.deepbox("status", "--json")
        assert gone.code == 0 and project.name not in gone.out, gone.out
    finally:
        project.deepbox("rm")
    for node in ("node1", "node2"):
        _nothing_left_on(cluster, node)


def test_a_job_killed_without_term_leaves_nothing(cluster, tmp_path, home):  # noqa: F811
    """SIGKILL alone (a node's OOM killer, scancel -s KILL): the job's own cleanup never runs; the
    Epilog removes the box."""
    project = _slurm_project(cluster, tmp_path, home, "killed")
    try:
        up = project.deepbox("up", "--json", timeout=1500)
        assert up.code == 0, up.err
        job = _status(project)["job"]
        cluster.sh("login", f"scancel --signal=KILL --full {job['id']}")
        assert _until(lambda: all(j.id != job["id"] for j in cluster.jobs()), timeout=60)
        _nothing_left_on(cluster, job["node"])
    finally:
        project.deepbox("rm")


def test_slurm_faults_are_one_sentence(cluster, tmp_path, home):  # noqa: F811
    wrong = _slurm_project(cluster, tmp_path, home, "nopart", '[slurm]\npartition = "gpu"\n')
    doctor = wrong.deepbox("doctor")
    assert doctor.code == 1
    assert f"The Slurm cluster {cluster.url} has no partition 'gpu'; set [slurm] partition in" in " ".join(
        doctor.out.split()
    )
    result = wrong.deepbox("up")
    assert result.code == 1 and "Traceback" not in result.err
    assert f"Slurm refused box '{PREFIX}-nopart''s job on {cluster.url}" in result.err, result.err
    assert "fix [slurm] in" in result.err

    cuda = _slurm_project(cluster, tmp_path, home, "nogpu", 'device = "cuda"\n')
    result = cuda.deepbox("up")
    assert result.code == 1
    assert "its Slurm job would get no GPU" in result.err and 'gres = "gpu:1"' in result.err, result.err
    assert cluster.jobs() == []

    # An `up` that fails after submitting its job cancels it: an empty job would hold its node.
    broken = _slurm_project(cluster, tmp_path, home, "broken", 'pip = ["deepbox-no-such-package-anywhere"]\n')
    result = broken.deepbox("up", timeout=900)
    assert result.code == 1 and "Submitted Slurm job" in result.err and "Traceback" not in result.err
    assert _until(lambda: cluster.jobs() == [], timeout=60)
    for node in ("node1", "node2"):
        _nothing_left_on(cluster, node)

    missing = _slurm_project(cluster, tmp_path, home, "none")
    result = missing.deepbox("down")
    assert result.code == 1 and "has no running job on the Slurm cluster" in result.err, result.err
