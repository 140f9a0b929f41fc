"""ide/pycharm.py: the .idea files, the IDE-level interpreter entry, and finding PyCharm's settings folder.

Golden files live in tests/unit/golden/pycharm/<case>/; after an intended change, regenerate them with
DEEPBOX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_ide_pycharm.py and review the diff.
"""
# ruff: noqa: E501 - the sample files below keep PyCharm's own one-element-per-line layout

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deepbox import ssh
from deepbox.config import load_spec
from deepbox.errors import ConfigError, DeepboxError
from deepbox.ide import pycharm

from .helpers import check_golden as compare_golden
from .helpers import snapshot, up_result

GOLDEN = Path(__file__).parent / "golden" / "pycharm"


def check_golden(case: str, files: dict[str, bytes]) -> None:
    compare_golden(GOLDEN, case, files)


SDK = "Remote Python (deepbox-demo)"
CONFIG = """\
name = "demo"
mounts = ["~/datasets:/data:ro", "./cache:/cache"]

[user]
name = "alice"
uid = 4321
gid = 4322

[run.train]
script = "src/train.py"
args = '--epochs 2 --name "a b"'
workdir = "src"
env = { GREETING = "hi", SEED = "1" }

[run.eval]
script = "eval.py"
"""

# What a project PyCharm has already opened looks like: other components, servers and run configurations.
EXISTING = {
    "misc.xml": """\
<?xml version="1.0" encoding="UTF-8"?>
<project version="4">
  <component name="Black">
    <option name="sdkName" value="Python 3.11 (myproj)" />
  </component>
  <!-- kept: a comment the user wrote -->
  <component name="ProjectRootManager" version="2" project-jdk-name="Python 3.11 (myproj)" project-jdk-type="Python SDK" />
  <component name="PythonCompatibilityInspectionAdvertiser">
    <option name="version" value="3" />
  </component>
</project>""",
    "modules.xml": """\
<?xml version="1.0" encoding="UTF-8"?>
<project version="4">
  <component name="ProjectModuleManager">
    <modules>
      <module fileurl="file://$PROJECT_DIR$/.idea/myproj.iml" filepath="$PROJECT_DIR$/.idea/myproj.iml" />
    </modules>
  </component>
</project>""",
    "myproj.iml": """\
<?xml version="1.0" encoding="UTF-8"?>
<module type="PYTHON_MODULE" version="4">
  <component name="NewModuleRootManager">
    <content url="file://$MODULE_DIR$">
      <sourceFolder url="file://$MODULE_DIR$/src" isTestSource="false" />
      <excludeFolder url="file://$MODULE_DIR$/.venv" />
    </content>
    <orderEntry type="inheritedJdk" />
    <orderEntry type="sourceFolder" forTests="false" />
  </component>
  <component name="PyDocumentationSettings">
    <option name="format" value="GOOGLE" />
    <option name="myDocStringFormat" value="Google" />
  </component>
</module>""",
    "deployment.xml": """\
<?xml version="1.0" encoding="UTF-8"?>
<project version="4">
  <component name="PublishConfigData" autoUpload="Always" serverName="gpu-server" remoteFilesAllowedToDisappearOnAutoupload="false">
    <serverData>
      <paths name="gpu-server">
        <serverdata>
          <mappings>
            <mapping deploy="/srv/myproj" local="$PROJECT_DIR$" web="/" />
          </mappings>
        </serverdata>
      </paths>
    </serverData>
    <option name="myAutoUpload" value="ALWAYS" />
  </component>
</project>""",
    "sshConfigs.xml": """\
<?xml version="1.0" encoding="UTF-8"?>
<project version="4">
  <component name="SshConfigs">
    <configs>
      <sshConfig authType="PASSWORD" host="gpu.example.com" id="4b627e71-c258-495b-bec7-e5ee03a8481a" port="22" nameFormat="DESCRIPTIVE" username="alice" />
    </configs>
  </component>
</project>""",
    "webServers.xml": """\
<?xml version="1.0" encoding="UTF-8"?>
<project version="4">
  <component name="WebServers">
    <option name="servers">
      <webServer id="19418e20-080a-4c00-955d-6cd720c287b1" name="gpu-server">
        <fileTransfer rootFolder="/home/alice" accessType="SFTP" host="gpu.example.com" port="22" sshConfigId="4b627e71-c258-495b-bec7-e5ee03a8481a" sshConfig="alice@gpu.example.com:22 password">
          <advancedOptions>
            <advancedOptions dataProtectionLevel="Private" keepAliveTimeout="0" passiveMode="true" shareSSLContext="true" />
          </advancedOptions>
        </fileTransfer>
      </webServer>
    </option>
  </component>
</project>""",
    "workspace.xml": """\
<?xml version="1.0" encoding="UTF-8"?>
<project version="4">
  <component name="ChangeListManager">
    <list default="true" id="0f6c3d2e-1111-2222-3333-444455556666" name="Changes" comment="" />
    <option name="SHOW_DIALOG" value="false" />
  </component>
  <component name="ProjectId" id="2abcDEFghiJKL" />
  <component name="PropertiesComponent">{
  "keyToString": {
    "RunOnceActivity.ShowReadmeOnStart": "true"
  }
}</component>
  <component name="RunManager" selected="Python.serve">
    <configuration default="true" type="PythonConfigurationType" factoryName="Python">
      <option name="PARENT_ENVS" value="true" />
      <method v="2" />
    </configuration>
    <configuration name="serve" type="PythonConfigurationType" factoryName="Python">
      <module name="myproj" />
      <option name="SDK_HOME" value="$PROJECT_DIR$/.venv/bin/python" />
      <option name="SDK_NAME" value="Python 3.11 (myproj)" />
      <option name="SCRIPT_NAME" value="$PROJECT_DIR$/serve.py" />
      <method v="2" />
    </configuration>
    <configuration name="train" type="PythonConfigurationType" factoryName="Python" temporary="true" nameIsGenerated="true">
      <module name="myproj" />
      <option name="INTERPRETER_OPTIONS" value="-X dev" />
      <option name="PARENT_ENVS" value="true" />
      <envs>
        <env name="PYTHONUNBUFFERED" value="1" />
        <env name="WANDB_MODE" value="offline" />
        <env name="SEED" value="7" />
      </envs>
      <option name="SDK_HOME" value="$PROJECT_DIR$/.venv/bin/python" />
      <option name="SDK_NAME" value="Python 3.11 (myproj)" />
      <option name="WORKING_DIRECTORY" value="$PROJECT_DIR$" />
      <option name="IS_MODULE_SDK" value="true" />
      <option name="ADD_CONTENT_ROOTS" value="true" />
      <option name="ADD_SOURCE_ROOTS" value="true" />
      <EXTENSION ID="PythonCoverageRunConfigurationExtension" runner="coverage.py" />
      <option name="SCRIPT_NAME" value="$PROJECT_DIR$/train.py" />
      <option name="PARAMETERS" value="" />
      <option name="EMULATE_TERMINAL" value="true" />
      <method v="2" />
    </configuration>
    <list>
      <item itemvalue="Python.serve" />
      <item itemvalue="Python.train" />
    </list>
    <recent_temporary>
      <list>
        <item itemvalue="Python.train" />
      </list>
    </recent_temporary>
  </component>
  <component name="SpellCheckerSettings" RuntimeDictionaries="0" Folders="0" CustomDictionaries="0" DefaultDictionary="application-level" UseSingleDictionary="true" transferred="true" />
</project>
""",
}

