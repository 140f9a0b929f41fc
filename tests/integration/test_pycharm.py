"""PyCharm's mechanics against a real box: the files deepbox writes, followed the way PyCharm follows them.

No PyCharm here; instead the real OpenSSH clients do what it does with those files: upload helpers over
SFTP into the box user's home, then run a project script through the deployment mapping, with the run
configuration's working directory, parameters, environment and interpreter.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deepbox.config import load_spec
from deepbox.ide import pycharm
from deepbox.model import UpResult
from deepbox.ssh import ssh_base_args

OWNER = (4242, 4243)
SCRIPT = """\
import os
import sys

print("hello from", os.getcwd(), os.environ.get("GREETING"), sys.argv[1:])
sys.exit(3)
"""
EDITED = """\
import sys

print("edited on the host")
sys.exit(4)
"""
CONFIG = """\
frameworks = ["numpy"]

[run.train]
script = "src/train.py"
args = "--epochs 2"
workdir = "src"
env = { GREETING = "hi there" }
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory, home, docker_client):
    """One box for the module; building it is the slow part."""
    from conftest import PREFIX, Project, remove_box

    path = tmp_path_factory.mktemp("pycharm") / "proj"
    (path / "src").mkdir(parents=True)
    (path / "src" / "train.py").write_text(SCRIPT)
    project = Project(path, f"{PREFIX}-pycharm", home)
    project.write_config(CONFIG)
    for item in (path, path / "src", path / "src" / "train.py"):
        os.chown(item, *OWNER)
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    project.up = json.loads(result.out)
    yield project
    remove_box(docker_client, project.name)


def up_result(data: dict) -> UpResult:
    names = {field.name for field in dataclasses.fields(UpResult)} - {"frameworks"}
    return UpResult(**{key: value for key, value in data.items() if key in names})


