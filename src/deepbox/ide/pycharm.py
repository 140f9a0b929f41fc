"""PyCharm (Professional): the project's `.idea` files and the IDE-level interpreter entry for a box.

`write_project` merges into `.idea/` what PyCharm needs to run the project in the box: an SSH
configuration (key pair), an SFTP web server that uses it, a deployment mapping project folder ->
workspace (no automatic upload: the folder is bind-mounted), path mappings for the interpreter, the
interpreter's name in misc.xml and the module, and Run/Debug configurations from `[run.*]`.

PyCharm keeps the interpreter itself per user and per IDE version (`options/jdk.table.xml`), so
`register_interpreter` adds it there (PyCharm must be closed), or `remaining_clicks` says what to
pick in PyCharm's own dialog instead.

Every id is derived from the box name, so a re-run, or a box that comes back on another port, updates
the same entries instead of adding new ones. Files are parsed with ElementTree; every component,
element and attribute deepbox does not own is kept, and a file whose content would not change is not
rewritten. The id chain PyCharm follows:

    run configuration SDK_NAME = misc.xml project-jdk-name = module jdkName = jdk.table <name>
    jdk WEB_SERVER_CONFIG_ID -> <webServer id> ; webServer sshConfigId -> <sshConfig id>
    remote-mappings server-id = "python@" + jdk homePath
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deepbox import ssh
from deepbox.config import RunConfig, Spec, box_folder, project_relative
from deepbox.errors import DeepboxError
from deepbox.fsutil import atomic_write
from deepbox.model import UpResult

SDK_TYPE = "Python SDK"
HELPERS_FOLDER = ".pycharm_helpers"
DEFAULT_SCRIPTS = ("train.py", "main.py")
RUN_TYPE = "PythonConfigurationType"
BACKUP_SUFFIX = ".deepbox-backup"
# A fixed namespace: ids derived from it are the same on every machine and every run.
_ID_NAMESPACE = uuid.UUID("5a0f4f2e-7d1b-5c0e-9b52-6465657062f1")
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
_CONFIG_DIR_NAME = re.compile(r"^(PyCharm|PyCharmCE)(\d+(?:\.\d+)*)$")
# Where the process check looks (a parameter for the tests).
PROC = Path("/proc")


# Names and ids ---------------------------------------------------------------------------------


def interpreter_name(box: str) -> str:
    """The interpreter's name: stable across rebuilds (the Python version may change, the name not)."""
    return f"Remote Python (deepbox-{box})"


def server_name(result: UpResult) -> str:
    """The name of the SSH configuration and of the SFTP web server: the box's ssh alias."""
    return result.alias


