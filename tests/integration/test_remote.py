"""A box on a server's engine: a real server here (sshd + its own dockerd in a container), reached over ssh.

The server container runs Debian's docker.io inside (Docker in Docker) with the capabilities this
kernel allows instead of --privileged. Its users tester and tester2 may use its Docker; tester3 may
not; tester4 may not either, but runs a rootless Podman of its own. One test adds tester-ml, whose box
names can meet tester's. The box's SSH port stays on the
server's loopback; the alias reaches it with ProxyJump.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import random
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BASE_IMAGE, PREFIX, Project, deepbox_command
from test_ports import free_port, http_get, serve

if "bench_faults" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("bench_faults", Path(__file__).parents[2] / "bench" / "faults.py")
    assert _spec is not None and _spec.loader is not None
    sys.modules["bench_faults"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
    _spec.loader.exec_module(sys.modules["bench_faults"])
faults = sys.modules["bench_faults"]

SERVER_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      docker.io openssh-server rsync iptables ca-certificates python3 podman uidmap slirp4netns catatonit \\
 && rm -rf /var/lib/apt/lists/*
RUN useradd -m -s /bin/bash -G docker tester && useradd -m -s /bin/bash -G docker tester2 \\
 && useradd -m -s /bin/bash tester3 && useradd -m -s /bin/bash tester4 && mkdir -p /run/sshd
CMD ["sh", "-c", "ssh-keygen -A && /usr/sbin/sshd && exec dockerd >/var/log/dockerd.log 2>&1"]
"""
# What this kernel allows for Docker in Docker instead of --privileged (the SDK has no systempaths).
DIND_OPTIONS = [
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--security-opt=systempaths=unconfined",
    "-v=/sys/fs/cgroup:/sys/fs/cgroup",
    "--tmpfs=/var/lib/docker:exec",
    # tester4's rootless Podman: its storage on a tmpfs (overlay cannot sit on the container's overlay)
    # and the tun device slirp4netns needs.
    "--tmpfs=/var/lib/rootless:exec,mode=1777",
    "--device=/dev/net/tun",
]


class Server:
    def __init__(self, container, port: int, home: Path) -> None:
        self.container, self.port, self.home = container, port, home
        self.client_config = ""  # the user's own ssh config block for this server

    def url(self, user: str = "tester") -> str:
        return f"ssh://{user}@127.0.0.1:{self.port}"

    def sh(self, command: str) -> str:
        code, output = self.container.exec_run(["sh", "-c", command])
        assert code == 0, output.decode()
        return output.decode()


