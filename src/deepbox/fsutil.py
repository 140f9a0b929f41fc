"""Files deepbox writes on the user's machine: atomically, so a reader sees the old file or the new one."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from deepbox import paths


def atomic_write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Write via a temp file in the same folder and rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