def ssh_config_id(box: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{box}/ssh-config"))


def web_server_id(box: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{box}/web-server"))


def _credentials(user: str, host: str, port: int | str) -> str:
    return f"sftp://{user}@{host}:{port}"


def home_path(result: UpResult) -> str:
    """The interpreter's homePath, as PyCharm writes it for an interpreter reached via a web server."""
    return _credentials(result.user, result.host, result.port) + result.python


def helpers_path(result: UpResult) -> str:
    """Where PyCharm uploads its helpers: a folder in the box user's (writable) home."""
    home = "/root" if result.user == "root" else f"/home/{result.user}"
    return f"{home}/{HELPERS_FOLDER}"


def _mappings_server_id(user: str, host: str, port: int | str, python: str) -> str:
    return f"python@{_credentials(user, host, port)}{python}"


# XML documents ---------------------------------------------------------------------------------


@dataclass
class _Doc:
    """One XML file: parsed, changed in memory, written only when its content changed."""

    path: Path
    root: ET.Element
    declaration: bool
    newline: bool  # whether the file ends with a newline (PyCharm writes none)
    before: bytes | None  # the content as this module renders it, before any change; None for a new file

    def render(self) -> bytes:
        for element in self.root.iter():
            # An element whose children were all removed renders as <tag /> again.
            if isinstance(element.tag, str) and not len(element) and element.text and not element.text.strip():
                element.text = None
        ET.indent(self.root, space="  ")
        body = ET.tostring(self.root, encoding="unicode")
        return ((_DECLARATION if self.declaration else "") + body + ("\n" if self.newline else "")).encode()

    @property
    def changed(self) -> bool:
        return self.before is None or self.render() != self.before


_NEW_ROOTS = {"project": {"version": "4"}, "module": {"type": "PYTHON_MODULE", "version": "4"}, "application": {}}


def _load(path: Path, root_tag: str, *, declaration: bool = True) -> _Doc:
    """Parse an existing file (it must be well-formed and have the expected root) or start a new one."""
    if not path.exists():
        root = ET.Element(root_tag, dict(_NEW_ROOTS[root_tag]))
        return _Doc(path, root, declaration, newline=False, before=None)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DeepboxError(f"Cannot read {path} ({exc.strerror}); check its permissions.") from exc
    # The user's own settings files; expat resolves no external entities and caps entity expansion.
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))  # noqa: S314
    try:
        root = ET.fromstring(raw, parser=parser)  # noqa: S314
    except ET.ParseError as exc:
        raise DeepboxError(
            f"{path} is not well-formed XML ({exc}); fix or remove that file and run the command again."
        ) from exc
    if root.tag != root_tag:
        raise DeepboxError(
            f"{path} is not a PyCharm settings file (its root element is <{root.tag}>, not <{root_tag}>); "
            "fix or remove that file and run the command again."
        )
    text = raw.removeprefix(b"\xef\xbb\xbf").lstrip()
    doc = _Doc(path, root, text.startswith(b"<?xml"), raw.endswith(b"\n"), before=None)
    doc.before = doc.render()
    return doc


def _children(parent: ET.Element, tag: str, **attrs: str) -> Iterator[ET.Element]:
    for child in parent:
        if child.tag == tag and all(child.get(key) == value for key, value in attrs.items()):
            yield child


def _child(parent: ET.Element, tag: str, attrs: dict[str, str] | None = None, **match: str) -> ET.Element:
    """The first child with this tag and these attribute values; appended (with `attrs`) when absent."""
    found = next(_children(parent, tag, **match), None)
    if found is None:
        found = ET.SubElement(parent, tag, {**match, **(attrs or {})})
    return found


def _component(root: ET.Element, name: str, attrs: dict[str, str] | None = None) -> ET.Element:
    """A `<component name=...>`; a new one goes where PyCharm would put it (components sorted by name)."""
    found = next(_children(root, "component", name=name), None)
    if found is not None:
        return found
    element = ET.Element("component", {"name": name, **(attrs or {})})
    names = [(index, child.get("name", "")) for index, child in enumerate(root) if child.tag == "component"]
    after = [index for index, other in names if other > name]
    root.insert(after[0] if after else len(root), element)
    return element


def _upsert(parent: ET.Element, tag: str, match: dict[str, str], attrs: dict[str, str]) -> ET.Element:
    """Update the child matching `match` in place, or append one with `attrs` in the order given."""
    found = next(_children(parent, tag, **match), None)
    if found is None:
        return ET.SubElement(parent, tag, {**match, **attrs} if not set(match) <= set(attrs) else attrs)
    _set(found, **attrs)
    return found


def _set(element: ET.Element, **attrs: str) -> None:
    """Set attributes in place: existing ones keep their position, new ones are appended."""
    for key, value in attrs.items():
        element.set(key, value)


def _option(parent: ET.Element, name: str, value: str, before: str | None = None) -> None:
    """Set `<option name=... value=...>`; a new one goes before the first `before` child when given."""
    found = next(_children(parent, "option", name=name), None)
    if found is not None:
        found.set("value", value)
        return
    element = ET.Element("option", {"name": name, "value": value})
    position = next((index for index, child in enumerate(parent) if child.tag == before), len(parent))
    parent.insert(position, element)