# PyCharm's IDE-level interpreter table as it is after a local interpreter was added.
EXISTING_JDK_TABLE = """\
<application>
  <component name="ProjectJdkTable">
    <jdk version="2">
      <name value="Python 3.11 (myproj)" />
      <type value="Python SDK" />
      <version value="Python 3.11.7" />
      <homePath value="$USER_HOME$/myproj/.venv/bin/python" />
      <roots>
        <classPath>
          <root type="composite" />
        </classPath>
        <sourcePath>
          <root type="composite" />
        </sourcePath>
      </roots>
      <additional ASSOCIATED_PROJECT_PATH="$USER_HOME$/myproj" SDK_UUID="5eb19f9d-4972-44f8-952c-826af29facb9">
        <setting name="FLAVOR_ID" value="VirtualEnvSdkFlavor" />
        <setting name="FLAVOR_DATA" value="{}" />
      </additional>
    </jdk>
  </component>
</application>"""


@pytest.fixture(autouse=True)
def no_processes(tmp_path, monkeypatch):
    """The process check looks at an empty /proc, so a PyCharm running on the tester's machine doesn't matter."""
    proc = tmp_path / "proc"
    proc.mkdir()
    monkeypatch.setattr(pycharm, "PROC", proc)
    return proc


@pytest.fixture
def spec(make_project):
    return load_spec(make_project(CONFIG, folder="golden"))


