"""SSH clients beyond OpenSSH reach a real box: paramiko and asyncssh (Python tooling; PyCharm's own
library works the same way: a pinned host key, exec, SFTP uploads), each trusting only the host key
deepbox pinned, and ssh-audit's policy check of the box's sshd."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import paramiko
import pytest
from conftest import PREFIX, Project, remove_box

POLICY = Path(__file__).with_name("sshd-policy.txt")


@dataclass(frozen=True)
class Login:
    """What an IDE reads from the alias deepbox wrote: where, who, which key, which pinned host key."""

    alias: str
    host: str
    port: int
    user: str
    identity: Path
    known_hosts: Path


@pytest.fixture(scope="module")
def client_box(tmp_path_factory, home, docker_client):
    path = tmp_path_factory.mktemp("clients") / "cli"
    path.mkdir()
    os.chown(path, 4242, 4243)
    project = Project(path, f"{PREFIX}-clients", home)
    project.write_config()
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    project.up = json.loads(result.out)
    yield project
    remove_box(docker_client, project.name)


@pytest.fixture(scope="module")
def login(client_box) -> Login:
    resolved = subprocess.run(
        ["ssh", "-G", "-F", str(client_box.home / ".ssh/config"), client_box.alias],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    options: dict[str, str] = {}
    for line in resolved.splitlines():
        keyword, _, value = line.partition(" ")
        options.setdefault(keyword, value)
    assert options["hostkeyalias"] == client_box.alias
    assert options["stricthostkeychecking"] == "true"
    return Login(
        alias=client_box.alias,
        host=options["hostname"],
        port=int(options["port"]),
        user=options["user"],
        identity=Path(options["identityfile"]),
        known_hosts=Path(options["userknownhostsfile"].split()[0]),
    )


def _other_host_key() -> str:
    """A valid ed25519 public key that is not the box's."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def _paramiko_client(login: Login, pinned: dict[str, object]):
    """A paramiko client that knows only the given host keys (by type) for the box and refuses any other."""
    client = paramiko.SSHClient()
    for key_type, key in pinned.items():
        client.get_host_keys().add(f"[{login.host}]:{login.port}", key_type, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _connect(client, login: Login) -> None:
    client.connect(
        login.host, login.port, login.user, key_filename=str(login.identity),
        look_for_keys=False, allow_agent=False, timeout=30, banner_timeout=30, auth_timeout=30,
    )  # fmt: skip


def test_paramiko_execs_and_transfers_over_sftp_with_the_pinned_host_key(client_box, login, tmp_path):
    # deepbox's known_hosts, read by paramiko itself; the entry is under the alias (ssh's HostKeyAlias).
    pinned = paramiko.HostKeys(str(login.known_hosts)).lookup(login.alias)
    assert pinned is not None and list(pinned.keys()) == ["ssh-ed25519"]
    client = _paramiko_client(login, dict(pinned))
    _connect(client, login)
    try:
        _, stdout, stderr = client.exec_command("command -v python && id -u && pwd")
        assert stdout.channel.recv_exit_status() == 0, stderr.read().decode()
        assert stdout.read().decode().split() == ["/opt/venv/bin/python", "4242", f"/home/{login.user}"]

        upload = tmp_path / "helpers.bin"
        upload.write_bytes(os.urandom(1 << 20))
        with client.open_sftp() as sftp:
            sftp.put(str(upload), "/workspace/helpers-paramiko.bin")
            sftp.get("/workspace/helpers-paramiko.bin", str(tmp_path / "back.bin"))
    finally:
        client.close()
    landed = client_box.path / "helpers-paramiko.bin"
    assert landed.read_bytes() == upload.read_bytes() == (tmp_path / "back.bin").read_bytes()
    assert (landed.stat().st_uid, landed.stat().st_gid) == (4242, 4243)


def test_paramiko_refuses_the_box_under_another_pinned_key_or_none(login):
    other = paramiko.PKey.from_type_string("ssh-ed25519", base64.b64decode(_other_host_key().split()[1]))
    client = _paramiko_client(login, {"ssh-ed25519": other})
    with pytest.raises(paramiko.BadHostKeyException) as wrong:
        _connect(client, login)
    client.close()
    assert wrong.value.expected_key == other
    assert wrong.value.key != other

    unknown = _paramiko_client(login, {})
    with pytest.raises(paramiko.SSHException) as missing:
        _connect(unknown, login)
    unknown.close()
    assert str(missing.value) == f"Server '[{login.host}]:{login.port}' not found in known_hosts"


async def _asyncssh_session(login: Login, upload: Path, back: Path) -> str:
    async with asyncssh.connect(
        login.host, login.port, username=login.user, client_keys=[str(login.identity)],
        # deepbox's known_hosts with the alias it pins the key under, as ssh's HostKeyAlias does.
        known_hosts=str(login.known_hosts), host_key_alias=login.alias,
        agent_path=None, config=[], connect_timeout=30,
    ) as connection:  # fmt: skip
        result = await connection.run("command -v python && id -u", check=True, timeout=30)
        async with connection.start_sftp_client() as sftp:
            await sftp.put(str(upload), "/workspace/helpers-asyncssh.bin")
            await sftp.get("/workspace/helpers-asyncssh.bin", str(back))
        return str(result.stdout)


def test_asyncssh_execs_and_transfers_over_sftp_with_the_pinned_host_key(client_box, login, tmp_path):
    upload = tmp_path / "helpers.bin"
    upload.write_bytes(os.urandom(1 << 20))
    out = asyncio.run(_asyncssh_session(login, upload, tmp_path / "back.bin"))
    assert out.split() == ["/opt/venv/bin/python", "4242"]
    landed = client_box.path / "helpers-asyncssh.bin"
    assert landed.read_bytes() == upload.read_bytes() == (tmp_path / "back.bin").read_bytes()


def test_asyncssh_refuses_the_box_under_another_pinned_key(login):
    async def connect() -> None:
        wrong = asyncssh.import_public_key(_other_host_key())
        async with asyncssh.connect(
            login.host, login.port, username=login.user, client_keys=[str(login.identity)],
            known_hosts=([wrong], [], []), agent_path=None, config=[], connect_timeout=30,
        ):  # fmt: skip
            pass

    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        asyncio.run(connect())


def test_sshd_passes_the_ssh_audit_policy(login):
    tool = str(Path(sys.executable).parent / "ssh-audit")
    audit = subprocess.run(
        [tool, "-P", str(POLICY), "-t", "10", "-jj", f"{login.host}:{login.port}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    report = json.loads(audit.stdout)
    assert report["errors"] == [], report["errors"]
    assert report["passed"] is True
    assert audit.returncode == 0, audit.stdout + audit.stderr
