"""Files every box shares (the ssh config deepbox owns, known_hosts): concurrent writers keep each
other's entries, and a full disk leaves the old file and gives one sentence."""

from __future__ import annotations

import errno
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from deepbox import cli, paths, ssh
from deepbox.fsutil import atomic_write, temporary_folder

WRITERS = 6
BOXES_EACH = 8
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPv2Rj5Fv8qk0wq2Y1YV5n1b0q3xwzq3x0e6y2j9b0c"


def _write_boxes(home: str, writer: int) -> None:
    os.environ["HOME"] = home
    for number in range(BOXES_EACH):
        alias = f"deepbox-w{writer}-{number}"
        ssh.write_host(ssh.Endpoint(alias, "127.0.0.1", 2000 + number, "me", Path("/keys/id")))
        ssh.pin_host_key(alias, HOST_KEY)


def test_concurrent_ups_keep_every_box_entry(home):
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as separate `deepbox up`s are
    writers = [context.Process(target=_write_boxes, args=(str(home), n)) for n in range(WRITERS)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    expected = {f"deepbox-w{w}-{n}" for w in range(WRITERS) for n in range(BOXES_EACH)}
    assert set(ssh._blocks(paths.owned_ssh_config().read_text())) == expected
    pinned = {line.split()[0] for line in paths.known_hosts().read_text().splitlines()}
    assert pinned == expected


def test_a_failed_write_names_the_file_and_keeps_the_old_one(home, monkeypatch):
    target = home / "owned"
    target.write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as raised:
        atomic_write(target, "new\n")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in home.iterdir()) == ["owned"]  # no temp file left


def test_a_full_disk_is_one_sentence(capsys, monkeypatch):
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/home/me/.local/share/deepbox/ssh_config")

    monkeypatch.setattr(cli.cli, "main", full)
    assert cli._run(["status"]) == 1
    assert capsys.readouterr().err.replace("\n", "") == (
        "Error: The disk that holds /home/me/.local/share/deepbox/ssh_config is full; free some space there "
        "and run the command again (the file deepbox was writing is unchanged)."
    )


def test_a_temporary_folder_sweeps_those_of_killed_processes(tmp_path, monkeypatch):
    tmp_path = tmp_path / "temp"
    tmp_path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp_path / f"deepbox-lock-{dead.pid}-abc"  # what a SIGKILLed `deepbox lock` leaves
    (left / "sub").mkdir(parents=True)
    live = tmp_path / f"deepbox-lock-{os.getppid()}-def"  # another command still at work
    live.mkdir()
    other = tmp_path / f"deepbox-dotfiles-{dead.pid}-ghi"  # another kind: not this call's to sweep
    other.mkdir()
    with temporary_folder("deepbox-lock-") as folder:
        assert folder.name.startswith(f"deepbox-lock-{os.getpid()}-") and folder.is_dir()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, live.name, other.name])
    assert not folder.exists()


def test_a_long_tmpdir_still_gives_control_sockets_that_bind(tmp_path, monkeypatch):
    long_tmp = tmp_path / ("t" * 60)  # as macOS's /var/folders/... TMPDIR, or a test's, can be
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    folder = ssh.control_dir()
    assert folder.parent == Path("/tmp")
    folder.mkdir(mode=0o700, exist_ok=True)
    socket_path = folder / ("f" * 40 + ".AbCdEfGhIjKlMnOp")  # %C, and the suffix ssh binds first
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(socket_path))  # "too long for Unix domain socket" before
    socket_path.unlink()
    folder.rmdir()
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    assert ssh.control_dir() == folder  # a short TMPDIR is used as it is


def test_a_write_removes_the_temp_file_of_a_killed_writer(home):
    target = home / "known_hosts"
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = home / f".known_hosts.{dead.pid}-abc123.tmp"  # a writer SIGKILLed between write and rename
    left.write_text("half")
    busy = home / f".known_hosts.{os.getppid()}-def456.tmp"  # a writer still at work
    busy.write_text("half")
    atomic_write(target, "new\n")
    assert sorted(p.name for p in home.iterdir()) == sorted(["known_hosts", busy.name])


def _hold_lock(path: str, held: multiprocessing.synchronize.Event) -> None:
    from deepbox.fsutil import file_lock

    with file_lock(Path(path), timeout=5):
        held.set()
        while True:
            time.sleep(1)


def test_file_lock_waits_then_times_out_and_a_killed_holder_releases_it(tmp_path):
    from deepbox.fsutil import LockTimeout, file_lock

    path = tmp_path / "locks" / "box.lock"
    context = multiprocessing.get_context("spawn")
    held = context.Event()
    holder = context.Process(target=_hold_lock, args=(str(path), held))
    holder.start()
    try:
        assert held.wait(30)
        told: list[str] = []
        with pytest.raises(LockTimeout), file_lock(path, timeout=0.3, waiting=lambda: told.append("waiting")):
            pass
        assert told == ["waiting"]  # said once, however long the wait
        os.kill(holder.pid, signal.SIGKILL)  # a killed command leaves no stale lock behind
        holder.join(10)
        with file_lock(path, timeout=5, waiting=lambda: told.append("again")):
            assert told == ["waiting"]
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join(10)
