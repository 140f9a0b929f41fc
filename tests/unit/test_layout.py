"""The house rules that keep the layout telling, checked on the source itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_the_engine_package_imports_the_docker_sdk():
    """Every other module and the benches talk to an Engine, so another backend plugs in in one place."""
    engine = ROOT / "src" / "deepbox" / "engine"
    offenders = [
        str(path.relative_to(ROOT))
        for folder in (ROOT / "src" / "deepbox", ROOT / "bench")
        for path in sorted(folder.rglob("*.py"))
        if engine not in path.parents and any(name.split(".")[0] == "docker" for name in _imports(path))
    ]
    assert offenders == []
    assert any(name.split(".")[0] == "docker" for name in _imports(engine / "sdk.py")), "the check sees imports"


def test_config_does_not_reach_out():
    """Reading deepbox.toml is pure: no ssh, no engine, no site."""
    imported = _imports(ROOT / "src" / "deepbox" / "config.py")
    assert not {"deepbox.remote", "deepbox.site", "deepbox.engine", "subprocess"} & imported


def test_the_docker_sdk_comes_without_paramiko():
    """deepbox never uses the SDK's ssh transport; importing paramiko (~100 ms) would slow every command.
    A later `import paramiko` by anything else still works."""
    code = (
        "import sys, deepbox.engine.docker\n"
        "print('paramiko' in sys.modules)\n"
        "import paramiko\n"
        "print(paramiko.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "paramiko"]