def parse(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # noqa: S314 - files this test wrote


def component(root: ET.Element, name: str) -> ET.Element:
    found = root.find(f"component[@name='{name}']")
    assert found is not None, f"no component {name}"
    return found


def option(element: ET.Element, name: str) -> str | None:
    found = element.find(f"option[@name='{name}']")
    return None if found is None else found.get("value")


def write_existing(project: Path) -> None:
    idea = project / ".idea"
    idea.mkdir()
    for name, text in EXISTING.items():
        (idea / name).write_text(text)


# Fresh and existing projects: golden files ----------------------------------------------------------


def test_fresh_project_files_match_the_golden_files(spec):
    written = pycharm.write_project(spec, up_result())

    idea = spec.project / ".idea"
    names = [
        "sshConfigs.xml",
        "webServers.xml",
        "deployment.xml",
        "remote-mappings.xml",
        "misc.xml",
        "modules.xml",
        "golden.iml",
        "workspace.xml",
    ]
    assert written == [idea / name for name in names]
    check_golden("fresh", {path.name: path.read_bytes() for path in idea.iterdir()})


def test_existing_project_files_are_merged_and_match_the_golden_files(spec):
    write_existing(spec.project)

    written = pycharm.write_project(spec, up_result())

    idea = spec.project / ".idea"
    assert {path.name for path in written} == (set(EXISTING) - {"modules.xml"}) | {"remote-mappings.xml"}
    assert not (idea / "golden.iml").exists(), "the project's own module is used, no second one"
    check_golden("existing", {path.name: path.read_bytes() for path in idea.iterdir()})


def test_merging_keeps_the_users_components_elements_and_attributes(spec):
    write_existing(spec.project)
    pycharm.write_project(spec, up_result())
    idea = spec.project / ".idea"

    misc = parse(idea / "misc.xml")
    assert option(component(misc, "Black"), "sdkName") == "Python 3.11 (myproj)"
    assert option(component(misc, "PythonCompatibilityInspectionAdvertiser"), "version") == "3"
    assert component(misc, "ProjectRootManager").attrib == {
        "name": "ProjectRootManager",
        "version": "2",
        "project-jdk-name": SDK,
        "project-jdk-type": "Python SDK",
    }
    assert "<!-- kept: a comment the user wrote -->" in (idea / "misc.xml").read_text()

    module = parse(idea / "myproj.iml")
    manager = component(module, "NewModuleRootManager")
    assert manager.find("content/sourceFolder").get("url") == "file://$MODULE_DIR$/src"
    assert manager.find("content/excludeFolder").get("url") == "file://$MODULE_DIR$/.venv"
    entries = [entry.attrib for entry in manager.findall("orderEntry")]
    assert entries == [
        {"type": "jdk", "jdkName": SDK, "jdkType": "Python SDK"},
        {"type": "sourceFolder", "forTests": "false"},
    ]
    assert option(component(module, "PyDocumentationSettings"), "format") == "GOOGLE"

    deployment = component(parse(idea / "deployment.xml"), "PublishConfigData")
    # The user's default server keeps its automatic upload; ours is added next to it.
    assert deployment.get("serverName") == "gpu-server"
    assert deployment.get("autoUpload") == "Always"
    assert option(deployment, "myAutoUpload") == "ALWAYS"
    paths = {paths.get("name"): paths.find("serverdata/mappings/mapping").attrib for paths in deployment.iter("paths")}
    assert paths["gpu-server"] == {"deploy": "/srv/myproj", "local": "$PROJECT_DIR$", "web": "/"}
    assert paths["deepbox-demo"] == {"deploy": "/workspace", "local": "$PROJECT_DIR$", "web": "/"}

    configs = parse(idea / "sshConfigs.xml").findall(".//sshConfig")
    assert [config.get("host") for config in configs] == ["gpu.example.com", "127.0.0.1"]
    assert configs[0].get("authType") == "PASSWORD"
    servers = parse(idea / "webServers.xml").findall(".//webServer")
    assert [server.get("name") for server in servers] == ["gpu-server", "deepbox-demo"]
    assert servers[0].find(".//advancedOptions/advancedOptions").get("keepAliveTimeout") == "0"

    workspace = parse(idea / "workspace.xml")
    assert component(workspace, "ChangeListManager").find("list").get("name") == "Changes"
    assert component(workspace, "ProjectId").get("id") == "2abcDEFghiJKL"
    assert '"RunOnceActivity.ShowReadmeOnStart": "true"' in component(workspace, "PropertiesComponent").text
    assert component(workspace, "SpellCheckerSettings").get("UseSingleDictionary") == "true"
    runs = component(workspace, "RunManager")
    assert runs.get("selected") == "Python.serve"
    assert runs.find("configuration[@default='true']").find("option").get("name") == "PARENT_ENVS"
    serve = runs.find("configuration[@name='serve']")
    assert option(serve, "SDK_NAME") == "Python 3.11 (myproj)", "a configuration deepbox doesn't own is untouched"
    train = runs.find("configuration[@name='train']")
    assert "temporary" not in train.attrib
    assert train.get("nameIsGenerated") == "true"
    assert option(train, "INTERPRETER_OPTIONS") == "-X dev"
    assert option(train, "EMULATE_TERMINAL") == "true"
    assert train.find("EXTENSION").get("runner") == "coverage.py"
    assert {env.get("name"): env.get("value") for env in train.find("envs")} == {
        "PYTHONUNBUFFERED": "1",
        "WANDB_MODE": "offline",
        "SEED": "1",
        "GREETING": "hi",
    }
    assert option(train, "SDK_NAME") == SDK
    assert option(train, "IS_MODULE_SDK") == "false"
    assert option(train, "SCRIPT_NAME") == "$PROJECT_DIR$/src/train.py"
    assert option(train, "WORKING_DIRECTORY") == "$PROJECT_DIR$/src"
    assert option(train, "PARAMETERS") == '--epochs 2 --name "a b"'
    assert train.find("module").get("name") == "myproj"
    assert [item.get("itemvalue") for item in runs.findall("list/item")] == [
        "Python.serve",
        "Python.train",
        "Python.eval",
    ]
    assert runs.find("recent_temporary") is None, "its only entry was ours"


# Re-runs, changed endpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing"])
def test_running_twice_changes_nothing(spec, existing):
    if existing:
        write_existing(spec.project)
    assert pycharm.write_project(spec, up_result())
    before = snapshot(spec.project / ".idea")

    assert pycharm.write_project(spec, up_result()) == []

    assert snapshot(spec.project / ".idea") == before


def test_unchanged_files_of_the_user_are_not_reformatted(spec):
    idea = spec.project / ".idea"
    idea.mkdir()
    # Four-space indentation: a file deepbox has nothing to change in must keep its bytes.
    vcs = '<?xml version="1.0" encoding="UTF-8"?>\n<project version="4">\n    <component name="VcsDirectoryMappings" />\n</project>\n'
    (idea / "vcs.xml").write_text(vcs)
    misc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<project version="4">\n'
        f'    <component name="ProjectRootManager" version="2" project-jdk-name="{SDK}" '
        'project-jdk-type="Python SDK" />\n</project>\n'
    )
    (idea / "misc.xml").write_text(misc)

    written = pycharm.write_project(spec, up_result())

    assert idea / "misc.xml" not in written
    assert (idea / "misc.xml").read_text() == misc
    assert (idea / "vcs.xml").read_text() == vcs


