"""Package drift: what changed in a running box's Python packages since deepbox installed them.

`pip install` works in the box (the venv is the box user's), so a box can drift from deepbox.lock. The
image keeps the list of what its build installed (the lock's packages, checked at build time); one
engine exec reads it beside the venv's packages as they are now.
"""

from __future__ import annotations

import re

from deepbox.catalog.model import normalize
from deepbox.dockerfile import INSTALLED, LOCKED, SEEDED, VENV
from deepbox.engine import Container, Engine
from deepbox.model import Drift

_SEPARATOR = "--- installed now ---"
# Images built before the list moved to INSTALLED kept it where the build checked it. uv's stderr
# ("Using Python ... environment at: /opt/venv") is dropped: the engine passes both streams on as they
# come, so a part of it could land inside the first package's line and hide that package.
_READ = (
    f"cat {INSTALLED} 2>/dev/null || cat {LOCKED}/installed.txt 2>/dev/null; echo '{_SEPARATOR}'; "
    f"{VENV}/bin/uv pip list --format freeze --python {VENV}/bin/python 2>/dev/null"
)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def pins(text: str) -> dict[str, str]:
    """name==version lines (pip's freeze format) by normalised name; other lines (warnings) are skipped."""
    found = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            found[normalize(match[1])] = match[2]
    return found


def compare(locked: dict[str, str], installed: dict[str, str]) -> Drift:
    """What the venv has that the lock did not put there. deepbox's own tools (pip, uv...) count only
    when the lock has them, as in the build's own check."""
    tools = {tool for tool in SEEDED if tool not in locked}
    now = {name: version for name, version in installed.items() if name not in tools}
    return Drift(
        added={name: version for name, version in now.items() if name not in locked},
        changed={
            name: (locked[name], version) for name, version in now.items() if name in locked and locked[name] != version
        },
        removed={name: version for name, version in locked.items() if name not in now},
    )


def check(engine: Engine, container: Container) -> Drift | None:
    """The running box's drift; None when its image keeps no list of what was installed or the venv
    cannot be listed (a box not built by deepbox's locked build)."""
    code, output = engine.exec(container, ["sh", "-c", _READ])
    record, separator, now = output.partition(_SEPARATOR)
    locked, installed = pins(record), pins(now)
    if code != 0 or not separator or not locked or not installed:
        return None
    return compare(locked, installed)


def sentence(box: str, drift: Drift) -> str:
    """One line for `deepbox status NAME`."""
    if not drift.count:
        return f"Box '{box}' has the packages deepbox installed from deepbox.lock, none added or changed since."
    packages = f"{drift.count} packages that differ" if drift.count != 1 else "1 package that differs"
    return (
        f"Box '{box}' has {packages} from deepbox.lock: {', '.join(drift.items())}; "
        "they last until the box is recreated (a settings change, `deepbox rm`): put the ones to keep in pip = "
        "[...] in deepbox.toml."
    )
