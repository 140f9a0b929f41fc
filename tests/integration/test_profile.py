"""The box's own profile: every capability dropped but the few sshd, JupyterLab and sudo need,
no-new-privileges while sudo is off, a pids limit. Both sides are proven on one box: what the user does
works, and what was removed is refused, even to root in the box."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import PREFIX, Project, remove_box

from deepbox.profile import BASE_CAPABILITIES, PIDS_LIMIT, SUDO_CAPABILITIES

OWNER = (4242, 4243)
RAW_SOCKET = "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)"
# A setuid-root copy of `id`, made by root: under no-new-privileges it cannot raise the box user.
SETUID_COPY = "cp /usr/bin/id /usr/local/bin/rootid && chmod 4755 /usr/local/bin/rootid"


def _config(sudo: bool) -> str:
    return f"jupyter = true\n[user]\nsudo = {'true' if sudo else 'false'}"


@pytest.fixture(scope="module")
def box(tmp_path_factory, home, docker_client):
    path = tmp_path_factory.mktemp("profile") / "profile"
    path.mkdir()
    os.chown(path, *OWNER)
    project = Project(path, f"{PREFIX}-profile", home)
    project.write_config(_config(sudo=False))
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    project.up = json.loads(result.out)
    yield project
    remove_box(docker_client, project.name)


def _container(docker_client, project: Project):
    return docker_client.containers.get(f"deepbox-{project.name}")


def _as_root(container, command: str) -> tuple[int, str]:
    code, output = container.exec_run(["sh", "-c", command], user="0")
    return code, output.decode()


def _jupyter_answers(url: str) -> None:
    parts = urlparse(url)
    status = f"{parts.scheme}://{parts.netloc}/api/status?token={parse_qs(parts.query)['token'][0]}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(status, timeout=5) as response:  # noqa: S310 - loopback URL of our box
                assert response.status == 200
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_the_box_works_under_its_profile_and_refuses_what_was_dropped(box, docker_client):
    container = _container(docker_client, box)
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == sorted(BASE_CAPABILITIES)
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == PIDS_LIMIT
    assert host["Init"] is True and host["Privileged"] is False
    assert host["NetworkMode"] != "host" and host["PidMode"] == "" and host["IpcMode"] != "host"
    assert {binding["HostIp"] for bindings in host["PortBindings"].values() for binding in bindings} == {"127.0.0.1"}

    # The box user's work: a login, Python, files in the workspace, JupyterLab.
    ran = box.ssh("cd /workspace && python -c 'print(6 * 7)' > answer.txt && cat answer.txt && id -u")
    assert ran.code == 0, ran.err
    assert ran.out.split() == ["42", str(OWNER[0])]
    assert (box.path / "answer.txt").stat().st_uid == OWNER[0]
    # A login with a terminal: sshd ends it when it cannot write the login's audit record (AUDIT_WRITE).
    terminal = subprocess.run(
        ["ssh", "-F", str(box.home / ".ssh/config"), "-o", "BatchMode=yes", "-tt", box.alias],
        input="echo tty-$((6 * 7))\nexit\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "tty-42" in terminal.stdout, terminal.stdout + terminal.stderr
    _jupyter_answers(box.up["jupyter_url"])

    # What was removed is refused, to root in the box too.
    code, output = _as_root(container, f'python3 -c "{RAW_SOCKET}"')
    assert code != 0 and "PermissionError: [Errno 1] Operation not permitted" in output, output
    code, output = _as_root(container, "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t")
    assert code != 0 and "permission denied" in output, output
    code, output = _as_root(container, "mknod /tmp/disk b 8 0")
    assert code != 0 and "Operation not permitted" in output, output
    code, output = _as_root(container, SETUID_COPY)
    assert code == 0, output
    elevated = box.ssh("/usr/local/bin/rootid -u")
    assert elevated.code == 0, elevated.err
    assert elevated.out.strip() == str(OWNER[0]), "a setuid-root binary must not raise the box user"
    # A fork bomb meets the pids limit, not the host's.
    code, output = _as_root(container, "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
    assert output.strip() == str(PIDS_LIMIT)


def test_with_sudo_on_sudo_works_and_raw_sockets_stay_refused(box, docker_client):
    box.write_config(_config(sudo=True))
    result = box.deepbox("up", "--json")
    assert result.code == 0, result.err
    container = _container(docker_client, box)
    host = container.attrs["HostConfig"]
    assert sorted(host["CapAdd"]) == sorted(BASE_CAPABILITIES + SUDO_CAPABILITIES)
    assert not host["SecurityOpt"], "no-new-privileges would disarm sudo's setuid bit"

    ran = box.ssh("sudo -n id -u && sudo -n touch /root/made-by-sudo && sudo -n ls /root")
    assert ran.code == 0, ran.err
    assert ran.out.split() == ["0", "made-by-sudo"]
    assert ran.err == ""  # no audit or rlimit warning from sudo
    refused = box.ssh(f'sudo -n python3 -c "{RAW_SOCKET}"')
    assert refused.code != 0 and "PermissionError: [Errno 1] Operation not permitted" in refused.err
    _jupyter_answers(json.loads(result.out)["jupyter_url"])