def _macro_path(path: str | Path, project: Path | None) -> str:
    """A local path the way PyCharm stores it: under $PROJECT_DIR$ or $USER_HOME$ when it can be."""
    target = Path(path)
    bases = [(project, "$PROJECT_DIR$"), (Path.home(), "$USER_HOME$")]
    for base, macro in bases:
        if base is None:
            continue
        for root, candidate in ((base, target), (base.resolve(), target.resolve())):
            try:
                relative = candidate.relative_to(root)
            except ValueError:
                continue
            return macro if str(relative) == "." else f"{macro}/{relative.as_posix()}"
    return target.as_posix()


def _expand(path: str, project: Path) -> Path:
    return Path(path.replace("$PROJECT_DIR$", str(project)).replace("$USER_HOME$", str(Path.home())))


def _write(doc: _Doc, owner_of: Path) -> None:
    if not doc.path.parent.exists():
        doc.path.parent.mkdir(parents=True)
        _match_owner(doc.path.parent, owner_of)
    atomic_write(doc.path, doc.render())
    _match_owner(doc.path, owner_of)


def _match_owner(path: Path, reference: Path) -> None:
    """Run as root, give what we create to the owner of the folder it belongs to (as PyCharm runs as them)."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    owner = reference.stat()
    if owner.st_uid != 0:
        os.chown(path, owner.st_uid, owner.st_gid)


# The shared pieces: SSH configuration and SFTP web server (project and IDE level) ----------------


def _ssh_config(root: ET.Element, result: UpResult, project: Path | None) -> None:
    configs = _child(_component(root, "SshConfigs"), "configs")
    # Key pair authentication (no authType attribute), with the key the box trusts.
    ours = _upsert(
        configs,
        "sshConfig",
        {"id": ssh_config_id(result.box)},
        {
            "host": result.host,
            "id": ssh_config_id(result.box),
            "keyPath": _macro_path(result.key, project),
            "port": str(result.port),
            "customName": server_name(result),
            "nameFormat": "CUSTOM",
            "username": result.user,
            "useOpenSSHConfig": "true",
        },
    )
    _option(ours, "customName", server_name(result))


def _web_server(root: ET.Element, result: UpResult) -> None:
    servers = _child(_component(root, "WebServers"), "option", name="servers")
    ours = _upsert(
        servers,
        "webServer",
        {"id": web_server_id(result.box)},
        {"id": web_server_id(result.box), "name": server_name(result)},
    )
    transfer = _upsert(
        ours,
        "fileTransfer",
        {},
        {
            "rootFolder": "/",
            "accessType": "SFTP",
            "host": result.host,
            "port": str(result.port),
            "sshConfigId": ssh_config_id(result.box),
            "sshConfig": server_name(result),
            "keyPair": "true",
        },
    )
    outer = _child(transfer, "advancedOptions")
    inner = next(_children(outer, "advancedOptions"), None)
    if inner is None:
        ET.SubElement(
            outer,
            "advancedOptions",
            {"dataProtectionLevel": "Private", "passiveMode": "true", "shareSSLContext": "true"},
        )


def _previous_endpoint(root: ET.Element, box: str) -> tuple[str, str, str] | None:
    """(user, host, port) of our SSH configuration as it was before this run, to find entries keyed by it."""
    for component in _children(root, "component", name="SshConfigs"):
        for configs in _children(component, "configs"):
            for config in _children(configs, "sshConfig", id=ssh_config_id(box)):
                return config.get("username", ""), config.get("host", ""), config.get("port", "")
    return None


# Project files -----------------------------------------------------------------------------------


def _deployment(root: ET.Element, spec: Spec, result: UpResult) -> None:
    name = server_name(result)
    publish = _component(root, "PublishConfigData", {"serverName": name})
    if publish.get("serverName") in (None, name):
        publish.set("serverName", name)
        for option in list(_children(publish, "option", name="myAutoUpload")):
            publish.remove(option)
        if spec.synced_copy:
            # A box on a server mounts the server's copy: saved files go up as PyCharm saves them.
            publish.set("autoUpload", "Always")
        else:
            # The folder is bind-mounted: uploading to the default server would copy files onto themselves.
            publish.attrib.pop("autoUpload", None)
    paths = _child(_child(publish, "serverData"), "paths", name=name)
    mappings = _child(_child(paths, "serverdata"), "mappings")
    existing = next(_children(mappings, "mapping", local="$PROJECT_DIR$"), None)
    web = "/" if existing is None else existing.get("web", "/")
    _upsert(
        mappings,
        "mapping",
        {"local": "$PROJECT_DIR$"},
        {"deploy": spec.workspace, "local": "$PROJECT_DIR$", "web": web},
    )


def _remote_mappings(root: ET.Element, spec: Spec, result: UpResult, previous: tuple[str, str, str] | None) -> None:
    outer = _child(_child(_component(root, "RemoteMappingsManager"), "list"), "list")
    server_id = _mappings_server_id(result.user, result.host, result.port, result.python)
    old_id = _mappings_server_id(*previous, result.python) if previous else server_id
    ours = next(_children(outer, "remote-mappings", **{"server-id": server_id}), None)
    if ours is None:
        ours = _child(outer, "remote-mappings", **{"server-id": old_id})
        ours.set("server-id", server_id)
    entries = _child(_child(ours, "settings"), "list")
    # A box on a server mounts server folders; of those, only the project's copy exists here too.
    pairs = [(spec.project, spec.workspace)] if spec.synced_copy else [(m.host, m.box) for m in spec.mounts]
    for host_path, box_path in pairs:
        local = _macro_path(host_path, spec.project)
        mapping = _child(entries, "mapping", **{"local-root": local})
        mapping.set("remote-root", box_path)


def _misc(root: ET.Element, name: str) -> None:
    manager = _component(root, "ProjectRootManager", {"version": "2"})
    _set(manager, **{"project-jdk-name": name, "project-jdk-type": SDK_TYPE})


def _module_file(modules: _Doc, project: Path) -> tuple[Path, str]:
    """The module's .iml (the project's first module, or a new one named after the folder) and its name."""
    listed = _child(_component(modules.root, "ProjectModuleManager"), "modules")
    for module in _children(listed, "module"):
        filepath = module.get("filepath")
        if filepath:
            path = _expand(filepath, project)
            return path, path.name.removesuffix(".iml")
    name = project.name
    relative = f"$PROJECT_DIR$/.idea/{name}.iml"
    ET.SubElement(listed, "module", {"fileurl": f"file://{relative}", "filepath": relative})
    return project / ".idea" / f"{name}.iml", name


def _module_sdk(root: ET.Element, name: str) -> None:
    manager = _component(root, "NewModuleRootManager")
    entry = next(_children(manager, "orderEntry", type="jdk"), None)
    entry = entry if entry is not None else next(_children(manager, "orderEntry", type="inheritedJdk"), None)
    if entry is None:
        if next(_children(manager, "content"), None) is None and not any(c.tag == "orderEntry" for c in manager):
            ET.SubElement(manager, "content", {"url": "file://$MODULE_DIR$"})
        position = next((index for index, child in enumerate(manager) if child.tag == "orderEntry"), len(manager))
        entry = ET.Element("orderEntry", {"type": "jdk"})
        manager.insert(position, entry)
        if not any(child.tag == "orderEntry" and child.get("type") == "sourceFolder" for child in manager):
            manager.insert(position + 1, ET.Element("orderEntry", {"type": "sourceFolder", "forTests": "false"}))
    _set(entry, type="jdk", jdkName=name, jdkType=SDK_TYPE)


def _project_path(value: str, what: str, spec: Spec) -> str:
    """A project-relative path from deepbox.toml as PyCharm stores it ($PROJECT_DIR$/...); refuses escapes."""
    normal = project_relative(value, what, spec.source)
    return "$PROJECT_DIR$" if normal == "." else f"$PROJECT_DIR$/{normal}"


def _working_directory(run: RunConfig, spec: Spec) -> str:
    """The run's working folder as PyCharm stores it: in the project folder through $PROJECT_DIR$ (the
    path mappings take it to the workspace), under another mount as the box path itself, which PyCharm
    passes on unmapped."""
    folder = box_folder(run.workdir, f"run.{run.name}.workdir", spec)
    if folder.in_project is None:
        return folder.box
    return "$PROJECT_DIR$" if folder.in_project == "." else f"$PROJECT_DIR$/{folder.in_project}"


def run_configurations(spec: Spec) -> tuple[RunConfig, ...]:
    """The `[run.*]` configurations, or one for train.py / main.py when there are none."""
    if spec.run:
        return spec.run
    for script in DEFAULT_SCRIPTS:
        if (spec.project / script).is_file():
            return (RunConfig(script.removesuffix(".py"), script, "", (), "."),)
    return ()


def _run_configuration(run: RunConfig, spec: Spec, module: str, sdk: str) -> ET.Element:
    """A new configuration with PyCharm's own option order; _update_run fills in the values."""
    element = ET.Element("configuration", {"name": run.name, "type": RUN_TYPE, "factoryName": "Python"})
    ET.SubElement(element, "module", {"name": module})
    for name, value in (("INTERPRETER_OPTIONS", ""), ("PARENT_ENVS", "true")):
        ET.SubElement(element, "option", {"name": name, "value": value})
    envs = ET.SubElement(element, "envs")
    ET.SubElement(envs, "env", {"name": "PYTHONUNBUFFERED", "value": "1"})
    for name, value in (
        ("SDK_HOME", ""),
        ("SDK_NAME", sdk),
        ("WORKING_DIRECTORY", ""),
        ("IS_MODULE_SDK", "false"),
        ("ADD_CONTENT_ROOTS", "true"),
        ("ADD_SOURCE_ROOTS", "true"),
        ("SCRIPT_NAME", ""),
        ("PARAMETERS", ""),
        ("SHOW_COMMAND_LINE", "false"),
        ("EMULATE_TERMINAL", "false"),
        ("MODULE_MODE", "false"),
        ("REDIRECT_INPUT", "false"),
        ("INPUT_FILE", ""),
    ):
        ET.SubElement(element, "option", {"name": name, "value": value})
    ET.SubElement(element, "method", {"v": "2"})
    return element


