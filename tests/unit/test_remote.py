"""Boxes on a server: host URLs, the config resolved against the server account, rsync's command line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepbox import remote
from deepbox.config import BoxConfig, resolve
from deepbox.engine import DEFAULT_SOCKET, Location
from deepbox.errors import ConfigError
from deepbox.model import Account
from deepbox.site import LocalSite, ServerSite

ACCOUNT = Account(name="alice", uid=1500, gid=1600, home="/srv/home/alice")
URL = "ssh://alice@gpu1:2222"


def remote_spec(tmp_path: Path, **settings):
    config = BoxConfig(name="exp", host=URL, **settings)
    return resolve(config, tmp_path, tmp_path / "deepbox.toml", ACCOUNT, URL)


@pytest.mark.parametrize(
    ("url", "user", "hostname", "port", "jump"),
    [
        ("ssh://gpu1", None, "gpu1", None, "gpu1"),
        ("ssh://alice@gpu1", "alice", "gpu1", None, "alice@gpu1"),
        ("ssh://alice@10.0.0.5:2222", "alice", "10.0.0.5", 2222, "alice@10.0.0.5:2222"),
    ],
)
def test_parse_ssh_urls(url, user, hostname, port, jump):
    server = remote.parse(url)
    assert (server.user, server.hostname, server.port, server.jump) == (user, hostname, port, jump)


@pytest.mark.parametrize("url", ["gpu1", "tcp://gpu1:2375", "ssh://", "ssh://gpu1/path", "ssh://gpu1:port"])
def test_other_urls_are_one_sentence(url):
    with pytest.raises(ConfigError) as caught:
        remote.parse(url)
    assert "ssh://user@server" in caught.value.message


def test_a_server_site_reaches_the_box_through_the_server():
    site = ServerSite(Location(URL, "host in deepbox.toml"))
    assert (site.host, site.jump, site.connect_host("0.0.0.0")) == (URL, "alice@gpu1:2222", "127.0.0.1")  # noqa: S104
    assert site.ide_host("deepbox-exp", "127.0.0.1") == "deepbox-exp", "IDEs take the jump through the alias"
    assert site.describe("/var/lib/docker") == f"{URL}:/var/lib/docker"
    local = LocalSite(Location(DEFAULT_SOCKET, "the default socket"))
    assert (local.host, local.jump, local.server) == ("", None, None)


def test_remote_spec_mirrors_the_server_account_and_uses_server_paths(tmp_path):
    spec = remote_spec(tmp_path, mounts=["~/data:/data:ro", "scratch:/scratch", "/mnt/big:/big"])
    assert (spec.user.name, spec.user.uid, spec.user.gid) == ("alice", 1500, 1600)
    assert spec.remote_path == "/srv/home/alice/deepbox/exp"
    assert [(str(m.host), m.box, m.read_only) for m in spec.mounts] == [
        ("/srv/home/alice/deepbox/exp", "/workspace", False),
        ("/srv/home/alice/data", "/data", True),
        ("/srv/home/alice/deepbox/exp/scratch", "/scratch", False),
        ("/mnt/big", "/big", False),
    ]
    assert spec.engine_name == "alice-exp" and spec.container_name == "deepbox-alice-exp"
    assert spec.alias == "deepbox-exp"  # what IDEs use stays the box's own name


def test_remote_path_setting(tmp_path):
    assert remote_spec(tmp_path, remote_path="/data/projects/{box}").remote_path == "/data/projects/exp"
    assert remote_spec(tmp_path, remote_path="work/x").remote_path == "/srv/home/alice/work/x"


def test_reading_a_server_project_contacts_nobody(tmp_path, monkeypatch):
    """Config loading is pure: the server is asked for its account only when a command needs the box."""

    def no_ssh(*args, **kwargs):
        raise AssertionError("ssh was run while reading the config")

    monkeypatch.setattr(remote, "run", no_ssh)
    (tmp_path / "deepbox.toml").write_text(f'name = "exp"\nhost = "{URL}"\n')
    from deepbox.config import load_spec

    spec = load_spec(tmp_path)
    assert (spec.name, spec.alias, spec.host) == ("exp", "deepbox-exp", "")
    site = ServerSite(Location(URL, "host in deepbox.toml"))
    assert site.server.jump == "alice@gpu1:2222"


def test_local_spec_is_unchanged(tmp_path):
    spec = resolve(BoxConfig(name="exp"), tmp_path, None)
    assert spec.host == "" and spec.engine_name == "exp" and spec.mounts[0].host == tmp_path.resolve()


def test_rsync_command_honours_gitignore_and_never_deletes_unless_asked(tmp_path):
    server = remote.parse("ssh://alice@gpu1:2222")
    command = remote.rsync_command(server, tmp_path, "/srv/home/alice/deepbox/exp", dry_run=True, delete=False)
    assert command[0] == "rsync" and "--dry-run" in command and "--delete" not in command
    assert "--filter=:- .gitignore" in command and "--exclude=/.git/" in command
    assert command[-2:] == [f"{tmp_path}/", "alice@gpu1:/srv/home/alice/deepbox/exp/"]
    shell = command[command.index("-e") + 1]
    assert shell.startswith("ssh") and "-p 2222" in shell and "BatchMode=yes" in shell
    assert "--delete" in remote.rsync_command(server, tmp_path, "/x/y/z", dry_run=False, delete=True)


def test_sync_refuses_a_local_box_and_a_shallow_delete(tmp_path):
    from deepbox import sync
    from deepbox.errors import DeepboxError

    with pytest.raises(DeepboxError, match="mounts the project folder directly"):
        sync.push(resolve(BoxConfig(name="exp"), tmp_path, None), LocalSite(Location(DEFAULT_SOCKET, "default")))
    shallow = remote_spec(tmp_path, remote_path="~")
    with pytest.raises(DeepboxError, match="too close to the server's root"):
        sync.push(shallow, ServerSite(Location(URL, "host")), delete=True)


def test_pycharm_reaches_a_remote_box_by_its_alias_and_uploads_on_save(tmp_path):
    from deepbox.ide import pycharm
    from deepbox.model import UpResult

    spec = remote_spec(tmp_path)
    result = UpResult(
        box="exp", alias="deepbox-exp", action="created", image="i", host="127.0.0.1", port=24000, user="alice",
        workspace="/workspace", key=str(tmp_path / "key"), python="/opt/venv/bin/python", python_version="3.11.2",
        ide_host="deepbox-exp",
    )  # fmt: skip
    pycharm.write_project(spec, result)
    idea = tmp_path / ".idea"
    assert 'host="deepbox-exp"' in (idea / "sshConfigs.xml").read_text()
    assert 'autoUpload="Always"' in (idea / "deployment.xml").read_text()
    mappings = (idea / "remote-mappings.xml").read_text()
    assert 'local-root="$PROJECT_DIR$"' in mappings and "/srv/home" not in mappings


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_started_to_end_with_deepbox_ends_when_deepbox_is_sigkilled(tmp_path):
    """A parent that starts `sleep` as `deepbox sync` starts rsync, then is SIGKILLed: the sleep ends too."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            "from deepbox import remote\n"
            "child = subprocess.Popen(['sleep', '60'], preexec_fn=remote.ends_with_deepbox())\n"
            "print(child.pid, flush=True)\n"
            "child.wait()\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child), "the child outlived its SIGKILLed parent"


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"  # gone meanwhile
    return stat[stat.rindex(")") + 2]
