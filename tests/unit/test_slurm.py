"""The Slurm job of a box: sbatch's arguments, the job script, what squeue and the job report."""

from __future__ import annotations

import stat
import subprocess
import threading
from pathlib import Path

import pytest

from deepbox import slurm, ssh
from deepbox.config import load_spec
from deepbox.engine.docker import _gpu_request
from deepbox.errors import ConfigError
from deepbox.gpu import GpuRequest
from deepbox.remote import parse


def test_sbatch_asks_for_what_slurm_says_and_nothing_else():
    request = slurm.JobRequest(partition="gpu", gres="gpu:a100:2", time="8:00:00", account="lab", cpus=8, mem="32G")
    command = slurm.sbatch_command("alice-proj", request)
    assert command == (
        'mkdir -p "$HOME/.local/state/deepbox/slurm" && sbatch --parsable --job-name=deepbox-alice-proj --nodes=1 '
        "--ntasks=1 --partition=gpu --gres=gpu:a100:2 --time=8:00:00 --account=lab --cpus-per-task=8 --mem=32G "
        '--output="$HOME/.local/state/deepbox/slurm/%j.log"'
    )
    assert "--gpus" not in command and "--qos" not in command
    assert "--gpus=1 " in slurm.sbatch_command("b", slurm.JobRequest(gpus=1))
    assert slurm.JobRequest(gres="gpu:1").asks_for_gpus and slurm.JobRequest(gpus=2).asks_for_gpus
    assert not slurm.JobRequest(gres="shard:1").asks_for_gpus


def test_squeue_lines_give_deepbox_jobs_only():
    output = (
        "41|deepbox-alice-proj|RUNNING|node2|7:59:12|None\n"
        "42|train.sh|RUNNING|node1|1:00|None\n"
        "43|deepbox-alice-other|PENDING|(null)|8:00:00|Resources\n"
    )
    jobs = slurm.parse_squeue(output)
    assert jobs == [
        slurm.Job("41", "alice-proj", "RUNNING", "node2", "7:59:12", "None"),
        slurm.Job("43", "alice-other", "PENDING", "", "8:00:00", "Resources"),
    ]
    assert jobs[0].describe() == "Slurm job 41 on node2, RUNNING, 7:59:12 left"
    assert jobs[1].describe() == "Slurm job 43, PENDING (Resources)"
    assert jobs[0].as_dict() == {"id": "41", "state": "RUNNING", "node": "node2", "time_left": "7:59:12"}


def test_the_ready_file_is_read_only_when_complete():
    text = (
        "node=node1\nsocket=/run/user/2000/deepbox-41.sock\ngpus=2,3\n"
        "hostkey=ecdsa-sha2-nistp256 AAAAE2\nhostkey=ssh-ed25519 AAAAC3\n"
    )
    assert slurm.parse_ready(text) is None  # still being written
    ready = slurm.parse_ready(text + "end=1\n")
    assert ready == slurm.Ready(
        "node1", "/run/user/2000/deepbox-41.sock", ("ecdsa-sha2-nistp256 AAAAE2", "ssh-ed25519 AAAAC3"), ("2", "3")
    )
    assert ready.host_key == "ssh-ed25519 AAAAC3"
    # The box gets the job's GPUs, by the node's own indexes, never "all".
    request = GpuRequest(device_ids=ready.gpus)
    assert _gpu_request("podman", request) == {"devices": ["nvidia.com/gpu=2", "nvidia.com/gpu=3"]}  # CDI
    assert slurm.parse_ready("node=n\nsocket=/s\nhostkey=ssh-ed25519 K\nend=1\n").gpus == ()