def test_a_new_port_key_and_user_update_the_entries_in_place(spec):
    write_existing(spec.project)
    pycharm.write_project(spec, up_result())
    idea = spec.project / ".idea"
    counts = {name: len(list(parse(idea / name).iter())) for name in EXISTING if name.endswith(".xml")}
    new_key = str(Path.home() / "keys" / "other_ed25519")

    written = pycharm.write_project(spec, up_result(port=2300, key=new_key, user="bob"))

    assert {path.name for path in written} == {"sshConfigs.xml", "webServers.xml", "remote-mappings.xml"}
    assert {name: len(list(parse(idea / name).iter())) for name in counts} == counts, "nothing added"
    ours = parse(idea / "sshConfigs.xml").findall(f".//sshConfig[@id='{pycharm.ssh_config_id('demo')}']")
    assert len(ours) == 1
    assert (ours[0].get("port"), ours[0].get("username")) == ("2300", "bob")
    assert ours[0].get("keyPath") == "$USER_HOME$/keys/other_ed25519"
    transfer = parse(idea / "webServers.xml").findall(".//webServer[@name='deepbox-demo']/fileTransfer")
    assert len(transfer) == 1
    assert transfer[0].get("port") == "2300"
    mappings = parse(idea / "remote-mappings.xml").findall(".//remote-mappings")
    assert [entry.get("server-id") for entry in mappings] == ["python@sftp://bob@127.0.0.1:2300/opt/venv/bin/python"]
    assert len(mappings[0].findall("settings/list/mapping")) == 3


def test_ids_are_derived_from_the_box_name():
    assert pycharm.ssh_config_id("demo") == pycharm.ssh_config_id("demo")
    assert pycharm.ssh_config_id("demo") != pycharm.ssh_config_id("other")
    assert pycharm.ssh_config_id("demo") != pycharm.web_server_id("demo")
    assert pycharm.interpreter_name("demo") == SDK


def test_every_written_file_is_well_formed_xml_in_pycharm_style(spec, tmp_path):
    write_existing(spec.project)
    written = pycharm.write_project(spec, up_result())
    config = tmp_path / "PyCharm2025.1"
    config.mkdir()
    pycharm.register_interpreter(spec, up_result(), config)

    for path in written:
        text = path.read_text()
        parse(path)
        assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<'), path.name
        assert "\t" not in text
        indents = {len(line) - len(line.lstrip(" ")) for line in text.splitlines()}
        assert all(indent % 2 == 0 for indent in indents), path.name
    for path in (config / "options").iterdir():
        assert parse(path).tag == "application"
        assert path.read_text().startswith("<application>"), "IDE-level files have no XML declaration"


