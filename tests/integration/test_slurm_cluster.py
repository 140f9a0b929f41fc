"""The Slurm cluster fixture itself: a job's rootless Podman publishes a port on its node's loopback,
reached from here through the login node; the epilog removes what the job left; a drained node gets
no jobs."""

from __future__ import annotations

import subprocess
import time

from conftest import BASE_IMAGE
from slurm_cluster import cluster  # noqa: F401  (the fixture)

JOB = f"""\
#!/bin/sh
export XDG_RUNTIME_DIR=/run/user/$(id -u)
name=smoke-$SLURM_JOB_ID
podman run -d --name $name --label slurm.job=$SLURM_JOB_ID -p 127.0.0.1::22 {BASE_IMAGE} sleep infinity
podman port $name 22 | cut -d: -f2 > ~/$name.port
exec sleep 600
"""
# With proctrack/linuxproc the container outlives the job (conmon leaves the job's process tree):
# an epilog that removes the job's containers as their user.
EPILOG = """\
#!/bin/sh
user=$(getent passwd "$SLURM_JOB_UID" | cut -d: -f1)
exec runuser -u "$user" -- env XDG_RUNTIME_DIR=/run/user/$SLURM_JOB_UID sh -c \\
  "podman ps -aq --filter label=slurm.job=$SLURM_JOB_ID | xargs -r podman rm -f -t 0"
"""


def _submit(cluster, script: str) -> str:  # noqa: F811
    submitted = cluster.ssh_login("sbatch --parsable", stdin=script)
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip().split(";")[0]


def _until(check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    return value


def test_a_job_podman_port_is_reached_through_the_login_node(cluster, tmp_path):  # noqa: F811
    cluster.set_epilog(EPILOG)
    try:
        job = _submit(cluster, JOB)
        node = cluster.wait_job(job).node
        assert node in ("node1", "node2")
        port = _until(lambda: cluster.sh("login", f"cat /home/alice/smoke-{job}.port 2>/dev/null || true").strip())
        assert cluster.podman_containers(node) == [f"smoke-{job}"]

        # From here: ssh -J through the login node to the job's node, pinning the node's host key.
        known = cluster.known_hosts(tmp_path / "known_hosts_nodes")
        hop = subprocess.run(
            ["ssh", "-F", str(cluster.ssh_config), "-J", f"alice@127.0.0.1:{cluster.port}", "-i", str(cluster.identity),
             "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", f"alice@{node}",
             f"hostname && python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 5)'"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert hop.returncode == 0, hop.stderr
        assert hop.stdout.strip() == node

        # scancel: the job ends, its epilog removes the container it left.
        assert cluster.ssh_login(f"scancel {job}").returncode == 0
        cluster.wait_job(job, states=())
        _until(lambda: cluster.podman_containers(node) == [], timeout=30)

        # A drained node gets no jobs.
        cluster.drain("node1")
        second = _submit(cluster, "#!/bin/sh\nexec sleep 600\n")
        assert cluster.wait_job(second).node == "node2"
        assert cluster.ssh_login(f"scancel {second}").returncode == 0
    finally:
        cluster.resume("node1")
        cluster.set_epilog()
    cluster.wait_idle()
    print("timings", cluster.timings)