def _update_run(element: ET.Element, run: RunConfig, spec: Spec, module: str, sdk: str) -> None:
    """Set the values deepbox owns; every other option, env and extension stays as the user left it."""
    element.attrib.pop("temporary", None)
    module_element = next(_children(element, "module"), None)
    if module_element is None:
        element.insert(0, ET.Element("module", {"name": module}))
    else:
        module_element.set("name", module)
    for name, value in (
        ("SDK_HOME", ""),
        ("SDK_NAME", sdk),
        ("WORKING_DIRECTORY", _working_directory(run, spec)),
        ("IS_MODULE_SDK", "false"),
        ("SCRIPT_NAME", _project_path(run.script, f"run.{run.name}.script", spec)),
        ("PARAMETERS", run.args),
        ("MODULE_MODE", "false"),
    ):
        _option(element, name, value, before="method")
    if run.env:
        envs = next(_children(element, "envs"), None)
        if envs is None:
            envs = ET.Element("envs")
            position = next((i for i, child in enumerate(element) if child.get("name") == "SDK_HOME"), len(element))
            element.insert(position, envs)
        for name, value in run.env:
            _child(envs, "env", name=name).set("value", value)


def _workspace(root: ET.Element, runs: tuple[RunConfig, ...], spec: Spec, module: str, sdk: str) -> None:
    if not runs:
        return
    first = f"Python.{runs[0].name}"
    manager = _component(root, "RunManager", {"selected": first})
    for run in runs:
        element = next(_children(manager, "configuration", type=RUN_TYPE, name=run.name), None)
        if element is None:
            element = _run_configuration(run, spec, module, sdk)
            position = next((i for i, child in enumerate(manager) if child.tag != "configuration"), len(manager))
            manager.insert(position, element)
        _update_run(element, run, spec, module, sdk)
    items = _child(manager, "list")
    for run in runs:
        _child(items, "item", itemvalue=f"Python.{run.name}")
    # A temporary configuration deepbox now owns is kept for good: PyCharm must not recycle it.
    for recent in list(_children(manager, "recent_temporary")):
        for listed in _children(recent, "list"):
            for run in runs:
                for item in list(_children(listed, "item", itemvalue=f"Python.{run.name}")):
                    listed.remove(item)
        if not any(len(listed) for listed in recent):
            manager.remove(recent)