# The id chain PyCharm follows ---------------------------------------------------------------------


def test_the_id_chain_from_run_configuration_to_ssh_config(spec, tmp_path):
    result = up_result()
    pycharm.write_project(spec, result)
    config = tmp_path / "PyCharm2025.1"
    config.mkdir()
    table = pycharm.register_interpreter(spec, result, config)
    idea = spec.project / ".idea"

    # run configuration -> interpreter name -> misc.xml / module -> IDE-level jdk entry
    names = {option(run, "SDK_NAME") for run in parse(idea / "workspace.xml").iter("configuration")}
    assert names == {SDK}
    assert component(parse(idea / "misc.xml"), "ProjectRootManager").get("project-jdk-name") == SDK
    assert parse(idea / "golden.iml").find(".//orderEntry[@type='jdk']").get("jdkName") == SDK
    jdks = [jdk for jdk in parse(table).iter("jdk") if jdk.find("name").get("value") == SDK]
    assert len(jdks) == 1
    jdk = jdks[0]
    assert jdk.find("type").get("value") == "Python SDK"
    assert jdk.find("version").get("value") == "Python 3.11.2"
    home = jdk.find("homePath").get("value")
    assert home == "sftp://alice@127.0.0.1:2222/opt/venv/bin/python"
    additional = jdk.find("additional")
    assert additional.get("INTERPRETER_PATH") == "/opt/venv/bin/python"
    assert additional.get("HELPERS_PATH") == "/home/alice/.pycharm_helpers"
    assert additional.get("WEB_SERVER_CREDENTIALS_ID") == "sftp://alice@127.0.0.1:2222"

    # jdk entry -> IDE-level web server -> IDE-level ssh config
    server = parse(config / "options" / "webServers.xml").find(
        f".//webServer[@id='{additional.get('WEB_SERVER_CONFIG_ID')}']"
    )
    assert server is not None
    assert server.get("name") == additional.get("WEB_SERVER_CONFIG_NAME")
    transfer = server.find("fileTransfer")
    assert (transfer.get("accessType"), transfer.get("host"), transfer.get("port")) == ("SFTP", "127.0.0.1", "2222")
    ssh = parse(config / "options" / "sshConfigs.xml").find(f".//sshConfig[@id='{transfer.get('sshConfigId')}']")
    assert ssh is not None
    assert (ssh.get("host"), ssh.get("port"), ssh.get("username")) == ("127.0.0.1", "2222", "alice")
    assert ssh.get("keyPath") == "$USER_HOME$/.local/share/deepbox/keys/demo/id_ed25519"
    assert transfer.get("sshConfig") == ssh.get("customName")

    # The project-level copies: deployment -> project web server -> project ssh config, same ids.
    publish = component(parse(idea / "deployment.xml"), "PublishConfigData")
    project_server = parse(idea / "webServers.xml").find(f".//webServer[@name='{publish.get('serverName')}']")
    assert project_server.get("id") == server.get("id")
    project_ssh = parse(idea / "sshConfigs.xml").find(
        f".//sshConfig[@id='{project_server.find('fileTransfer').get('sshConfigId')}']"
    )
    assert project_ssh.attrib == ssh.attrib
    assert publish.find(f"serverData/paths[@name='{server.get('name')}']") is not None
    # The interpreter's path mappings are keyed by its homePath.
    entry = parse(idea / "remote-mappings.xml").find(".//remote-mappings")
    assert entry.get("server-id") == f"python@{home}"


# Errors: nothing is written ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["misc.xml", "workspace.xml", "deployment.xml", "modules.xml", "sshConfigs.xml"])
def test_a_malformed_existing_file_stops_before_anything_is_written(spec, name):
    write_existing(spec.project)
    idea = spec.project / ".idea"
    (idea / name).write_text('<?xml version="1.0" encoding="UTF-8"?>\n<project version="4">\n  <component name="X">\n')
    before = snapshot(idea)

    with pytest.raises(DeepboxError) as caught:
        pycharm.write_project(spec, up_result())

    assert str(idea / name) in caught.value.message
    assert "not well-formed XML" in caught.value.message
    assert "fix or remove" in caught.value.message
    assert snapshot(idea) == before


def test_a_file_with_another_root_element_is_refused(spec):
    idea = spec.project / ".idea"
    idea.mkdir()
    (idea / "misc.xml").write_text('<module type="PYTHON_MODULE" version="4" />')

    with pytest.raises(DeepboxError, match=r"misc\.xml is not a PyCharm settings file .*<module>"):
        pycharm.write_project(spec, up_result())

    assert [path.name for path in idea.iterdir()] == ["misc.xml"]


