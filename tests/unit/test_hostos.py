"""hostos.py, and deepbox on a host without the POSIX-only modules and calls (Windows).

Windows itself is not at hand here, so a child Python plays it: pwd, grp, fcntl and termios cannot be
imported and os has no getuid/geteuid/getgid/chown, before deepbox is imported at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from deepbox import hostos

WITHOUT_POSIX = """
import os, sys
for name in ("pwd", "grp", "fcntl", "termios", "tty", "pty", "resource"):
    sys.modules[name] = None  # `import name` now raises ImportError, as on Windows
import platformdirs  # picks its backend by OS (the Windows one has no UIDs): this Linux one before os loses them
for name in ("getuid", "geteuid", "getgid", "getegid", "chown", "getpwuid"):
    if hasattr(os, name):
        delattr(os, name)
"""


def run_without_posix(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "USERNAME": "Alice", "LOGNAME": "", "USER": "", "LNAME": ""}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_POSIX + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )


def test_the_cli_runs_without_the_posix_only_modules(tmp_path):
    done = run_without_posix(
        """
        from deepbox.cli import main
        for args in (["--help"], ["dockerfile", "--frameworks", "numpy"], ["catalog"], ["schema"]):
            code = main(args)
            print(f"\\n=== {args[0]} exited {code}")
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for command in ("--help", "dockerfile", "catalog", "schema"):
        assert f"=== {command} exited 0" in done.stdout, done.stdout + done.stderr
    assert "Usage: deepbox" in done.stdout
    assert "FROM debian:bookworm-slim" in done.stdout
    assert "scikit-learn" in done.stdout


def test_a_config_loads_without_the_posix_only_modules(tmp_path):
    project = tmp_path / "My Project"
    project.mkdir()
    (project / "deepbox.toml").write_text(
        'mounts = ["data:/data", "~/models:/models:ro"]\n[ssh]\nkey = "keys/id"\n[env]\nSEED = "0"\n'
    )
    done = run_without_posix(
        f"""
        import json
        from pathlib import Path
        from deepbox import ssh
        from deepbox.config import load_spec
        spec = load_spec(Path({str(project)!r}))
        print(json.dumps({{
            "user": [spec.user.name, spec.user.uid, spec.user.gid],
            "mounts": [[str(m.host), m.box, m.read_only] for m in spec.mounts],
            "key": str(spec.ssh_key),
            "control_dir": ssh.control_dir().name,
            "ssh": ssh.ssh_base_args()[0],
        }}))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["user"] == ["alice", 1000, 1000], "no UIDs on the host: the account name, UID 1000"
    assert result["mounts"] == [
        [str(project), "/workspace", False],
        [str(project / "data"), "/data", False],
        [str(Path.home() / "models"), "/models", True],
    ]
    assert result["key"] == str(project / "keys" / "id")
    assert result["control_dir"].startswith("deepbox-Alice-")
    assert result["ssh"] == "ssh"


def test_on_a_posix_host_the_ids_and_names_are_the_accounts():
    import pwd

    assert hostos.user_ids() == (os.getuid(), os.getgid())
    assert hostos.is_root() == (os.geteuid() == 0)
    assert hostos.account_name() == pwd.getpwuid(os.getuid()).pw_name
    assert hostos.account_home() == Path(pwd.getpwuid(os.getuid()).pw_dir)


def test_a_uid_without_an_account_has_no_name():
    assert hostos.account_name(2**31 - 2) is None
