"""deepbox's own small state files in its data folder: JupyterLab tokens and the servers boxes ran on.
(Keys, pinned host keys and the ssh config are ssh.py's; the framework check's cache is verify.py's.)
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from deepbox import paths
from deepbox.fsutil import atomic_write, shared_files_lock


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or unreadable: as if there were none


def jupyter_token(box: str) -> str:
    """The box's JupyterLab token: random, made once, kept 0600 in deepbox's data folder."""
    path = paths.jupyter_token(box)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, secrets.token_urlsafe(32), 0o600)
    return path.read_text().strip()


def remember_host(host: str) -> None:
    with shared_files_lock():
        known = known_hosts()
        if host not in known:
            atomic_write(paths.remote_hosts(), json.dumps(sorted([*known, host]), indent=1) + "\n")


def known_hosts() -> list[str]:
    """The servers boxes were brought up on from this machine."""
    hosts = read_json(paths.remote_hosts())
    return [h for h in hosts if isinstance(h, str)] if isinstance(hosts, list) else []


def image_record(tag: str) -> dict[str, str]:
    """What deepbox knows of how box image `tag` came to the engine: {"source": "built", "base": ...} or
    {"source": "pulled", "from": ..., "digest": ...}; {} when nothing was recorded."""
    records = read_json(paths.image_records())
    record = records.get(tag) if isinstance(records, dict) else None
    return {str(k): str(v) for k, v in record.items()} if isinstance(record, dict) else {}


def image_source(tag: str) -> str:
    """ "pulled" or "built"; an image deepbox did not record was made here, so "built"."""
    return image_record(tag).get("source", "built")


def remember_image(tag: str, record: dict[str, str]) -> None:
    records = read_json(paths.image_records())
    records = records if isinstance(records, dict) else {}
    records[tag] = record
    paths.image_records().parent.mkdir(parents=True, exist_ok=True)
    atomic_write(paths.image_records(), json.dumps(records, indent=1, sort_keys=True) + "\n")