@pytest.mark.parametrize("value", ["../elsewhere/run.py", "/abs/run.py"])
def test_a_script_outside_the_project_is_refused(make_project, value):
    spec = load_spec(make_project(f'name = "demo"\n[run.x]\nscript = "{value}"\n'))

    with pytest.raises(ConfigError) as caught:
        pycharm.write_project(spec, up_result())

    assert caught.value.message == (
        f"{spec.source}: run.x.script {value!r} must be a path inside the project folder, relative to it."
    )
    assert not (spec.project / ".idea").exists()


@pytest.mark.parametrize(
    ("workdir", "expected"),
    [
        ("/data", "/data"),
        ("/data/runs/1", "/data/runs/1"),
        ("/cache/", "/cache"),
        ("/workspace/src", "$PROJECT_DIR$/src"),
        ("/workspace", "$PROJECT_DIR$"),
        ("src/../out", "$PROJECT_DIR$/out"),
    ],
)
def test_the_working_directory_is_the_project_folder_or_a_mounts_box_path(make_project, workdir, expected):
    spec = load_spec(make_project(CONFIG.replace('workdir = "src"', f'workdir = "{workdir}"')))

    pycharm.write_project(spec, up_result())

    train = parse(spec.project / ".idea" / "workspace.xml").find(".//configuration[@name='train']")
    assert option(train, "WORKING_DIRECTORY") == expected
    assert option(train, "SCRIPT_NAME") == "$PROJECT_DIR$/src/train.py"


@pytest.mark.parametrize("workdir", ["/scratch", "/database", "../elsewhere", "/"])
def test_a_working_directory_outside_every_mount_is_refused(make_project, workdir):
    spec = load_spec(make_project(CONFIG.replace('workdir = "src"', f'workdir = "{workdir}"')))

    with pytest.raises(ConfigError) as caught:
        pycharm.write_project(spec, up_result())

    assert caught.value.message == (
        f"{spec.source}: run.train.workdir {workdir!r} is not in a folder mounted in the box; use a path relative "
        "to the project folder, or a box path under /workspace, /data or /cache."
    )
    assert not (spec.project / ".idea").exists()


def test_an_idea_file_instead_of_a_folder_is_refused(spec):
    (spec.project / ".idea").write_text("")

    with pytest.raises(DeepboxError, match=r"\.idea is not a folder"):
        pycharm.write_project(spec, up_result())


# Default run configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [(["main.py"], "main"), (["main.py", "train.py"], "train"), (["other.py"], None)],
)
def test_default_run_configuration_without_run_tables(make_project, files, expected):
    project = make_project('name = "demo"\n')
    for name in files:
        (project / name).write_text("print('hi')\n")

    pycharm.write_project(load_spec(project), up_result())

    workspace = project / ".idea" / "workspace.xml"
    if expected is None:
        assert not workspace.exists()
        return
    runs = parse(workspace).findall(".//configuration")
    assert [run.get("name") for run in runs] == [expected]
    assert option(runs[0], "SCRIPT_NAME") == f"$PROJECT_DIR$/{expected}.py"
    assert option(runs[0], "WORKING_DIRECTORY") == "$PROJECT_DIR$"
    assert option(runs[0], "SDK_NAME") == SDK


# The IDE-level interpreter --------------------------------------------------------------------------


@pytest.fixture
def config_dir(home):
    folder = home / ".config" / "JetBrains" / "PyCharm2025.1"
    folder.mkdir(parents=True)
    return folder


def test_register_interpreter_into_a_fresh_settings_folder(spec, config_dir):
    table = pycharm.register_interpreter(spec, up_result(), config_dir)

    assert table == config_dir / "options" / "jdk.table.xml"
    options = config_dir / "options"
    check_golden("ide", {path.name: path.read_bytes() for path in options.iterdir()})


def test_register_interpreter_finds_the_newest_settings_folder(spec, config_dir, home):
    (config_dir.parent / "PyCharm2024.3").mkdir()

    table = pycharm.register_interpreter(spec, up_result())

    assert table == config_dir / "options" / "jdk.table.xml"
    assert not (config_dir.parent / "PyCharm2024.3" / "options").exists()


def test_register_interpreter_without_pycharm_says_what_to_do(spec):
    with pytest.raises(DeepboxError, match=r"No PyCharm settings folder was found .*--ide-config-dir"):
        pycharm.register_interpreter(spec, up_result())


