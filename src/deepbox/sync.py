"""`deepbox sync`: the project folder, copied to its folder on the server that a remote box mounts."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from deepbox import remote
from deepbox.config import Spec
from deepbox.errors import DeepboxError
from deepbox.site import Site


def require_rsync() -> None:
    if shutil.which("rsync") is None:
        raise DeepboxError(
            "rsync is not installed here, and `deepbox sync` copies the project to the server with it: install "
            "it (sudo apt-get install rsync)."
        )


def push(spec: Spec, site: Site, *, dry_run: bool = False, delete: bool = False) -> list[str]:
    """Copy the project to spec.remote_path on the server; returns rsync's itemized changes."""
    server = site.server
    if server is None:
        raise DeepboxError(
            "This box runs on the local engine and mounts the project folder directly; `deepbox sync` is for "
            'boxes on a server (host = "ssh://user@server").'
        )
    require_rsync()
    # --delete mirrors into the folder: refuse the home itself, anything above it, and shallow system folders.
    target = PurePosixPath(spec.remote_path)
    if delete and (
        len(target.parts) < 3
        or target == PurePosixPath(spec.server_home)
        or target in PurePosixPath(spec.server_home).parents
    ):
        raise DeepboxError(
            f"remote_path {spec.remote_path!r} is too close to the server's root for --delete; point remote_path "
            "at the project's own folder, such as ~/deepbox/NAME."
        )
    if not dry_run:
        site.make_folders([Path(spec.remote_path)], (spec.user.uid, spec.user.gid))
    command = remote.rsync_command(server, spec.project, spec.remote_path, dry_run=dry_run, delete=delete)
    done = subprocess.run(command, capture_output=True, text=True, check=False, preexec_fn=remote.ends_with_deepbox())
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        hint = " (is rsync installed on the server?)" if done.returncode in (12, 127) else ""
        raise DeepboxError(f"rsync to {server.jump}:{spec.remote_path} failed: {reason}{hint}.")
    return [line for line in done.stdout.splitlines() if line.strip()]


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    state: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            path = Path(folder) / name
            try:
                info = path.stat()
            except OSError:
                continue  # removed while walking
            state[str(path.relative_to(root))] = (info.st_mtime_ns, info.st_size)
    return state


def watch(
    spec: Spec, site: Site, report: Callable[[list[str]], None], *, delete: bool = False, interval: float = 1.0
) -> None:
    """Push now, then again after every change in the project folder, until interrupted (Ctrl-C)."""
    report(push(spec, site, delete=delete))
    state = _tree_state(spec.project)
    while True:
        time.sleep(interval)
        current = _tree_state(spec.project)
        if current != state:
            state = current
            report(push(spec, site, delete=delete))