@pytest.fixture(scope="module")
def server(docker_client, home, tmp_path_factory):
    image_tag = f"{PREFIX}-server:test"
    docker_client.images.build(
        fileobj=io.BytesIO(SERVER_DOCKERFILE.encode()), tag=image_tag, rm=True, labels={"deepbox.test": PREFIX}
    )
    name = f"{PREFIX}-server"
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            f"--name={name}",
            f"--label=deepbox.test={PREFIX}",
            "-p=127.0.0.1::22",
            *DIND_OPTIONS,
            image_tag,
        ],
        check=True,
        capture_output=True,
    )
    container = docker_client.containers.get(name)
    ssh_config = home / ".ssh" / "config"
    saved_config = ssh_config.read_bytes() if ssh_config.exists() else None
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
        srv = Server(container, port, home)
        keys = tmp_path_factory.mktemp("server-keys")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "id")], check=True)
        public = (keys / "id.pub").read_text().strip()
        for user in ("tester", "tester2", "tester3", "tester4"):
            srv.sh(
                f"install -d -m 700 -o {user} -g {user} /home/{user}/.ssh && echo '{public}' > "
                f"/home/{user}/.ssh/authorized_keys && chown {user}: /home/{user}/.ssh/authorized_keys"
            )
        for _ in range(100):  # sshd and dockerd start in the background
            code, _ = container.exec_run(["docker", "info"])
            if code == 0 and "ssh-ed25519" in srv.sh("cat /etc/ssh/ssh_host_ed25519_key.pub || true"):
                break
            time.sleep(0.3)
        host_key = srv.sh("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
        (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
        known = home / ".ssh" / "known_hosts_server"
        known.write_text(f"[127.0.0.1]:{port} {' '.join(host_key)}\n")
        # The user's own ssh config for their server, as it would be before deepbox.
        srv.client_config = (
            f"\nHost 127.0.0.1\n    IdentityFile {keys / 'id'}\n    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known}\n    StrictHostKeyChecking yes\n"
        )
        with ssh_config.open("a") as config:
            config.write(srv.client_config)
        # The server has no registry either: give its engine the base image.
        save = subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["docker", "exec", "-i", container.name, "docker", "load"], stdin=save.stdout, check=True)
        assert save.wait() == 0
        yield srv
    finally:
        _close_masters(ssh_config)
        container.remove(force=True, v=True)
        docker_client.images.remove(image_tag, force=True)
        if saved_config is not None:
            ssh_config.write_bytes(saved_config)


def _close_masters(ssh_config: Path, home: Path | None = None) -> None:
    """End the ControlMaster processes this module's commands left (server and box connections)."""
    import os

    from deepbox import ssh

    saved = os.environ["HOME"]
    if home is not None:
        os.environ["HOME"] = str(home)
    try:
        folder = ssh.control_dir()
    finally:
        os.environ["HOME"] = saved
    if not folder.is_dir():
        return
    for socket_path in folder.iterdir():
        subprocess.run(
            ["ssh", "-F", str(ssh_config), "-o", f"ControlPath={socket_path}", "-O", "exit", "unused"],
            capture_output=True,
            check=False,
            timeout=10,
        )


def remote_project(tmp_path, home, slug: str, body: str = "") -> Project:
    path = tmp_path / slug
    path.mkdir()
    project = Project(path, f"{PREFIX}-{slug}", home)
    project.write_config(body)
    return project


def server_containers(server: Server) -> list[str]:
    return server.sh("docker ps -a --format '{{.Names}} {{.Status}}'").splitlines()


def test_box_on_a_server_end_to_end(server, tmp_path, home, docker_client):
    forwarded = free_port()  # a box port whose own number is free on this machine
    body = f'host = "{server.url()}"\nframeworks = ["numpy"]\nports = [{forwarded}]'
    project = remote_project(tmp_path, home, "remote", body)
    (project.path / "hello.py").write_text("import numpy, os\nprint('hello', os.getcwd(), numpy.__version__)\n")
    (project.path / ".gitignore").write_text("data/\n")
    (project.path / "data").mkdir()
    (project.path / "data" / "big.bin").write_bytes(b"0" * 1024)

    doctor = project.deepbox("doctor", "--json")
    assert doctor.code == 0, doctor.out + doctor.err
    checks = {row["check"]: row for row in json.loads(doctor.out)}
    assert checks["engine"]["level"] == "ok" and checks["disk"]["message"].startswith(server.url())

    dry = project.deepbox("sync", "--dry-run")
    assert dry.code == 0, dry.err
    assert "hello.py" in dry.out and "big.bin" not in dry.out
    synced = project.deepbox("sync")
    assert synced.code == 0, synced.err
    assert server.sh("ls /home/tester/deepbox/" + project.name).split() == ["deepbox.toml", "hello.py"]

    up = project.deepbox("up", "--json", timeout=1500)
    assert up.code == 0, up.err
    data = json.loads(up.out)
    assert data["user"] == "tester" and data["host"] == "127.0.0.1"

    # Through the server with strict host key checking; the box sees the synced project.
    ran = project.ssh("cd /workspace && python hello.py")
    assert ran.code == 0, ran.err
    assert ran.out.startswith("hello /workspace 2.")
    block = (home / ".local/share/deepbox/ssh_config").read_text()
    assert f"ProxyJump tester@127.0.0.1:{server.port}" in block

    # The box's port is published on the server's loopback only: not on this machine, not without the jump.
    published = server.sh("docker ps --format '{{.Ports}}'")
    assert f"127.0.0.1:{data['port']}->22/tcp" in published
    assert str(forwarded) not in published  # ports are forwarded by the alias, not published on the server

    # ports: the alias forwards this machine's 127.0.0.1:PORT through the box's sshd while a session is open
    # (the ControlMaster the commands above opened), so a server on the box's own loopback is reached too.
    assert data["ports"] == [
        {
            "box_port": forwarded,
            "host_port": forwarded,
            "url": f"http://127.0.0.1:{forwarded}",
            "via": f"forwarded by ssh {project.alias}",
        }
    ]
    assert f"    LocalForward 127.0.0.1:{forwarded} 127.0.0.1:{forwarded}\n" in block
    serve(project, forwarded, "remote-tensorboard", bind="127.0.0.1")
    assert http_get(f"http://127.0.0.1:{forwarded}/").strip() == "remote-tensorboard"
    listed = project.deepbox("ports")
    assert listed.code == 0, listed.err
    assert listed.out.splitlines() == [
        f"http://127.0.0.1:{forwarded}  (box port {forwarded}, forwarded by ssh {project.alias})",
        f"ssh forwards these ports while a session to {project.alias} is open: `ssh {project.alias}`, an IDE's, "
        "or `deepbox ports --forward`.",
    ]
    # Without a session nothing listens here; `deepbox ports --forward` holds one open until stopped.
    ssh_config = str(home / ".ssh" / "config")
    subprocess.run(["ssh", "-F", ssh_config, "-O", "exit", project.alias], capture_output=True, check=False)
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{forwarded}/", timeout=0)
    holding = subprocess.Popen(deepbox_command(project.path, "ports", "--forward"), stdout=subprocess.DEVNULL)
    try:
        assert http_get(f"http://127.0.0.1:{forwarded}/").strip() == "remote-tensorboard"
    finally:
        holding.terminate()
        holding.wait(timeout=10)
    direct = project.ssh("true", "-o", "ProxyJump=none", "-o", "ControlPath=none", "-o", "ConnectTimeout=5")
    assert direct.code != 0
    outer = docker_client.containers.get(server.container.name).attrs["NetworkSettings"]["Ports"]
    assert list(outer) == ["22/tcp"]

    # A new file on this machine reaches the box with the next sync.
    (project.path / "second.py").write_text("print('second')\n")
    assert project.deepbox("sync").code == 0
    assert project.ssh("python /workspace/second.py").out.strip() == "second"

    # PyCharm reaches the box by its alias (the jump is in the ssh config) and uploads on save.
    ide = project.deepbox("ide", "pycharm")
    assert ide.code == 0, ide.err
    assert f'host="{project.alias}"' in (project.path / ".idea" / "sshConfigs.xml").read_text()
    assert 'autoUpload="Always"' in (project.path / ".idea" / "deployment.xml").read_text()

    status = project.deepbox("status", "--json")
    assert status.code == 0, status.err
    assert [row["box"] for row in json.loads(status.out)] == [f"tester-{project.name}"]
    everywhere = project.deepbox("status", "--all-hosts", "--json")
    assert everywhere.code == 0, everywhere.err
    assert {"box": f"tester-{project.name}", "host": server.url()}.items() <= next(
        row for row in json.loads(everywhere.out) if row["host"]
    ).items()
    local = docker_client.containers.list(all=True)
    assert not any(c.labels.get("deepbox.box", "").endswith(project.name) for c in local)

    down = project.deepbox("down")
    assert down.code == 0, down.err
    assert any(line.startswith(f"deepbox-tester-{project.name} Exited") for line in server_containers(server))
    rm = project.deepbox("rm", "--volumes")
    assert rm.code == 0, rm.err
    assert server_containers(server) == []
    assert server.sh(f"cat /home/tester/deepbox/{project.name}/second.py").strip() == "print('second')"


def _other_user(server: Server, tmp_path: Path, user: str, name: str) -> tuple[Project, dict[str, str]]:
    """A project of server user `user`, on their own machine (another HOME), named `name`."""
    other_home = tmp_path / f"{user}-home"
    (other_home / ".ssh").mkdir(parents=True)
    (other_home / ".ssh" / "config").write_text(server.client_config)
    path = tmp_path / user
    path.mkdir()
    project = Project(path, name, other_home)
    project.write_config(f'host = "{server.url(user)}"\nframeworks = []')
    return project, {"HOME": str(other_home)}


def test_two_users_on_one_server_get_their_own_boxes_and_ports(server, tmp_path, home):
    """B's commands never act on A's box: B's key does not open it, B's status does not list it, and where
    the names meet (user tester-ml's box NAME and user tester's box ml-NAME) down, logs and rm refuse."""
    first = remote_project(tmp_path, home, "shared", f'host = "{server.url()}"\nframeworks = []')
    first.name = f"ml-{first.name}"
    first.write_config(f'host = "{server.url()}"\nframeworks = []')
    # Another user with a box of the same name on the same server, and one whose name meets A's.
    second, as_other = _other_user(server, tmp_path, "tester2", first.name)
    server.sh(
        "useradd -m -s /bin/bash -G docker tester-ml && cp -a /home/tester/.ssh /home/tester-ml/ "
        "&& chown -R tester-ml: /home/tester-ml/.ssh"
    )
    third, as_third = _other_user(server, tmp_path, "tester-ml", first.name.removeprefix("ml-"))
    a_box = f"deepbox-tester-{first.name}"
    try:
        one = first.deepbox("up", "--json", timeout=1500)
        assert one.code == 0, one.err
        two = second.deepbox("up", "--json", timeout=1500, env=as_other)
        assert two.code == 0, two.err
        a_port, b_port = json.loads(one.out)["port"], json.loads(two.out)["port"]
        assert a_port != b_port
        names = {line.split()[0] for line in server_containers(server)}
        assert names == {a_box, f"deepbox-tester2-{first.name}"}
        assert first.ssh("id -un").out.strip() == "tester"
        assert second.ssh("id -un").out.strip() == "tester2"

        # B's own key, through B's alias (and so B's jump), as A or as B, at A's box port: refused. (A's box
        # has another host key than B's alias pins; it is waved through here to reach the key check.)
        for user in ("tester", "tester2"):
            knock = second.ssh(
                "true", "-o", f"Port={a_port}", "-o", f"User={user}", "-o", "ControlPath=none",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
            )  # fmt: skip
            assert knock.code == 255 and "Permission denied (publickey)" in knock.err, knock.err

        # Each user's status lists their own boxes only; B's down, logs and rm act on B's box only.
        mine = json.loads(second.deepbox("status", "--json", env=as_other).out)
        assert [row["box"] for row in mine] == [f"tester2-{first.name}"]
        assert second.deepbox("down", env=as_other).code == 0
        assert second.deepbox("logs", env=as_other).code == 0
        assert second.deepbox("rm", "--volumes", env=as_other).code == 0
        assert [line.split()[0] for line in server_containers(server)] == [a_box]

        # tester-ml's box "NAME" has the engine name of tester's "ml-NAME": the owner label keeps them apart.
        refused = (
            f"Box 'tester-ml-{third.name}' on this server belongs to its user tester, not to tester-ml; deepbox acts "
            'only on your own boxes: set name = "..." in deepbox.toml to give yours another name.'
        )
        assert json.loads(third.deepbox("status", "--json", env=as_third).out) == []
        for command in (["up"], ["down"], ["logs"], ["rm", "--volumes"], ["status", third.name]):
            result = third.deepbox(*command, env=as_third)
            assert result.code == 1, (command, result.out, result.err)
            assert result.err == f"Error: {refused}\n", (command, result.err)
        assert any(line.startswith(f"{a_box} Up") for line in server_containers(server))
        assert first.ssh("echo still mine").out.strip() == "still mine"

        # A removes the container and keeps the volumes (its home, its host key): tester-ml's rm --volumes
        # finds nothing of its own and leaves them.
        assert first.deepbox("rm").code == 0
        a_volumes = f"docker volume ls -q --filter label=deepbox.box=tester-{first.name}"
        kept = server.sh(a_volumes).split()
        assert len(kept) == 2
        gone = third.deepbox("rm", "--volumes", env=as_third)
        assert gone.code == 1
        assert gone.err == (
            f"Error: There is no box named 'tester-ml-{third.name}'; `deepbox status` lists the boxes, `deepbox up` "
            "makes one.\n"
        )
        assert server.sh(a_volumes).split() == kept
    finally:
        first.deepbox("rm", "--volumes")
        second.deepbox("rm", "--volumes", env=as_other)
        _close_masters(second.home / ".ssh" / "config", second.home)
        _close_masters(third.home / ".ssh" / "config", third.home)
    assert server_containers(server) == []


ROOTLESS_SETUP = """
uid=$(id -u tester4)
chmod 666 /dev/net/tun
install -d -m 700 -o tester4 -g tester4 /run/user/$uid /var/lib/rootless/tester4
install -d -o tester4 -g tester4 /run/user/$uid/podman /home/tester4/.config/containers
printf '[containers]\\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\\n' \\
  > /home/tester4/.config/containers/containers.conf
printf '[storage]\\ndriver = "overlay"\\ngraphroot = "/var/lib/rootless/tester4/storage"\\n' \\
  > /home/tester4/.config/containers/storage.conf
chown -R tester4: /home/tester4/.config
"""


def _as_user(user: str, command: str) -> list[str]:
    return ["runuser", "-u", user, "--", "sh", "-c", f"export XDG_RUNTIME_DIR=/run/user/$(id -u); {command}"]


def _as_tester4(command: str) -> list[str]:
    return _as_user("tester4", command)


def _start_rootless_podman(server: Server, user: str) -> None:
    """ROOTLESS_SETUP for `user`, their Podman's API socket and the base image in their own storage; once."""
    server.sh(ROOTLESS_SETUP.replace("tester4", user))
    socket = f"/run/user/$(id -u {user})/podman/podman.sock"
    if server.container.exec_run(["sh", "-c", f'[ -S "{socket}" ]'])[0] != 0:
        server.container.exec_run(
            _as_user(user, 'podman system service --time=0 "unix://$XDG_RUNTIME_DIR/podman/podman.sock"'), detach=True
        )
    if server.container.exec_run(_as_user(user, f"podman image exists {BASE_IMAGE}"))[0] != 0:
        save = subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["docker", "exec", "-i", server.container.name, *_as_user(user, "podman load")],
                       stdin=save.stdout, check=True, capture_output=True)  # fmt: skip
        assert save.wait() == 0
    for _ in range(100):  # the service makes its socket in the background
        if server.container.exec_run(["sh", "-c", f'[ -S "{socket}" ]'])[0] == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{user}'s Podman made no socket: {server.sh('ls -la /run/user/*/podman || true')}")


def test_a_server_user_without_the_docker_group_uses_their_rootless_podman(server, tmp_path, home):
    """No docker group on the server: the user's own rootless Podman serves the same host = "ssh://..."."""
    _start_rootless_podman(server, "tester4")
    project = remote_project(tmp_path, home, "rootless", f'host = "{server.url("tester4")}"\nframeworks = ["numpy"]')
    assert project.deepbox("sync").code == 0
    try:
        up = project.deepbox("up", "--json", timeout=1500)
        assert up.code == 0, up.err
        assert json.loads(up.out)["user"] == "tester4"
        uid = server.sh("id -u tester4").strip()
        ran = project.ssh("id -u && touch /workspace/from-box")
        assert ran.code == 0, ran.err
        assert ran.out.strip() == uid, "--userns=keep-id: the server user's own UID in the box"
        owner = server.sh(f"stat -c %u /home/tester4/deepbox/{project.name}/from-box").strip()
        assert owner == uid
        doctor = json.loads(project.deepbox("doctor", "--json").out)
        engine = next(row for row in doctor if row["check"] == "engine")
        assert engine["message"].startswith("rootless Podman ") and server.url("tester4") in engine["message"]
        assert "docker" not in server.sh("id -Gn tester4")
    finally:
        assert project.deepbox("rm", "--volumes").code == 0
    assert "deepbox" not in server.sh("runuser -u tester4 -- sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) podman ps -a'")


def test_two_rootless_users_outside_the_docker_group_each_reach_only_their_own_box(server, tmp_path, home):
    """Two server users outside the docker group, each on their own rootless Podman, with boxes of one name up
    at once: each user's key opens only their own box, each user's status, down and rm see only their own
    box, and each box's files on the server belong to its user."""
    server.sh(
        "id tester5 >/dev/null 2>&1 || { useradd -m -s /bin/bash tester5 && cp -a /home/tester4/.ssh /home/tester5/ "
        "&& chown -R tester5: /home/tester5/.ssh; }"
    )
    users = ("tester4", "tester5")
    for user in users:
        _start_rootless_podman(server, user)
    name = f"{PREFIX}-pair"
    (a, as_a), (b, as_b) = (_other_user(server, tmp_path, user, name) for user in users)
    uid = {user: server.sh(f"id -u {user}").strip() for user in users}

    def engine_boxes(user: str) -> list[str]:
        listing = server.sh(shlex.join(_as_user(user, "podman ps -a --format '{{.Names}} {{.Status}}'")))
        return [line for line in listing.splitlines() if "deepbox" in line]

    try:
        ports = {}
        for user, project, env in (("tester4", a, as_a), ("tester5", b, as_b)):
            assert "docker" not in server.sh(f"id -Gn {user}").split()
            assert project.deepbox("sync", env=env).code == 0
            up = project.deepbox("up", "--json", timeout=1500, env=env)
            assert up.code == 0, up.err
            ports[user] = json.loads(up.out)["port"]
        for user, project in (("tester4", a), ("tester5", b)):  # both up at once
            ran = project.ssh("id -un && touch /workspace/from-box")
            assert ran.code == 0, ran.err
            assert ran.out.strip() == user
            assert [line.split()[0] for line in engine_boxes(user)] == [f"deepbox-{user}-{name}"]

        # Each user's own key, through their own alias and jump, at the other's box port, as either user: refused.
        for project, other in ((b, "tester4"), (a, "tester5")):
            for login in users:
                knock = project.ssh(
                    "true", "-o", f"Port={ports[other]}", "-o", f"User={login}", "-o", "ControlPath=none",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
                )  # fmt: skip
                assert knock.code == 255 and "Permission denied (publickey)" in knock.err, knock.err
        # B's user cannot even reach A's engine: A's Podman socket is in A's private runtime folder.
        code, output = server.container.exec_run(
            _as_user("tester5", f"podman --url unix:///run/user/{uid['tester4']}/podman/podman.sock ps -a")
        )
        assert code != 0 and b"permission denied" in output.lower(), output

        # B's status lists B's box only; B's down and rm --volumes act on B's box only.
        assert [row["box"] for row in json.loads(b.deepbox("status", "--json", env=as_b).out)] == [f"tester5-{name}"]
        assert [row["box"] for row in json.loads(a.deepbox("status", "--json", env=as_a).out)] == [f"tester4-{name}"]
        assert b.deepbox("down", env=as_b).code == 0
        assert engine_boxes("tester4")[0].startswith(f"deepbox-tester4-{name} Up")
        assert b.deepbox("rm", "--volumes", env=as_b).code == 0
        assert engine_boxes("tester5") == []
        assert a.ssh("echo still mine").out.strip() == "still mine"

        # Each box's files on the server are its user's: the synced folder, what the box wrote, its storage.
        for user in users:
            folder = f"/home/{user}/deepbox/{name}"
            assert server.sh(f"stat -c %U {folder}/from-box {folder}").split() == [user, user]
            assert server.sh(f"find {folder} /var/lib/rootless/{user} -maxdepth 0 ! -user {user}") == ""
            assert server.sh(f"stat -c '%U %a' /run/user/{uid[user]}").split() == [user, "700"]
    finally:
        for project, env in ((a, as_a), (b, as_b)):
            project.deepbox("rm", "--volumes", env=env)
            _close_masters(project.home / ".ssh" / "config", project.home)
    assert engine_boxes("tester4") == [] and engine_boxes("tester5") == []


def test_faults_are_one_sentence_and_leave_nothing(server, tmp_path, home):
    closed = remote_project(tmp_path, home, "closed", 'host = "ssh://tester@127.0.0.1:1"\nframeworks = []')
    result = closed.deepbox("up")
    assert result.code == 1 and "Cannot reach the server tester@127.0.0.1:1" in result.err
    assert "Traceback" not in result.err

    denied = remote_project(tmp_path, home, "denied", f'host = "{server.url("tester3")}"\nframeworks = []')
    result = denied.deepbox("up")
    assert result.code == 1 and "docker" in result.err and "Traceback" not in result.err

    server.sh("python3 -m http.server 2299 --bind 127.0.0.1 >/dev/null 2>&1 & sleep 1")
    taken = remote_project(tmp_path, home, "taken", f'host = "{server.url()}"\nframeworks = []\n[ssh]\nport = 2299')
    result = taken.deepbox("up", timeout=1500)
    assert result.code == 1 and "Port 2299 on the server" in result.err, result.err
    assert server_containers(server) == []


def test_sigkilled_syncs_leave_nothing_behind_and_the_next_sync_completes(server, tmp_path):
    """A sample of bench/faults.py --host: `deepbox sync` of 300 small files and a larger one, SIGKILLed alone
    at random moments; rsync and its ssh end with it, and a plain sync then makes the server folder whole."""
    seed = int(os.environ.get("DEEPBOX_FAULTS_SEED") or secrets.randbelow(2**31))
    print(f"faults seed {seed}")
    box_home = tmp_path / "sync-home"
    (box_home / ".ssh").mkdir(parents=True)
    (box_home / ".ssh" / "config").write_text(server.client_config)
    (tmp_path / "killsync").mkdir()
    box = faults.Box(tmp_path / "killsync", box_home, f"{PREFIX}-killsync", BASE_IMAGE, host=server.url())
    box.write_config()
    try:
        schedule = random.Random(seed)  # noqa: S311 (a reproducible schedule, not a secret)
        trials = faults.run_trials(box, int(os.environ.get("DEEPBOX_FAULTS_TRIALS", "5")), schedule)
    finally:
        faults.clean(box)
    failed = [f"sync killed at {t.delay:.2f} s: {'; '.join(t.problems)}" for t in trials if t.problems]
    assert not failed, f"seed {seed}: {failed}"
    assert server.sh(f"ls /home/tester/deepbox/ | grep -c {box.name} || true").strip() == "0"