def test_register_interpreter_backs_up_keeps_other_entries_and_is_idempotent(spec, config_dir):
    options = config_dir / "options"
    options.mkdir()
    (options / "jdk.table.xml").write_text(EXISTING_JDK_TABLE)

    pycharm.register_interpreter(spec, up_result(), config_dir)

    backups = sorted(options.glob("jdk.table.xml.deepbox-backup-*"))
    assert len(backups) == 1
    assert backups[0].read_text() == EXISTING_JDK_TABLE
    jdks = parse(options / "jdk.table.xml").findall(".//jdk")
    assert [jdk.find("name").get("value") for jdk in jdks] == ["Python 3.11 (myproj)", SDK]
    assert jdks[0].find("additional").get("SDK_UUID") == "5eb19f9d-4972-44f8-952c-826af29facb9"
    assert jdks[0].find("additional/setting").get("value") == "VirtualEnvSdkFlavor"
    # New files need no backup: there was nothing to lose.
    assert not list(options.glob("webServers.xml.deepbox-backup*"))
    before = snapshot(options)

    assert pycharm.register_interpreter(spec, up_result(), config_dir) == options / "jdk.table.xml"

    assert snapshot(options) == before, "no second backup, no rewrite"


def test_register_interpreter_updates_the_entry_in_place(spec, config_dir):
    pycharm.register_interpreter(spec, up_result(), config_dir)

    pycharm.register_interpreter(spec, up_result(port=2400, python_version="3.12.1"), config_dir)

    options = config_dir / "options"
    jdks = parse(options / "jdk.table.xml").findall(".//jdk")
    assert len(jdks) == 1
    assert jdks[0].find("name").get("value") == SDK, "the name survives a new Python version"
    assert jdks[0].find("version").get("value") == "Python 3.12.1"
    assert jdks[0].find("homePath").get("value") == "sftp://alice@127.0.0.1:2400/opt/venv/bin/python"
    assert jdks[0].find("additional").get("WEB_SERVER_CREDENTIALS_ID") == "sftp://alice@127.0.0.1:2400"
    assert [c.get("port") for c in parse(options / "sshConfigs.xml").iter("sshConfig")] == ["2400"]
    assert [t.get("port") for t in parse(options / "webServers.xml").iter("fileTransfer")] == ["2400"]
    assert len(list(options.glob("*.deepbox-backup-*"))) == 3


def test_register_interpreter_refuses_while_pycharm_holds_its_lock(spec, config_dir):
    (config_dir / ".lock").write_text(str(os.getpid()))

    with pytest.raises(DeepboxError, match=r"PyCharm must be closed .*\.lock names process"):
        pycharm.register_interpreter(spec, up_result(), config_dir)

    assert not (config_dir / "options").exists()


def test_a_stale_lock_does_not_block(spec, config_dir):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (config_dir / ".lock").write_text(str(dead.pid))

    pycharm.register_interpreter(spec, up_result(), config_dir)

    assert (config_dir / "options" / "jdk.table.xml").is_file()


@pytest.mark.skipif(os.name != "posix", reason="POSIX record locks")
def test_register_interpreter_refuses_while_an_older_pycharm_locks_port_lock(spec, config_dir):
    lock = config_dir / "port.lock"
    lock.write_text("")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'r+'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DeepboxError, match=r"port\.lock is locked by a running process"):
            pycharm.register_interpreter(spec, up_result(), config_dir)
    finally:
        holder.kill()
        holder.wait()

    # The same file left behind by an IDE that has quit blocks nothing.
    pycharm.register_interpreter(spec, up_result(), config_dir)
    assert (config_dir / "options" / "jdk.table.xml").is_file()


def fake_process(proc: Path, pid: int, *args: str) -> None:
    folder = proc / str(pid)
    folder.mkdir()
    (folder / "cmdline").write_bytes(b"".join(arg.encode() + b"\0" for arg in args))


def test_register_interpreter_refuses_while_a_pycharm_process_runs(spec, config_dir, no_processes):
    fake_process(no_processes, 4100, sys.executable, "-m", "pytest", "tests/unit/test_ide_pycharm.py")
    fake_process(no_processes, 4101, "/usr/bin/vim", "pycharm.py")
    pycharm.register_interpreter(spec, up_result(), config_dir)  # neither is PyCharm

    fake_process(no_processes, 4242, "/opt/pycharm-2025.1/bin/pycharm", "/home/alice/proj")
    with pytest.raises(DeepboxError, match=r"PyCharm is running \(process 4242\)"):
        pycharm.register_interpreter(spec, up_result(port=2500), config_dir)


@pytest.mark.parametrize(
    "args",
    [
        ["/opt/pycharm/bin/pycharm.sh"],
        ["/opt/pycharm/jbr/bin/java", "-Xmx2g", "-Didea.paths.selector=PyCharm2022.3", "com.intellij.idea.Main"],
        ["/snap/pycharm-community/1/jbr/bin/java", "-Didea.platform.prefix=PyCharmCore", "com.intellij.idea.Main"],
        ["C:\\Program Files\\JetBrains\\PyCharm 2024.3\\bin\\pycharm64.exe"],
    ],
)
def test_pycharm_processes_are_recognised(args):
    assert pycharm._is_pycharm(args)


