"""Files deepbox writes on the user's machine: atomically, so a reader sees the old file or the new one."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from deepbox import paths


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
    paths.locks_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(paths.locks_dir() / "shared-files.lock", timeout=120):
        yield


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
