"""The framework check: every framework imported inside the box as the box user, through the engine
(not SSH, so it runs while SSH comes up), with versions and the GPUs each sees.
"""

from __future__ import annotations

import json
from typing import Any

from deepbox import catalog, paths
from deepbox.config import Spec
from deepbox.dockerfile import VENV
from deepbox.engine import Container, Engine
from deepbox.errors import DeepboxError
from deepbox.fsutil import atomic_write
from deepbox.model import FrameworkCheck
from deepbox.state import read_json

# Runs inside the box. The fingerprint covers every directory on sys.path (entry names and mtimes),
# so a `pip install` or uninstall in the box changes it; with an unchanged fingerprint the last
# passing result is reused instead of importing every framework again (seconds for the big ones).
# `folders` holds each directory's own mtime (None for a symlink, whose own mtime says nothing of
# its target), taken before its entries are read: what the engine can compare without this script.
_VERIFY = """
import hashlib, importlib, json, os, platform, sys
checks, previous = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def scan():
    digest, folders = hashlib.sha256(platform.python_version().encode()), {}
    for folder in sys.path:
        if not folder:
            continue  # the working directory ("/" here), whose /dev, /run, /tmp change on every start
        try:
            folders[folder] = None if os.path.islink(folder) else os.stat(folder).st_mtime_ns
            entries = sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(folder))
        except OSError:
            folders.pop(folder, None)
            continue
        digest.update(json.dumps([folder, entries]).encode())
    return digest.hexdigest(), folders
fingerprint, folders = scan()
if previous and previous["fingerprint"] == fingerprint and checks == previous["request"]:
    print(json.dumps(dict(previous, cached=True, folders=folders)))
    sys.exit(0)
results = []
for check in checks:
    try:
        m = importlib.import_module(check["module"])
        seen = eval(check["gpu"], {"m": m}) if check["gpu"] else None
        count = int(seen) if isinstance(seen, int) and not isinstance(seen, bool) else None
        gpu = None if seen is None else bool(seen)
        version = str(getattr(m, "__version__", ""))
        results.append(dict(check, ok=True, version=version, gpu=gpu, gpu_count=count, error=""))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        results.append(dict(check, ok=False, version="", gpu=None, gpu_count=None, error=error))
# Taken after the imports: a first import writes __pycache__ folders, which must not count as a change.
fingerprint, folders = scan()
print(json.dumps({"python": platform.python_version(), "checks": results, "request": checks,
                  "fingerprint": fingerprint, "folders": folders, "cached": False}))
"""


def verify(
    engine: Engine,
    container: Container,
    spec: Spec,
    frameworks: list[catalog.Framework],
    trust_unchanged: bool = True,
) -> tuple[str, list[FrameworkCheck]]:
    """Import every framework inside the box as the box user; report versions and GPU visibility.

    With `trust_unchanged`, the last passing check in this container stands without running anything
    in it when the engine finds every folder on the box Python's path as that check left it (a
    `pip install` or uninstall changes site-packages). Returns the box's Python version and one check
    per framework."""
    checks = [{"name": fw.name, "module": fw.module, "gpu": fw.gpu_check} for fw in frameworks]
    # A GPU can come or go between starts (driver, runtime): on a cuda box every check runs afresh.
    cache = paths.framework_checks(container.id) if spec.device != "cuda" else None
    found = read_json(cache) if cache is not None else None
    previous = found if isinstance(found, dict) else None
    if trust_unchanged and previous is not None and _unchanged(engine, container, checks, previous):
        report = dict(previous, cached=True)
    else:
        report = _run(engine, container, spec, checks, previous)
    # Kept when it passed; a reused result again when the folders it was read from have changed since.
    renewed = not report.get("cached") or report.get("folders") != (previous or {}).get("folders")
    if cache is not None and renewed and report["checks"] and all(row["ok"] for row in report["checks"]):
        atomic_write(cache, json.dumps(dict(report, cached=False)), mode=0o600)
    fields = ("name", "module", "ok", "version", "gpu", "gpu_count", "error")
    checks_out = [FrameworkCheck(**{k: row.get(k) for k in fields if k in row}) for row in report["checks"]]
    return report["python"], checks_out


def _unchanged(engine: Engine, container: Container, checks: list[dict[str, str]], previous: dict[str, Any]) -> bool:
    """Whether the engine finds every folder the last passing check read as that check left it."""
    if previous.get("request") != checks:
        return False
    folders = previous.get("folders")
    if not isinstance(folders, dict) or not folders or None in folders.values():
        return False  # an older check's record, or a symlinked folder: run the check
    return all(engine.path_mtime_ns(container, folder) == mtime for folder, mtime in folders.items())


def _run(
    engine: Engine, container: Container, spec: Spec, checks: list[dict[str, str]], previous: dict[str, Any] | None
) -> dict[str, Any]:
    command = [f"{VENV}/bin/python", "-c", _VERIFY, json.dumps(checks), json.dumps(previous)]
    code, output = engine.exec(container, command, user=spec.user.name)
    if code == 0 and not output.strip():
        # Seen over an ssh-forwarded engine socket: an exec that succeeded but whose output the stream
        # lost. The check changes nothing, so it is asked once more.
        code, output = engine.exec(container, command, user=spec.user.name)
    try:
        report: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise DeepboxError(
            f"The framework check could not run in the box (exit {code}): {output.strip()[-300:]}."
        ) from exc
    return report