def test_other_processes_are_not_pycharm():
    assert not pycharm._is_pycharm(["/usr/bin/python3", "/opt/pycharm/plugins/python/helpers/pydev/pydevd.py"])
    assert not pycharm._is_pycharm(["/opt/idea/bin/idea", "-Didea.paths.selector=IntelliJIdea2025.1"])
    assert not pycharm._is_pycharm([])


# Finding the settings folder ----------------------------------------------------------------------


def make_dirs(root: Path, *names: str) -> None:
    for name in names:
        (root / name).mkdir(parents=True)


def test_find_config_dir_picks_the_newest_version_not_the_newest_mtime(tmp_path):
    root = tmp_path / ".config" / "JetBrains"
    make_dirs(root, "PyCharm2024.3", "PyCharm2025.1", "PyCharmCE2023.2", "IntelliJIdea2026.1", "PyCharm2025.1-backup")
    (root / "PyCharm2026.1").write_text("a file, not a folder")
    old = time.time() - 3600
    os.utime(root / "PyCharm2025.1", (old, old))

    assert pycharm.find_config_dir(home=tmp_path, system="Linux") == root / "PyCharm2025.1"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["PyCharm2025.9", "PyCharm2025.10"], "PyCharm2025.10"),
        (["PyCharm2024.3", "PyCharmCE2024.3"], "PyCharm2024.3"),
        (["PyCharm2024.3", "PyCharmCE2025.2"], "PyCharmCE2025.2"),
        (["PyCharmCE2023.2"], "PyCharmCE2023.2"),
    ],
)
def test_find_config_dir_compares_versions_as_numbers(tmp_path, names, expected):
    root = tmp_path / ".config" / "JetBrains"
    make_dirs(root, *names)

    assert pycharm.find_config_dir(home=tmp_path, system="Linux") == root / expected


@pytest.mark.parametrize(
    ("system", "where"),
    [("Darwin", "Library/Application Support/JetBrains"), ("Windows", "AppData/Roaming/JetBrains")],
)
def test_find_config_dir_on_macos_and_windows(tmp_path, system, where):
    make_dirs(tmp_path / where, "PyCharm2024.3", "PyCharm2025.1")

    assert pycharm.find_config_dir(home=tmp_path, system=system) == tmp_path / where / "PyCharm2025.1"


def test_find_config_dir_without_any_pycharm(tmp_path):
    assert pycharm.find_config_dir(home=tmp_path, system="Linux") is None
    make_dirs(tmp_path / ".config" / "JetBrains", "IntelliJIdea2025.1")
    assert pycharm.find_config_dir(home=tmp_path, system="Linux") is None


def test_find_config_dir_follows_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    make_dirs(tmp_path / "xdg" / "JetBrains", "PyCharm2025.1")

    assert pycharm.find_config_dir(system="Linux") == tmp_path / "xdg" / "JetBrains" / "PyCharm2025.1"


# The clicks that remain ---------------------------------------------------------------------------


def test_remaining_clicks_name_exactly_what_to_pick(spec):
    text = pycharm.remaining_clicks(spec, up_result(port=2345))

    lines = text.splitlines()
    numbered = [line for line in lines if line[:1].isdigit()]
    assert [line.split(".", 1)[0] for line in numbered] == [str(n) for n in range(1, len(numbered) + 1)]
    assert len(numbered) >= 4
    assert "Add Interpreter > On SSH" in text
    assert "Existing SSH configuration': deepbox-demo (alice@127.0.0.1:2345" in text
    assert "deepbox has no pinned host key for deepbox-demo on this machine: run `deepbox up` first" in text
    assert "System Interpreter" in text
    assert "/opt/venv/bin/python" in text
    assert "-> /workspace" in text
    assert "Automatically upload project files" in text
    assert f"'{SDK}'" in text
    assert "--register-interpreter" in text


def test_remaining_clicks_give_the_pinned_host_keys_fingerprint(spec):
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    ssh.pin_host_key("deepbox-demo", key)
    text = pycharm.remaining_clicks(spec, up_result())
    sentence = f"PyCharm asks you to accept the host key: accept it only if its fingerprint is {ssh.fingerprint(key)}."
    assert sentence in text
    assert pycharm.host_key_check(up_result()) == sentence


def test_remaining_clicks_for_a_box_on_a_server_name_the_alias(spec):
    text = pycharm.remaining_clicks(spec, up_result(ide_host="deepbox-demo", jump="alice@gpu"))
    assert "Existing SSH configuration': deepbox-demo (alice@deepbox-demo:2222, key pair)" in text
