"""The box's sshd-config.sh against recorded OpenSSH answers, from Ubuntu 18.04's 7.6 to Debian 13's 10.0.

Each file in data/openssh/ holds what one image's OpenSSH said: `ssh -V`, `ssh -Q kex|cipher|mac`,
whether its sshd binary has strict key exchange, and which version-specific options `sshd -t -o`
accepted. Stub `ssh` and `sshd` commands replay those answers to the real script, run by /bin/sh.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from deepbox.ssh import PROBE_KEX

RECORDED = Path(__file__).parent / "data" / "openssh"
SCRIPT = resources.files("deepbox.assets").joinpath("sshd-config.sh")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqfHfB1KGP6x4e+5dLHL1qYJf6dgqMxs2f8lC2wRb+e deepbox-demo"

STUB_SSH = """#!{python}
import sys
open({calls!r}, "a").write("ssh " + " ".join(sys.argv[1:]) + "\\n")
sections, current = {{}}, None
for line in open({record!r}):
    line = line.rstrip("\\n")
    if line.startswith("== "):
        current = sections.setdefault(line[3:], [])
    elif current is not None and line and not line.startswith("#"):
        current.append(line)
if sys.argv[1:] == ["-V"]:
    sys.stderr.write(sections["version"][0] + "\\n")
elif sys.argv[1] == "-Q":
    print("\\n".join(sections[sys.argv[2]]))
"""

# The sshd stub carries the marker string in its own bytes when the recorded sshd did, as the real
# binary does; the script greps for it.
STUB_SSHD = """#!{python}
# {marker}
import sys
open({calls!r}, "a").write("sshd " + " ".join(sys.argv[1:]) + "\\n")
answers = open({record!r}).read().split("== sshd")[1].split()
option = sys.argv[-1]
key, _, value = option.partition("=")
if key == "PermitUserEnvironment" and value not in ("yes", "no"):
    key = "PermitUserEnvironment-names"
if key in ("SetEnv", "PermitUserEnvironment-names", "PerSourcePenalties") and key not in answers:
    sys.exit(255)