def _reachable(result: UpResult) -> UpResult:
    """A box on a server listens on the server's loopback: PyCharm reaches it by the alias (the site's
    ide_host), whose ssh config entry (read with useOpenSSHConfig) holds the ProxyJump through the server."""
    return dataclasses.replace(result, host=result.ide_host or result.host)


def write_project(spec: Spec, result: UpResult) -> list[Path]:
    """Write or merge the project's .idea files for the box; returns the files whose content changed."""
    result = _reachable(result)
    idea = spec.project / ".idea"
    if idea.exists() and not idea.is_dir():
        raise DeepboxError(f"{idea} is not a folder; move that file away so PyCharm's project folder can be written.")
    sdk = interpreter_name(result.box)
    runs = run_configurations(spec)
    # Read and check every file first: a malformed one stops the run before anything is written.
    ssh_configs = _load(idea / "sshConfigs.xml", "project")
    web_servers = _load(idea / "webServers.xml", "project")
    deployment = _load(idea / "deployment.xml", "project")
    mappings = _load(idea / "remote-mappings.xml", "project")
    misc = _load(idea / "misc.xml", "project")
    modules = _load(idea / "modules.xml", "project")
    module_path, module = _module_file(modules, spec.project)
    iml = _load(module_path, "module")
    workspace = _load(idea / "workspace.xml", "project")

    previous = _previous_endpoint(ssh_configs.root, result.box)
    _ssh_config(ssh_configs.root, result, spec.project)
    _web_server(web_servers.root, result)
    _deployment(deployment.root, spec, result)
    _remote_mappings(mappings.root, spec, result, previous)
    _misc(misc.root, sdk)
    _module_sdk(iml.root, sdk)
    _workspace(workspace.root, runs, spec, module, sdk)

    docs = [ssh_configs, web_servers, deployment, mappings, misc, modules, iml]
    if runs:
        docs.append(workspace)
    changed = [doc for doc in docs if doc.changed]
    for doc in changed:
        _write(doc, spec.project)
    return [doc.path for doc in changed]


