"""Properties of the ~/.ssh/config edits: generated user configs under random sequences of up/rm.

The CI run draws a bounded sample; HYPOTHESIS_PROFILE=full draws 1,000 cases (see README, Development).
up and rm are the file-level calls `deepbox up` and `deepbox rm` make (no engine); the real OpenSSH
client then reads the result with `ssh -G`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepbox import paths, ssh

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")

BOXES = ("a", "b", "c", "d")
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake"

# Lines a user's config holds: blocks that match every host, comments in other encodings, its own
# Includes. None of them sets HostKeyAlias or a port in deepbox's range, so a box's values are telling.
USER_LINES = [
    b"# my hosts",
    b"# caf\xe9 \xff latin-1 and stray bytes",
    "# ünïcode".encode(),
    b"",
    b"   ",
    b"Host *",
    b"    ServerAliveInterval 60",
    b"    User bob",
    b"    Port 2200",
    b"\tIdentityFile ~/.ssh/id_other",
    b"Match all",
    b"Match host deepbox-a",
    b"Match originalhost work user alice",
    b"Host work build-*",
    b"    HostName example.org",
    b"Include ~/.ssh/conf.d/*",
    b"Include other_config",
]


@dataclass(frozen=True)
class UserConfig:
    body: bytes
    layout: str  # "file", "missing", "symlink", "dangling-symlink" or "read-only"


@st.composite
def user_configs(draw: st.DrawFn) -> UserConfig:
    lines = draw(st.lists(st.sampled_from(USER_LINES), max_size=12))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    body = newline.join(lines)
    if lines and draw(st.booleans()):
        body += newline
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    layout = draw(st.sampled_from(["file", "missing", "symlink", "dangling-symlink", "read-only"]))
    return UserConfig(b"" if layout in ("missing", "dangling-symlink") else body, layout)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("up"), st.sampled_from(BOXES), st.integers(40000, 40999)),
        st.tuples(st.just("rm"), st.sampled_from(BOXES), st.just(0)),
    ),
    min_size=1,
    max_size=10,
)


def up(box: str, port: int) -> None:
    alias = f"deepbox-{box}"
    ssh.pin_host_key(alias, HOST_KEY)
    ssh.write_host(ssh.Endpoint(alias, "127.0.0.1", port, "alice", paths.keys_dir() / box / "id_ed25519"))


def rm(box: str) -> None:
    alias = f"deepbox-{box}"
    ssh.forget_host(alias)
    ssh.remove_host(alias)


def lay_out(home: Path, config: UserConfig) -> Path:
    """Place the user's config as the layout says; returns the file that holds the bytes."""
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(mode=0o700)
    target = dot_ssh / "config"
    if config.layout in ("symlink", "dangling-symlink"):
        target = home / "dotfiles" / "ssh_config"
        (dot_ssh / "config").symlink_to(target)
        if config.layout == "symlink":
            target.parent.mkdir()
            target.write_bytes(config.body)
    elif config.layout != "missing":
        target.write_bytes(config.body)
        target.chmod(0o444 if config.layout == "read-only" else 0o600)
    return target


def ssh_g(home: Path, alias: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-G", "-F", str(home / ".ssh" / "config"), alias],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=30,
    )


def options(output: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in output.splitlines() if " " in line)


@given(config=user_configs(), steps=operations)
def test_up_and_rm_keep_the_users_bytes_and_resolve_exactly_the_live_boxes(
    config: UserConfig, steps: list[tuple[str, str, int]]
) -> None:
    with tempfile.TemporaryDirectory() as scratch, pytest.MonkeyPatch.context() as patch:
        home = Path(scratch)
        patch.setenv("HOME", str(home))
        target = lay_out(home, config)
        mode = target.stat().st_mode if target.exists() else None
        # Whether OpenSSH reads the user's own file at all (it refuses a byte order mark, for one).
        readable = ssh_g(home, "probe").returncode == 0 if target.exists() else True

        live: dict[str, int] = {}
        for action, box, port in steps:
            if action == "up":
                up(box, port)
                live[box] = port
            else:
                rm(box)
                live.pop(box, None)

        link = home / ".ssh" / "config"
        assert link.is_symlink() == (config.layout in ("symlink", "dangling-symlink"))
        ever_up = any(action == "up" for action, _, _ in steps)
        if not ever_up:
            assert (
                target.read_bytes() == config.body
                if target.exists()
                else config.layout in ("missing", "dangling-symlink")
            )
            return
        written = target.read_bytes()
        head = f"{ssh.INCLUDE_MARKER}\n{ssh.include_line()}\n\n".encode()
        newline = b"\r\n" if b"\r\n" in config.body else b"\n"
        head = head.replace(b"\n", newline)
        assert written == head + config.body  # the user's bytes, every one, after deepbox's two lines
        assert written.decode("utf-8", "surrogateescape").splitlines().count(ssh.include_line()) == 1
        if mode is not None:
            assert target.stat().st_mode == mode

        for box in BOXES:
            alias = f"deepbox-{box}"
            result = ssh_g(home, alias)
            if not readable:
                assert result.returncode != 0  # deepbox neither breaks nor hides a file ssh refuses
                continue
            assert result.returncode == 0, result.stderr
            resolved = options(result.stdout)
            if box in live:
                assert (resolved["hostname"], resolved["port"], resolved.get("hostkeyalias")) == (
                    "127.0.0.1",
                    str(live[box]),
                    alias,
                )
            else:
                assert "hostkeyalias" not in resolved
                assert resolved["port"] in ("22", "2200")
