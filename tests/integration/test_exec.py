"""A run configuration whose working folder is a mount, `deepbox exec`, and `deepbox ssh` without a box,
against a real engine, a real sshd and the real ssh client.

No IDE here: the run configuration deepbox wrote is followed the way the IDE follows it, over ssh.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shlex
import struct
import subprocess
import termios
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import PREFIX, Project, deepbox_command, run_deepbox

OWNER = (4242, 4243)  # the project's owner; as root, deepbox mirrors it in the box user
SCRIPT = """\
import os
import sys
from pathlib import Path

Path("where.txt").write_text(os.getcwd())
print("ran in", os.getcwd(), os.environ.get("GREETING"), sys.argv[1:])
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory, home, docker_client):
    """One running box with a data folder mounted at /data and a run configuration that works there."""
    root = tmp_path_factory.mktemp("exec")
    path, data = root / "proj", root / "data"
    (path / "src").mkdir(parents=True)
    data.mkdir()
    (path / "src" / "train.py").write_text(SCRIPT)
    project = Project(path, f"{PREFIX}-exec", home)
    project.write_config(
        f'ide = ["pycharm", "vscode"]\nmounts = ["{data}:/data"]\n[env]\nGREETING = "hi from env"\n'
        '[run.train]\nscript = "src/train.py"\nargs = "--epochs 2"\nworkdir = "/data"\n'
    )
    for item in (path, path / "src", path / "src" / "train.py", data):
        os.chown(item, *OWNER)
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    project.up = json.loads(result.out)
    project.data = data
    yield project
    from conftest import remove_box

    remove_box(docker_client, project.name)


def _option(configuration: ET.Element, name: str) -> str:
    found = configuration.find(f"option[@name='{name}']")
    assert found is not None, f"no option {name}"
    return found.get("value", "")


def test_a_run_configuration_works_in_a_mounted_folder(box):
    idea, vscode = box.path / ".idea", box.path / ".vscode"
    assert {str(idea / "workspace.xml"), str(vscode / "launch.json")} <= set(box.up["ide_files"])
    workspace = ET.parse(idea / "workspace.xml").getroot()  # noqa: S314 - a file this test's `up` wrote
    run = workspace.find(".//configuration[@name='train']")
    assert _option(run, "WORKING_DIRECTORY") == "/data"
    launch = json.loads((vscode / "launch.json").read_text())
    (train,) = [item for item in launch["configurations"] if item["name"] == "train"]
    assert (train["cwd"], train["program"]) == ("/data", "${workspaceFolder}/src/train.py")

    # As PyCharm runs it: the script through the project mapping, the working folder as it stands.
    script = _option(run, "SCRIPT_NAME").replace("$PROJECT_DIR$", box.up["workspace"])
    python = box.up["python"]
    command = f"cd {shlex.quote(_option(run, 'WORKING_DIRECTORY'))} && {python} {script} {_option(run, 'PARAMETERS')}"
    result = box.ssh(command)
    assert result.code == 0, result.err
    assert result.out.strip() == "ran in /data hi from env ['--epochs', '2']"
    written = box.data / "where.txt"
    assert written.read_text() == "/data", "the host sees what the run wrote in its working folder"
    assert (written.stat().st_uid, written.stat().st_gid) == OWNER


def test_exec_runs_as_the_box_user_in_the_workspace(box):
    result = box.deepbox("exec", "--", "sh", "-c", "id -un; pwd")
    assert result.code == 0, result.err
    assert result.out.split() == [box.up["user"], box.up["workspace"]]


def test_exec_gets_the_environment_an_ssh_login_gets_and_no_more(box):
    probe = 'echo "$GREETING|$PATH|$(command -v python)|$HOME|$USER|$VIRTUAL_ENV|$SSL_CERT_FILE"'
    by_exec = box.deepbox("exec", "--", "sh", "-c", probe)
    by_ssh = box.ssh(probe)
    assert by_exec.code == by_ssh.code == 0, by_exec.err + by_ssh.err
    assert by_exec.out == by_ssh.out
    assert by_exec.out.startswith("hi from env|/opt/venv/bin:")
    names = {line.split("=", 1)[0] for line in box.deepbox("exec", "--", "env").out.splitlines()}
    assert not names & {"DEEPBOX_AUTHORIZED_KEYS", "DEEPBOX_SESSION_ENV", "DEBIAN_FRONTEND"}


def test_exec_passes_the_exit_code_and_keeps_stdout_and_stderr_apart(box):
    result = box.deepbox("exec", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.code, result.out, result.err) == (3, "out\n", "err\n")
    missing = box.deepbox("exec", "--", "no-such-program")
    assert missing.code == 127, missing.err


def test_exec_streams_output_as_it_comes(box):
    script = "echo first; sleep 0.5; echo second >&2; sleep 0.5; echo third; sleep 4; echo last"
    proc = subprocess.Popen(
        deepbox_command(box.path, "exec", "--", "sh", "-c", script),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert proc.poll() is None, "the first lines arrive while the command still runs"
        assert lines == [b"first\n", b"second\n", b"third\n"]
        assert proc.stdout.read() == b"last\n"
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_exec_ends_quietly_when_its_reader_goes_away(box):
    """`deepbox exec -- yes | head -n 2`"""
    writer = subprocess.Popen(
        deepbox_command(box.path, "exec", "--", "yes"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    reader = subprocess.run(["head", "-n", "2"], stdin=writer.stdout, capture_output=True, timeout=60, check=False)
    writer.stdout.close()
    _, errors = writer.communicate(timeout=60)
    assert reader.stdout == b"y\ny\n"
    assert (writer.returncode, errors) == (141, b"")


def test_exec_passes_piped_input(box):
    proc = subprocess.run(
        deepbox_command(box.path, "exec", "--", "sh", "-c", "cat; echo done"),
        input=b"x\ny\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, b"x\ny\ndone\n"), proc.stderr


def test_exec_needs_no_ssh(box, tmp_path):
    """No ssh config, no client key: the command goes through the engine alone."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_deepbox(elsewhere, "exec", box.name, "--", "hostname", env={"HOME": str(tmp_path), "PATH": "/bin"})
    assert result.code == 0, result.err
    assert result.out.strip() == box.name


def test_exec_tty_gives_the_command_a_terminal_of_this_size(box):
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen(
        deepbox_command(box.path, "exec", "-t", "--", "sh", "-c", "tty; stty size; exit 5"),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm"},
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal's last user is gone
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    assert proc.wait(timeout=30) == 5, output
    lines = output.decode().replace("\r", "").split("\n")
    assert lines[0].startswith("/dev/pts/"), output
    assert lines[1] == "33 101", output


def test_ssh_and_exec_without_a_box_say_so(box):
    missing = f"{PREFIX}-missing"
    for command in ("ssh", "exec"):
        result = box.deepbox(command, missing, "--", "true")
        assert (result.code, result.out) == (1, ""), command
        assert result.err == (
            f"Error: There is no box named '{missing}'; `deepbox status` lists the boxes, `deepbox up` makes one.\n"
        ), command


def test_ssh_and_exec_on_a_stopped_box_say_so(box):
    """Last: it stops the module's box."""
    down = box.deepbox("down")
    assert down.code == 0, down.err
    for command in ("ssh", "exec"):
        result = box.deepbox(command, "--", "true")
        assert (result.code, result.out) == (1, ""), command
        assert result.err == f"Error: Box '{box.name}' is not running; start it with `deepbox up`.\n", command