# The IDE-level interpreter ------------------------------------------------------------------------


def config_root(home: Path | None = None, system: str | None = None) -> Path:
    """The folder that holds JetBrains IDEs' per-version settings folders on this platform."""
    system = system or platform.system()
    explicit = home is not None
    home = home if home is not None else Path.home()
    if system == "Darwin":
        return home / "Library" / "Application Support" / "JetBrains"
    if system == "Windows":
        appdata = None if explicit else os.environ.get("APPDATA")
        return (Path(appdata) if appdata else home / "AppData" / "Roaming") / "JetBrains"
    xdg = None if explicit else os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else home / ".config") / "JetBrains"


def find_config_dir(home: Path | None = None, system: str | None = None) -> Path | None:
    """The newest PyCharm settings folder (by the version in its name; Professional before Community)."""
    root = config_root(home, system)
    try:
        entries = list(root.iterdir())
    except OSError:
        return None
    found: list[tuple[tuple[int, ...], int, Path]] = []
    for entry in entries:
        match = _CONFIG_DIR_NAME.match(entry.name)
        if match and entry.is_dir():
            version = tuple(int(part) for part in match.group(2).split("."))
            found.append((version, int(match.group(1) == "PyCharm"), entry))
    return max(found)[2] if found else None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name != "posix":
        return True  # no safe probe here: treat the IDE as running
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _locked(path: Path) -> bool:
    """Whether another process holds a lock on the file (IDEs before 2023.1 lock `port.lock`)."""
    if os.name != "posix":
        return True
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may just have taken
    return False