def test_a_slurm_url_and_table_are_read(tmp_path):
    (tmp_path / "deepbox.toml").write_text(
        'host = "slurm://alice@login.cluster"\n[slurm]\npartition = "gpu"\ngres = "gpu:1"\ntime = "8:00:00"\n'
    )
    spec = load_spec(tmp_path)
    assert spec.slurm == slurm.JobRequest(partition="gpu", gres="gpu:1", time="8:00:00")
    server = parse("slurm://alice@login.cluster:2222")
    assert (server.destination, server.port) == ("alice@login.cluster", 2222)
    with pytest.raises(ConfigError, match="is not an slurm URL; write it as slurm://user@login-node"):
        parse("slurm://login.cluster/path")
    (tmp_path / "deepbox.toml").write_text('[slurm]\npartition = "gpu a100"\n')
    with pytest.raises(ConfigError, match="one word"):
        load_spec(tmp_path)


def test_the_node_hop_is_pinned_and_uses_the_login_node_identities(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    block = ssh.node_block("deepbox-proj.node", "node1", "alice", "alice@login:2222", ["~/.ssh/id_cluster"])
    lines = [line.strip() for line in block.splitlines()]
    assert "Host deepbox-proj.node" in lines and "HostName node1" in lines and "User alice" in lines
    assert "ProxyJump alice@login:2222" in lines and "IdentityFile ~/.ssh/id_cluster" in lines
    assert "HostKeyAlias deepbox-proj.node" in lines and "StrictHostKeyChecking yes" in lines


def test_the_job_script_reports_its_engine_and_removes_its_box_on_term(tmp_path):
    """The real job script, run by bash with a `podman` that records what it is asked and makes the socket."""
    bin_dir, home = tmp_path / "bin", tmp_path / "jobhome"
    bin_dir.mkdir()
    home.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "podman").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$1 $2" in\n'
        '  "system service") exec python3 -c "import socket,sys,time; s=socket.socket(socket.AF_UNIX); '
        's.bind(sys.argv[1].removeprefix(\'unix://\')); s.listen(); time.sleep(60)" "$4" ;;\n'
        '  "ps -aq") echo c0ffee ;;\n'
        "esac\n"
    )
    (bin_dir / "podman").chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(slurm.job_script("alice-proj"))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(home),
        "SLURM_JOB_ID": "41",
        "SLURM_JOB_GPUS": "2,3",
        "SLURMD_NODENAME": "node7",
    }
    job = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready_file = home / ".local/state/deepbox/slurm/41.ready"
    try:
        waited = threading.Event()
        for _ in range(100):
            if ready_file.exists():
                break
            waited.wait(0.1)
        lines = ready_file.read_text().splitlines()
        socket_path = next(line for line in lines if line.startswith("socket=")).removeprefix("socket=")
        # This machine's own host keys, as a node's (none, where it runs no sshd).
        keys = sorted(Path("/etc/ssh").glob("ssh_host_*_key.pub"))
        assert [line for line in lines if not line.startswith(("socket=", "hostkey="))] == [
            "node=node7",
            "gpus=2,3",
            "end=1",
        ]
        assert len([line for line in lines if line.startswith("hostkey=")]) == len(keys)
        assert Path(socket_path).name == "deepbox-41.sock" and stat_is_socket(socket_path)
    finally:
        job.terminate()  # scancel and the time limit send TERM
        job.wait(timeout=20)
    recorded = calls.read_text().splitlines()
    assert recorded[0] == "ps -aq --filter label=deepbox.box=alice-proj"  # a box left here by an earlier job
    assert "rm -f -v -t 3 c0ffee" in recorded
    assert "ps -aq --filter label=deepbox.slurm.job=41" in recorded
    assert not ready_file.exists() and job.returncode == 0


def stat_is_socket(path: str) -> bool:
    return stat.S_ISSOCK(Path(path).stat().st_mode)


def test_the_epilog_is_valid_shell():
    for name in ("slurm-epilog.sh", "slurm-job.sh"):
        text = (Path(slurm.__file__).parent / "assets" / name).read_text()
        assert subprocess.run(["bash", "-n"], input=text, text=True, check=False).returncode == 0, name