def parse(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # noqa: S314 - files this test run wrote


def option(element: ET.Element, name: str) -> str:
    found = element.find(f"option[@name='{name}']")
    assert found is not None, f"no option {name}"
    return found.get("value", "")


def test_pycharm_files_drive_helpers_upload_and_a_mapped_run(box, tmp_path):
    spec = load_spec(box.path)
    result = up_result(box.up)
    written = pycharm.write_project(spec, result)
    assert written
    idea = box.path / ".idea"
    assert all(path.stat().st_uid == OWNER[0] for path in written), "the project owner can keep editing them"
    settings = tmp_path / "PyCharm2025.1"
    settings.mkdir()
    table = pycharm.register_interpreter(spec, result, settings)

    # The run configuration names the interpreter; the IDE-level entry says where it is.
    run = parse(idea / "workspace.xml").find(".//configuration[@name='train']")
    jdk = next(jdk for jdk in parse(table).iter("jdk") if jdk.find("name").get("value") == option(run, "SDK_NAME"))
    additional = jdk.find("additional")
    python, helpers = additional.get("INTERPRETER_PATH"), additional.get("HELPERS_PATH")
    assert python == "/opt/venv/bin/python"

    # 1. Helpers go up over SFTP, through the alias and the ssh config deepbox's own commands use.
    base = ssh_base_args()
    assert base[:2] == ["ssh", "-F"]
    local = tmp_path / "helpers" / "x"
    local.mkdir(parents=True)
    (local / "hello.py").write_text("print('helpers ok')\n")
    batch = f"-mkdir {helpers}\n-mkdir {helpers}/x\nput {local / 'hello.py'} {helpers}/x/hello.py\n"
    sftp = subprocess.run(
        ["sftp", *base[1:], "-b", "-", box.alias], input=batch, capture_output=True, text=True, timeout=60, check=False
    )
    assert sftp.returncode == 0, sftp.stderr
    uploaded = box.ssh(f"{python} {helpers}/x/hello.py && stat -c %U {helpers}/x/hello.py")
    assert uploaded.code == 0, uploaded.err
    assert uploaded.out.split() == ["helpers", "ok", result.user]

    # 2. The project script runs through the deployment mapping, as the run configuration says.
    publish = parse(idea / "deployment.xml").find("component[@name='PublishConfigData']")
    paths = publish.find(f"serverData/paths[@name='{result.alias}']")
    mapping = paths.find("serverdata/mappings/mapping[@local='$PROJECT_DIR$']")
    remote_root = mapping.get("deploy")
    assert remote_root == spec.workspace

    def remote(value: str) -> str:
        assert value.startswith("$PROJECT_DIR$"), value
        return remote_root + value.removeprefix("$PROJECT_DIR$")

    envs = " ".join(shlex.quote(f"{env.get('name')}={env.get('value')}") for env in run.find("envs"))
    workdir, script = remote(option(run, "WORKING_DIRECTORY")), remote(option(run, "SCRIPT_NAME"))
    program = f"{shlex.quote(python)} {shlex.quote(script)} {option(run, 'PARAMETERS')}"
    command = f"cd {shlex.quote(workdir)} && env {envs} {program}"
    first = box.ssh(command)
    assert first.code == 3, first.err
    assert first.out.strip() == "hello from /workspace/src hi there ['--epochs', '2']"

    # 3. An edit on the host is what the box runs next: the folder is mounted, nothing is uploaded.
    (box.path / "src" / "train.py").write_text(EDITED)
    second = box.ssh(command)
    assert second.code == 4, second.err
    assert second.out.strip() == "edited on the host"

    # 4. Nothing changes on a second write while the box stays where it is.
    assert pycharm.write_project(spec, result) == []


def test_up_with_ide_pycharm_writes_the_files_then_leaves_them(box):
    import shutil

    shutil.rmtree(box.path / ".idea", ignore_errors=True)
    config = box.path / "deepbox.toml"
    config.write_text('ide = ["pycharm"]\n' + config.read_text())
    first = box.deepbox("up", "--json")
    assert first.code == 0, first.err
    data = json.loads(first.out)
    assert data["action"] == "running"  # `ide` changes no image and no container
    written = {Path(path).name for path in data["ide_files"]}
    assert {"sshConfigs.xml", "webServers.xml", "deployment.xml", "misc.xml", "workspace.xml"} <= written
    misc = parse(box.path / ".idea" / "misc.xml").find("component[@name='ProjectRootManager']")
    assert misc.get("project-jdk-name") == pycharm.interpreter_name(box.name)
    again = box.deepbox("up", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["ide_files"] == []


def test_ide_pycharm_prints_the_fingerprint_ssh_keygen_gives_for_the_boxs_host_key(box, docker_client, tmp_path):
    container = docker_client.containers.get(f"deepbox-{box.name}")
    code, output = container.exec_run(["cat", "/etc/ssh/deepbox/ssh_host_ed25519_key.pub"])
    assert code == 0
    (tmp_path / "host_key.pub").write_bytes(output)
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(tmp_path / "host_key.pub")], capture_output=True, text=True, check=True
    )
    fingerprint = listed.stdout.split()[1]
    result = box.deepbox("ide", "pycharm")
    assert result.code == 0, result.err
    assert f"accept it only if its fingerprint is {fingerprint}." in result.out


def test_ide_in_a_folder_whose_box_belongs_to_another_project_writes_nothing(box, tmp_path):
    from conftest import Project

    other = Project(tmp_path / "other", box.name, box.home)
    other.path.mkdir()
    other.write_config(CONFIG)
    sentence = (
        f"Error: Box '{box.name}' belongs to {box.path}, not to {other.path}; run this command there, or set "
        f'name = "..." in {other.path / "deepbox.toml"} to give this project its own box.'
    )
    for command in (("ide", "pycharm"), ("ide", "vscode", "--no-open"), ("ide", "gateway")):
        result = other.deepbox(*command)
        assert (result.code, result.err.strip(), result.out) == (1, sentence, ""), command
    assert [path.name for path in other.path.iterdir()] == ["deepbox.toml"]