def _pycharm_processes() -> list[int]:
    """PyCharm processes of this user, from /proc (Linux); [] where there is no /proc."""
    found = []
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return []
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if uid is not None and entry.stat().st_uid != uid:
                continue
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if _is_pycharm([arg.decode(errors="replace") for arg in args if arg]):
            found.append(int(entry.name))
    return found


def _is_pycharm(args: list[str]) -> bool:
    if not args:
        return False
    program = args[0].replace("\\", "/").rsplit("/", 1)[-1].lower()
    if program in ("pycharm", "pycharm.sh", "pycharm64", "pycharm.exe", "pycharm64.exe"):
        return True
    markers = ("-Didea.paths.selector=PyCharm", "-Didea.platform.prefix=Python", "-Didea.platform.prefix=PyCharm")
    return any(arg.startswith(markers) for arg in args[1:])


def running_reason(config_dir: Path) -> str | None:
    """Why PyCharm looks like it is running (it rewrites its settings on exit), or None."""
    lock = config_dir / ".lock"  # 2023.1+: holds the PID of the IDE using this folder
    if lock.exists():
        try:
            pid = int(lock.read_text().strip())
        except (OSError, ValueError):
            pid = 0  # PyCharm itself treats an unreadable lock as stale
        if _pid_alive(pid):
            return f"{lock} names process {pid}, which is running"
    port_lock = config_dir / "port.lock"  # before 2023.1: locked while the IDE runs
    if port_lock.exists() and _locked(port_lock):
        return f"{port_lock} is locked by a running process"
    processes = _pycharm_processes()
    if processes:
        return f"PyCharm is running (process {', '.join(str(pid) for pid in processes)})"
    return None


def _jdk(root: ET.Element, result: UpResult) -> None:
    table = _component(root, "ProjectJdkTable")
    name = interpreter_name(result.box)
    ours = next((jdk for jdk in _children(table, "jdk") if _value(jdk, "name") == name), None)
    if ours is None:
        ours = ET.SubElement(table, "jdk", {"version": "2"})
        ET.SubElement(ours, "name", {"value": name})
        ET.SubElement(ours, "type", {"value": SDK_TYPE})
        ET.SubElement(ours, "version", {"value": ""})
        ET.SubElement(ours, "homePath", {"value": ""})
        roots = ET.SubElement(ours, "roots")
        for kind in ("classPath", "sourcePath"):
            ET.SubElement(ET.SubElement(roots, kind), "root", {"type": "composite"})
        ET.SubElement(ours, "additional")
    _child(ours, "type").set("value", SDK_TYPE)
    if result.python_version:
        _child(ours, "version").set("value", f"Python {result.python_version}")
    _child(ours, "homePath").set("value", home_path(result))
    _set(
        _child(ours, "additional"),
        INTERPRETER_PATH=result.python,
        HELPERS_PATH=helpers_path(result),
        INITIALIZED="false",
        VALID="true",
        RUN_AS_ROOT_VIA_SUDO="false",
        SKELETONS_PATH="",
        VERSION="",
        WEB_SERVER_CONFIG_ID=web_server_id(result.box),
        WEB_SERVER_CONFIG_NAME=server_name(result),
        WEB_SERVER_CREDENTIALS_ID=_credentials(result.user, result.host, result.port),
    )


