"""Files deepbox writes on the user's machine: atomically, so a reader sees the old file or the new one."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from deepbox import paths
from deepbox.errors import DeepboxError


def atomic_write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Write via a temp file in the same folder and rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_writers_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode() if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a failed write or fsync names no file: name the one deepbox was writing
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_dead_writers_files(path: Path) -> None:
    """A writer killed outright (SIGKILL) leaves its .NAME.PID-*.tmp: the next write of NAME removes it."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*-*.tmp"):
        pid = stale.name.removeprefix(f".{path.name}.").split("-", 1)[0]
        with contextlib.suppress(OSError, ValueError):
            if stale.stat().st_uid == os.geteuid() and not _alive(int(pid)):
                stale.unlink()


def disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def shared_files_lock() -> Iterator[None]:
    """Held around a read-modify-write of a file every box shares (the ssh config deepbox owns, its
    known_hosts, the servers list): concurrent `up`s of different boxes would otherwise drop each
    other's entries."""
    path = paths.locks_dir() / "shared-files.lock"
    held_too_long = f"Another deepbox command has held {path} for 2 minutes; let it finish or stop it, then run again."
    with file_lock(path, timeout=120, held_too_long=held_too_long):
        yield


class LockTimeout(DeepboxError):
    """Another process held the lock for longer than the caller would wait."""


@contextlib.contextmanager
def file_lock(
    path: Path, timeout: float, waiting: Callable[[], None] | None = None, held_too_long: str = ""
) -> Iterator[None]:
    """An exclusive flock(2) on PATH, waited for up to TIMEOUT seconds (waiting: called once when another
    process holds it; held_too_long: the sentence of the LockTimeout after that). The kernel releases it
    when its holder dies, even by SIGKILL, so no stale lock outlives a killed command. (The system's lock
    on its own file, not a library: this lock is taken on every command, and importing one cost more
    than the rest of the lock.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise LockTimeout(held_too_long or f"Another process has held {path} for {timeout:g} s.")
            if waiting is not None and not told:
                waiting()
                told = True
            time.sleep(0.05)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: a lock on the file's first byte, released by the system on exit too
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def temporary_folder(prefix: str) -> Iterator[Path]:
    """A private temp folder named PREFIX<pid>-..., removed on the way out. A process killed outright
    (SIGKILL, the OOM killer) cannot remove its own, so each call first removes those of dead processes."""
    root = Path(tempfile.gettempdir())
    for stale in root.glob(f"{prefix}*-*"):
        pid = stale.name.removeprefix(prefix).split("-", 1)[0]
        with contextlib.suppress(OSError, ValueError):
            if stale.is_dir() and stale.stat().st_uid == os.geteuid() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