"""


def run_script(tmp_path: Path, record: Path, **env: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    calls = tmp_path / "calls"  # every stub call, one line each
    strict = "strict-kex" in record.read_text().split("== sshd")[1].split()
    for name, template, marker in (
        ("ssh", STUB_SSH, ""),
        ("sshd", STUB_SSHD, "kex-strict-s-v00@openssh.com" if strict else "no marker"),
    ):
        stub = stubs / name
        if stub.exists():
            continue  # the same binaries on a restart
        stub.write_text(template.format(python=sys.executable, record=str(record), marker=marker, calls=str(calls)))
        stub.chmod(0o755)
    static = tmp_path / "static_config"
    static.write_text("# the static part\nPermitRootLogin no\n")
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    environment = {
        "PATH": f"/opt/venv/bin:{os.environ['PATH']}",
        "VIRTUAL_ENV": "/opt/venv",
        "LANG": "C.UTF-8",
        "DEEPBOX_SSH": str(stubs / "ssh"),
        "DEEPBOX_SSHD": str(stubs / "sshd"),
        "DEEPBOX_SSHD_STATIC": str(static),
        "DEEPBOX_HOSTKEY": str(tmp_path / "hostkey"),
        "DEEPBOX_SSHD_CACHE": str(tmp_path / "layer" / "sshd-choices"),
        "DEEPBOX_USER": "alice",
        "DEEPBOX_AUTHORIZED_KEYS": KEY,
        "DEEPBOX_SESSION_ENV": "GREETING",
        "GREETING": "hello there",
        **env,
    }
    done = subprocess.run(["/bin/sh", str(SCRIPT), str(out)], env=environment, capture_output=True, text=True)
    return out, done


def directives(config: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in config.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            found.setdefault(key, value)
    return found


# version file -> (first kex, offers chacha20, SetEnv, PermitUserEnvironment, PerSourcePenalties, notes)
EXPECTED = {
    "ubuntu-18.04": ("curve25519-sha256", False, False, "yes", False, 2),
    "ubuntu-20.04": ("curve25519-sha256", True, True, None, False, 1),
    "debian-11": ("curve25519-sha256", True, True, None, False, 1),
    "ubuntu-22.04": ("sntrup761x25519-sha512@openssh.com", True, True, None, False, 0),
    "debian-12": ("sntrup761x25519-sha512", True, True, None, False, 0),
    "ubuntu-24.04": ("sntrup761x25519-sha512@openssh.com", True, True, None, False, 0),
    "openssh-9.8": ("sntrup761x25519-sha512@openssh.com", True, True, None, True, 0),
    "debian-13": ("mlkem768x25519-sha256", True, True, None, True, 0),
}


def test_every_recorded_version_has_an_expectation():
    assert sorted(path.stem for path in RECORDED.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_config_for_each_recorded_openssh(tmp_path, version):
    first_kex, chacha, setenv, permit, penalties, note_count = EXPECTED[version]
    out, done = run_script(tmp_path, RECORDED / f"{version}.txt")
    assert done.returncode == 0, done.stderr
    config = (out / "sshd_config").read_text()
    found = directives(config)

    kex = found["KexAlgorithms"].split(",")
    assert kex[0] == first_kex
    assert "curve25519-sha256" in kex, "kept for clients without post-quantum key exchange"
    assert PROBE_KEX in kex, "`up` checks every box with it"
    assert not [k for k in kex if "nistp" in k or "sha1" in k or "sntrup4591761" in k]
    assert ("chacha20-poly1305@openssh.com" in found["Ciphers"]) == chacha
    assert all(c.endswith(("-gcm@openssh.com", "-ctr", "poly1305@openssh.com")) for c in found["Ciphers"].split(","))
    assert all(mac.endswith("-etm@openssh.com") for mac in found["MACs"].split(","))
    assert ("SetEnv" in found) == setenv
    assert found.get("PermitUserEnvironment") == permit
    assert ("PerSourcePenalties" in found) == penalties
    assert config.rstrip().endswith("# the static part\nPermitRootLogin no")

    authorized = (out / "authorized_keys" / "alice").read_text()
    assert authorized.rstrip().endswith(KEY)
    if setenv:
        assert 'GREETING="hello there"' in found["SetEnv"]
        assert 'PATH="/opt/venv/bin:' in found["SetEnv"]
        assert authorized == KEY + "\n"
    else:
        assert 'environment="GREETING=hello there"' in authorized
        assert 'environment="VIRTUAL_ENV=/opt/venv"' in authorized
    notes = (out / "notes").read_text().splitlines()
    assert len(notes) == note_count, notes
    assert all(note.startswith("OpenSSH ") for note in notes)
    assert not (out / "notes.tmp").exists()


def test_an_openssh_with_names_but_no_setenv_limits_the_user_environment(tmp_path):
    """Between 7.8 and the SetEnv sshd there is a gap no recorded image falls in: exercised by editing one."""
    record = tmp_path / "record.txt"
    record.write_text((RECORDED / "ubuntu-20.04.txt").read_text().replace("accepts SetEnv\n", ""))
    (tmp_path / "case").mkdir()
    out, done = run_script(tmp_path / "case", record)
    assert done.returncode == 0, done.stderr
    found = directives((out / "sshd_config").read_text())
    assert "SetEnv" not in found
    assert found["PermitUserEnvironment"].split(",")[:3] == ["PATH", "VIRTUAL_ENV", "LANG"]
    assert "GREETING" in found["PermitUserEnvironment"].split(",")


def test_an_openssh_without_curve25519_is_refused_in_one_sentence(tmp_path):
    record = tmp_path / "record.txt"
    text = (RECORDED / "ubuntu-18.04.txt").read_text()
    record.write_text(text.replace("curve25519-sha256@libssh.org\n", "").replace("curve25519-sha256\n", ""))
    (tmp_path / "case").mkdir()
    out, done = run_script(tmp_path / "case", record)
    assert done.returncode == 1
    assert "lacks curve25519" in done.stderr and "newer base image" in done.stderr
    assert not (out / "sshd_config").exists()


def test_without_a_key_the_script_stops(tmp_path):
    _, done = run_script(tmp_path, RECORDED / "debian-12.txt", DEEPBOX_AUTHORIZED_KEYS="")
    assert done.returncode != 0
    assert "no authorized key" in done.stderr


def test_a_restart_reuses_what_the_openssh_answered_until_a_binary_changes(tmp_path):
    """The container's layer keeps the answers: a restart asks nothing of ssh or sshd and writes the same
    files; an OpenSSH upgraded inside the box (another binary) is asked again."""
    record = RECORDED / "ubuntu-18.04.txt"  # the most answers: no SetEnv, names, notes
    out, first = run_script(tmp_path, record)
    assert first.returncode == 0, first.stderr
    written = {name: (out / name).read_text() for name in ("sshd_config", "notes", "authorized_keys/alice")}
    calls = tmp_path / "calls"
    assert "ssh -Q kex" in calls.read_text()
    calls.write_text("")

    out, again = run_script(tmp_path, record)
    assert again.returncode == 0, again.stderr
    assert calls.read_text() == "", "nothing asked on a restart"
    assert {name: (out / name).read_text() for name in written} == written
    assert again.stderr == first.stderr, "the notes reach the box log on every start"

    sshd = tmp_path / "bin" / "sshd"
    os.utime(sshd, (sshd.stat().st_atime, sshd.stat().st_mtime - 60))
    out, upgraded = run_script(tmp_path, record)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "ssh -Q kex" in calls.read_text()
    assert {name: (out / name).read_text() for name in written} == written
