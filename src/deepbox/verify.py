"""The framework check: every framework imported inside the box as the box user, through the engine
(not SSH, so it runs while SSH comes up), with versions and the GPUs each sees.
"""

from __future__ import annotations

import json

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
_VERIFY = """
import hashlib, importlib, json, os, platform, sys
checks, previous = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def fingerprint():
    digest = hashlib.sha256(platform.python_version().encode())
    for folder in sys.path:
        if not folder:
            continue  # the working directory ("/" here), whose /dev, /run, /tmp change on every start
        try:
            entries = sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(folder))
        except OSError:
            continue
        digest.update(json.dumps([folder, entries]).encode())
    return digest.hexdigest()
if previous and previous["fingerprint"] == fingerprint() and checks == previous["request"]:
    print(json.dumps(dict(previous, cached=True)))
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
print(json.dumps({"python": platform.python_version(), "checks": results, "request": checks,
                  "fingerprint": fingerprint(), "cached": False}))
"""


def verify(
    engine: Engine, container: Container, spec: Spec, frameworks: list[catalog.Framework]
) -> tuple[str, list[FrameworkCheck]]:
    """Import every framework inside the box as the box user; report versions and GPU visibility.

    Returns the box's Python version and one check per framework."""
    checks = [{"name": fw.name, "module": fw.module, "gpu": fw.gpu_check} for fw in frameworks]
    # A GPU can come or go between starts (driver, runtime): on a cuda box every check runs afresh.
    cache = paths.framework_checks(container.id) if spec.device != "cuda" else None
    previous = read_json(cache) if cache is not None else None
    command = [f"{VENV}/bin/python", "-c", _VERIFY, json.dumps(checks), json.dumps(previous)]
    code, output = engine.exec(container, command, user=spec.user.name)
    if code == 0 and not output.strip():
        # Seen over an ssh-forwarded engine socket: an exec that succeeded but whose output the stream
        # lost. The check changes nothing, so it is asked once more.
        code, output = engine.exec(container, command, user=spec.user.name)
    try:
        report = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise DeepboxError(
            f"The framework check could not run in the box (exit {code}): {output.strip()[-300:]}."
        ) from exc
    if cache is not None and not report.get("cached") and all(row["ok"] for row in report["checks"]):
        atomic_write(cache, json.dumps(report), mode=0o600)
    fields = ("name", "module", "ok", "version", "gpu", "gpu_count", "error")
    checks_out = [FrameworkCheck(**{k: row.get(k) for k in fields if k in row}) for row in report["checks"]]
    return report["python"], checks_out
