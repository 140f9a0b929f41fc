"""Where deepbox keeps its own files on the user's machine (keys, known_hosts, ssh config, locks)."""

from __future__ import annotations

from pathlib import Path

import platformdirs


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir("deepbox", appauthor=False))


def keys_dir() -> Path:
    return data_dir() / "keys"


def known_hosts() -> Path:
    return data_dir() / "known_hosts"


def owned_ssh_config() -> Path:
    return data_dir() / "ssh_config"


def locks_dir() -> Path:
    return data_dir() / "locks"


def user_ssh_config() -> Path:
    return Path.home() / ".ssh" / "config"


def jupyter_token(box: str) -> Path:
    return data_dir() / "jupyter" / f"{box}.token"


def remote_hosts() -> Path:
    """The servers this user has run boxes on (for `deepbox status --all-hosts`)."""
    return data_dir() / "hosts.json"


def image_records() -> Path:
    """How each box image came to the engine, built or pulled (see state.image_record)."""
    return data_dir() / "images.json"


def framework_checks(container_id: str) -> Path:
    """The last passing framework check of one container (see box.verify)."""
    return data_dir() / "checks" / f"{container_id}.json"


def up_checks(container_id: str) -> Path:
    """What the last login and hand-over of `up` to one container saw (see box._proven)."""
    return data_dir() / "checks" / f"{container_id}.up.json"


def base_facts(image_id: str) -> Path:
    """What one base image has (see baseimage.facts), by image id."""
    return data_dir() / "bases" / f"{image_id.removeprefix('sha256:')}.json"


def build_log(box: str) -> Path:
    """The whole log of a box's last image build (named in the error when it fails)."""
    return data_dir() / "builds" / f"{box}.log"