def _value(element: ET.Element, tag: str) -> str | None:
    child = next(_children(element, tag), None)
    return None if child is None else child.get("value")


def _backup(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}{BACKUP_SUFFIX}-{stamp}")
    counter = 1
    while backup.exists():
        counter += 1
        backup = path.with_name(f"{path.name}{BACKUP_SUFFIX}-{stamp}-{counter}")
    shutil.copy2(path, backup)
    return backup


def register_interpreter(spec: Spec, result: UpResult, config_dir: Path | None = None) -> Path:
    """Add the box's interpreter (and the web server and SSH configuration it uses) to PyCharm's settings.

    Returns the jdk.table.xml path. Each changed file is first copied to `<file>.deepbox-backup-<time>`.
    """
    result = _reachable(result)
    if config_dir is None:
        config_dir = find_config_dir()
        if config_dir is None:
            raise DeepboxError(
                f"No PyCharm settings folder was found in {config_root()}; start PyCharm once, "
                "or name the folder with --ide-config-dir."
            )
    elif not config_dir.is_dir():
        raise DeepboxError(
            f"{config_dir} is not a folder; pass PyCharm's settings folder, such as {config_root() / 'PyCharm2025.1'}."
        )
    reason = running_reason(config_dir)
    if reason:
        raise DeepboxError(
            f"PyCharm must be closed to register the interpreter ({reason}); quit PyCharm and run this again "
            "(or, if PyCharm is not running, delete that lock file)."
        )
    options = config_dir / "options"
    table = _load(options / "jdk.table.xml", "application", declaration=False)
    web_servers = _load(options / "webServers.xml", "application", declaration=False)
    ssh_configs = _load(options / "sshConfigs.xml", "application", declaration=False)
    _jdk(table.root, result)
    _web_server(web_servers.root, result)
    _ssh_config(ssh_configs.root, result, None)
    for doc in (ssh_configs, web_servers, table):
        if doc.changed:
            if doc.path.exists():
                _backup(doc.path)
            _write(doc, config_dir)
    return table.path


# Without registering: what to click ---------------------------------------------------------------


def host_key_check(result: UpResult) -> str:
    """What to compare when PyCharm shows the box's host key (it keeps its own known_hosts)."""
    key = ssh.pinned_host_key(result.alias)
    if key is None:
        return (
            f"deepbox has no pinned host key for {result.alias} on this machine: run `deepbox up` first, then this "
            "command shows the fingerprint PyCharm's host key prompt must match."
        )
    return f"PyCharm asks you to accept the host key: accept it only if its fingerprint is {ssh.fingerprint(key)}."


def remaining_clicks(spec: Spec, result: UpResult) -> str:
    """The few steps left in PyCharm when the interpreter is not registered by deepbox."""
    result = _reachable(result)
    name = interpreter_name(result.box)
    steps: list[str] = [
        f"Open {spec.project} in PyCharm (Professional: SSH interpreters are not in the Community edition).",
        f"Settings > Project: {spec.project.name} > Python Interpreter > Add Interpreter > On SSH...",
        f"Pick 'Existing SSH configuration': {server_name(result)} ({result.user}@{result.host}:{result.port}, "
        f"key pair); Next. {host_key_check(result)}",
        f"Pick 'System Interpreter' (the box's venv), Interpreter: {result.python}.",
        f"Sync folders: <Project root> -> {spec.workspace}; untick 'Automatically upload project files to the "
        "server' (the folder is mounted in the box); Create.",
        f"Show All interpreters, select the new one and rename it (pencil icon) to '{name}': the run "
        "configurations deepbox wrote use that name.",
    ]
    lines = ["Remaining steps in PyCharm (or run `deepbox ide pycharm --register-interpreter` with PyCharm closed):"]
    lines += [f"{number}. {step}" for number, step in enumerate(steps, 1)]
    return "\n".join(lines)
