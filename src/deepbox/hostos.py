"""Facts about this machine's operating system, one function each, so the rest of deepbox runs from
Linux, macOS and Windows alike: the POSIX-only modules (pwd) and calls (os.getuid) live only here,
imported when asked for, and each function has an answer where they do not exist (Windows)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path


def user_ids() -> tuple[int, int] | None:
    """This process's UID and GID; None where the OS has none (Windows)."""
    if not hasattr(os, "getuid"):
        return None
    return os.getuid(), os.getgid()


def is_root() -> bool:
    """Whether deepbox runs as root (never on Windows, which has no root)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def account_name(uid: int | None = None) -> str | None:
    """The account name of a UID (this user's without one); None where the account database has none."""
    if uid is None and not hasattr(os, "getuid"):
        try:
            return getpass.getuser()
        except OSError:  # no USERNAME or other variable to read it from
            return None
    try:
        import pwd
    except ImportError:
        return None
    try:
        return pwd.getpwuid(os.getuid() if uid is None else uid).pw_name
    except KeyError:
        return None


def account_home() -> Path:
    """This user's home as the account database has it, which ssh reads (not $HOME); Path.home() where
    there is no such database."""
    try:
        import pwd

        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, AttributeError, KeyError):
        return Path.home()
