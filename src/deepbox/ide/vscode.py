"""VS Code: open a box with Remote-SSH, and the workspace files that point VS Code at the box's Python.

Remote-SSH needs nothing but the Host alias deepbox writes (see deepbox.ssh). It opens the folder
*inside the box* (the workspace, which is the bind-mounted project folder), so the project's own
`.vscode/` is what VS Code reads there: `write_settings` puts the box's interpreter into
`.vscode/settings.json`, recommends the extensions in `.vscode/extensions.json` and adds Run/Debug
configurations from `[run.*]` to `.vscode/launch.json`.

Those files are JSON with comments (JSONC: `//` and `/* */` comments, trailing commas). They are
edited in place, the way VS Code's own settings editor does it: the file is parsed with the position
of every value, and only the values deepbox owns are replaced or appended as text. Comments,
formatting, key order, line endings and every other key stay byte for byte; a file whose content
would not change is not rewritten. A file that is not valid JSONC is refused with its line and column,
before anything is written.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from json.decoder import JSONDecodeError, scanstring
from pathlib import Path
from typing import Any
from urllib.parse import quote

from deepbox import hostos, paths
from deepbox.config import RunConfig, Spec, box_folder, project_relative
from deepbox.errors import ConfigError, DeepboxError
from deepbox.fsutil import atomic_write
from deepbox.ide.pycharm import run_configurations
from deepbox.model import UpResult
from deepbox.ssh import include_line

INTERPRETER_SETTING = "python.defaultInterpreterPath"
EXTENSIONS = ("ms-python.python", "ms-vscode-remote.remote-ssh")
LAUNCH_VERSION = "0.2.0"
DEBUG_TYPE = "debugpy"
DEFAULT_INDENT = "    "  # what VS Code writes into a new settings file


# Opening the box ---------------------------------------------------------------------------------


def remote_authority(result: UpResult) -> str:
    return f"ssh-remote+{result.alias}"


def remote_uri(result: UpResult) -> str:
    """The folder's URI as VS Code names it (`code --folder-uri` takes it)."""
    return f"vscode-remote://{remote_authority(result)}{quote(result.workspace, safe='/')}"


def open_command(result: UpResult) -> list[str] | None:
    """`code --remote ssh-remote+<alias> <workspace>`, or None when the `code` command is not on PATH."""
    if shutil.which("code") is None:
        return None
    return ["code", "--remote", remote_authority(result), result.workspace]


def open_url(result: UpResult) -> str:
    """The link that opens the folder in a new VS Code window: vscode://vscode-remote/<authority><path>.

    VS Code's URL handler takes `vscode://vscode-remote/<remote authority><absolute path>`; a path
    without `:line:column` opens as a folder.
    """
    return f"vscode://vscode-remote/{remote_authority(result)}{quote(result.workspace, safe='/')}"


def ssh_config_hint(result: UpResult) -> str:
    """One sentence: which file holds the alias, how Remote-SSH reaches it, and what to do when it reads another."""
    config = paths.user_ssh_config()
    owned = paths.owned_ssh_config()
    account_config = hostos.account_home() / ".ssh" / "config"
    if config != account_config:
        return (
            f"The host {result.alias} is in {owned}, which {config} includes because HOME is {Path.home()}; "
            f"VS Code's Remote-SSH reads {account_config}, so add the line `{include_line()}` to that file, "
            f"or set remote.SSH.configFile to {config} in VS Code's user settings."
        )
    return (
        f"VS Code's Remote-SSH finds the host {result.alias} in {owned}, through the Include deepbox added at the "
        f"top of {config}; if remote.SSH.configFile points VS Code at another file, add the line "
        f"`{include_line()}` to that file."
    )


# JSON with comments: a parser that keeps the position of every value ------------------------------


class JsoncError(ValueError):
    """Text that is not JSON with comments; `pos` is the offset of the problem."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


@dataclass
class _Node:
    kind: str  # object | array | scalar
    start: int
    end: int
    value: Any = None
    keys: list[tuple[str, int]] = field(default_factory=list)  # objects: (name, offset of the name)
    children: list[_Node] = field(default_factory=list)  # member values or array items

    def member(self, key: str) -> int:
        """Index of the member named key (the last one, as VS Code reads duplicates), or -1."""
        for index in range(len(self.keys) - 1, -1, -1):
            if self.keys[index][0] == key:
                return index
        return -1


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = (("true", True), ("false", False), ("null", None))
_LINE_COMMENT = re.compile(r"[ \t]*//[^\r\n]*")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def skip(self, pos: int) -> int:
        """The offset of the next token: whitespace, a byte-order mark and comments skipped."""
        text, size = self.text, len(self.text)
        while pos < size:
            if text[pos] in " \t\r\n\ufeff":
                pos += 1
            elif text.startswith("//", pos):
                end = text.find("\n", pos)
                pos = size if end < 0 else end
            elif text.startswith("/*", pos):
                end = text.find("*/", pos + 2)
                if end < 0:
                    raise JsoncError("a /* comment is never closed", pos)
                pos = end + 2
            else:
                break
        return pos

    def document(self) -> _Node | None:
        """The top-level value, or None for a file of only whitespace and comments."""
        pos = self.skip(0)
        if pos == len(self.text):
            return None
        try:
            node = self.value(pos)
        except RecursionError:
            raise JsoncError("the values are nested too deeply", pos) from None
        end = self.skip(node.end)
        if end != len(self.text):
            raise JsoncError("unexpected text after the end of the JSON value", end)
        return node

    def value(self, pos: int) -> _Node:
        text = self.text
        if pos >= len(text):
            raise JsoncError("the file ends where a value was expected", pos)
        if text[pos] == "{":
            return self.object(pos)
        if text[pos] == "[":
            return self.array(pos)
        if text[pos] == '"':
            string, end = self.string(pos)
            return _Node("scalar", pos, end, string)
        number = _NUMBER.match(text, pos)
        if number:
            return _Node("scalar", pos, number.end(), json.loads(number.group()))
        for literal, value in _LITERALS:
            if text.startswith(literal, pos):
                return _Node("scalar", pos, pos + len(literal), value)
        raise JsoncError("expected a value", pos)

    def string(self, pos: int) -> tuple[str, int]:
        try:
            return scanstring(self.text, pos + 1, True)
        except JSONDecodeError as exc:
            raise JsoncError(exc.msg.lower(), exc.pos) from None

    def object(self, start: int) -> _Node:
        text, node = self.text, _Node("object", start, start, {})
        pos = self.skip(start + 1)
        while True:
            if pos >= len(text):
                raise JsoncError("an object is never closed with '}'", start)
            if text[pos] == "}":
                node.end = pos + 1
                return node
            if text[pos] != '"':
                raise JsoncError("expected a property name in double quotes", pos)
            key, after = self.string(pos)
            colon = self.skip(after)
            if text[colon : colon + 1] != ":":
                raise JsoncError("expected ':' after the property name", colon)
            child = self.value(self.skip(colon + 1))
            node.keys.append((key, pos))
            node.children.append(child)
            node.value[key] = child.value
            pos = self.skip(child.end)
            if text[pos : pos + 1] == ",":
                pos = self.skip(pos + 1)
            elif text[pos : pos + 1] != "}":
                raise JsoncError("expected ',' or '}'", pos)

    def array(self, start: int) -> _Node:
        text, node = self.text, _Node("array", start, start, [])
        pos = self.skip(start + 1)
        while True:
            if pos >= len(text):
                raise JsoncError("an array is never closed with ']'", start)
            if text[pos] == "]":
                node.end = pos + 1
                return node
            child = self.value(pos)
            node.children.append(child)
            node.value.append(child.value)
            pos = self.skip(child.end)
            if text[pos : pos + 1] == ",":
                pos = self.skip(pos + 1)
            elif text[pos : pos + 1] != "]":
                raise JsoncError("expected ',' or ']'", pos)


def load_jsonc(text: str) -> Any:
    """The value of a JSON-with-comments text (None when it holds no value); raises JsoncError."""
    node = _Parser(text).document()
    return None if node is None else node.value


def line_column(text: str, pos: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, pos) + 1
    return text.count("\n", 0, pos) + 1, pos - line_start + 1


def _same(a: Any, b: Any) -> bool:
    """JSON equality: key order does not matter, but 1, 1.0 and true are different values."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _line_indent(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    line = text[start:pos]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _indent_unit(text: str) -> str:
    """The file's own indentation step: a tab, or the smallest run of spaces before a JSON line."""
    widths = []
    for line in text.splitlines():
        body = line.lstrip(" \t")
        lead = line[: len(line) - len(body)]
        if not lead or not body.startswith(('"', "{", "}", "[", "]")):
            continue
        if lead.startswith("\t"):
            return "\t"
        widths.append(len(lead))
    return " " * min(widths) if widths else DEFAULT_INDENT


class _Document:
    """One JSONC file being edited as text; every edit re-parses, so positions are always current."""

    def __init__(self, path: Path, text: str, existed: bool) -> None:
        self.path = path
        self.original = text
        self.text = text
        self.existed = existed
        self.unit = _indent_unit(text)
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.root()  # refuse a malformed file before any edit

    @classmethod
    def read(cls, path: Path) -> _Document:
        if not path.exists():
            return cls(path, "", existed=False)
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise DeepboxError(f"Cannot read {path} ({exc.strerror}); check its permissions.") from exc
        except UnicodeDecodeError as exc:
            raise DeepboxError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from exc
        return cls(path, text, existed=True)

    @property
    def changed(self) -> bool:
        return self.text != self.original

    def root(self) -> _Node | None:
        try:
            return _Parser(self.text).document()
        except JsoncError as exc:
            line, column = line_column(self.text, exc.pos)
            raise DeepboxError(
                f"{self.path} is not valid JSON with comments ({exc.message} at line {line}, column {column}); "
                "fix that spot or remove the file, and run the command again."
            ) from None

    def object_root(self) -> _Node:
        root = self.root()
        if root is None:
            kept = self.text.rstrip()
            self.text = (kept + self.newline if kept else "") + "{}" + self.newline
            root = self.root()
        if root is None or root.kind != "object":
            raise DeepboxError(
                f"{self.path} does not hold a JSON object ({{ ... }}); fix or remove it and run the command again."
            )
        return root

    def node(self, where: tuple[str | int, ...]) -> _Node:
        node = self.object_root()
        for step in where:
            node = node.children[step if isinstance(step, int) else node.member(step)]
        return node

    def dump(self, value: Any, indent: str) -> str:
        text = json.dumps(value, indent=self.unit, ensure_ascii=False)
        return text.replace("\n", self.newline + indent)

    def set(self, where: tuple[str | int, ...], key: str, value: Any) -> None:
        """Give the object at `where` the member key = value; objects merge key by key, the rest is kept."""
        obj = self.node(where)
        index = obj.member(key)
        if index < 0:
            self._add(obj, key, value)
            return
        current = obj.children[index]
        if _same(current.value, value):
            return
        if isinstance(value, dict) and current.kind == "object":
            for name, item in value.items():
                self.set((*where, key), name, item)
            return
        replacement = self.dump(value, _line_indent(self.text, obj.keys[index][1]))
        self.text = self.text[: current.start] + replacement + self.text[current.end :]

    def append(self, where: tuple[str | int, ...], value: Any) -> None:
        self._add(self.node(where), None, value)

    def _add(self, container: _Node, key: str | None, value: Any) -> None:
        """Append a member (key given) or an item after the container's last entry, in the file's style."""
        text, nl = self.text, self.newline
        name = "" if key is None else json.dumps(key, ensure_ascii=False) + ": "
        starts = [offset for _, offset in container.keys] if container.kind == "object" else []
        starts = starts or [child.start for child in container.children]
        if not starts:
            outer = _line_indent(text, container.start)
            indent = outer + self.unit
            entry = nl + indent + name + self.dump(value, indent)
            inside = text[container.start + 1 : container.end - 1]
            if inside.strip():  # only comments: keep them after the new entry
                self.text = text[: container.start + 1] + entry + text[container.start + 1 :]
            else:
                self.text = text[: container.start + 1] + entry + nl + outer + text[container.end - 1 :]
            return
        last_end = container.children[-1].end
        after = _Parser(text).skip(last_end)
        has_comma = text[after : after + 1] == ","
        anchor = after + 1 if has_comma else last_end
        if "\n" in text[container.start : starts[0]]:
            indent = _line_indent(text, starts[0])
            comment = _LINE_COMMENT.match(text, anchor)
            if comment:  # a comment at the end of the last entry's line stays on that line
                anchor = comment.end()
            addition = nl + indent + name + self.dump(value, indent) + ("," if has_comma else "")
        else:
            compact = json.dumps(value, ensure_ascii=False)
            addition = " " + name + compact + ("," if has_comma else "")
        if has_comma:
            self.text = text[:anchor] + addition + text[anchor:]
        else:
            self.text = text[:last_end] + "," + text[last_end:anchor] + addition + text[anchor:]


# The workspace files -----------------------------------------------------------------------------


def _workspace_path(value: str, what: str, spec: Spec) -> str:
    """A project-relative path from deepbox.toml as launch.json writes it (${workspaceFolder}/...)."""
    normal = project_relative(value, what, spec.source)
    return "${workspaceFolder}" if normal == "." else f"${{workspaceFolder}}/{normal}"


def _cwd(run: RunConfig, spec: Spec) -> str:
    """The run's working folder: ${workspaceFolder}/... in the project folder, the box path under another mount
    (the debugger runs in the box, over Remote-SSH)."""
    folder = box_folder(run.workdir, f"run.{run.name}.workdir", spec)
    if folder.in_project is None:
        return folder.box
    return "${workspaceFolder}" if folder.in_project == "." else f"${{workspaceFolder}}/{folder.in_project}"


def launch_configuration(run: RunConfig, spec: Spec) -> dict[str, Any]:
    """A debugpy launch configuration for one `[run.<name>]` table."""
    try:
        args = shlex.split(run.args)
    except ValueError as exc:
        raise ConfigError(
            f"{spec.source or 'deepbox.toml'}: run.{run.name}.args {run.args!r} cannot be split into arguments "
            f"({exc}); close the quote."
        ) from exc
    configuration: dict[str, Any] = {
        "name": run.name,
        "type": DEBUG_TYPE,
        "request": "launch",
        "program": _workspace_path(run.script, f"run.{run.name}.script", spec),
        "args": args,
        "cwd": _cwd(run, spec),
    }
    if run.env:
        configuration["env"] = dict(run.env)
    configuration["console"] = "integratedTerminal"
    return configuration


def _settings(doc: _Document, result: UpResult) -> None:
    doc.object_root()
    doc.set((), INTERPRETER_SETTING, result.python)


def _extensions(doc: _Document) -> None:
    root = doc.object_root()
    unwanted = root.value.get("unwantedRecommendations")
    skip = {str(item).lower() for item in unwanted} if isinstance(unwanted, list) else set()
    current = root.value.get("recommendations")
    if current is not None and not isinstance(current, list):
        raise DeepboxError(f"{doc.path}: 'recommendations' must be a list of extension ids; fix or remove it.")
    have = {str(item).lower() for item in current or []}
    missing = [ext for ext in EXTENSIONS if ext.lower() not in have | skip]
    if current is None:
        if missing:
            doc.set((), "recommendations", missing)
        return
    for extension in missing:
        doc.append(("recommendations",), extension)


def _launch(doc: _Document, configurations: list[dict[str, Any]]) -> None:
    root = doc.object_root()
    if "version" not in root.value:
        doc.set((), "version", LAUNCH_VERSION)
    current = doc.object_root().value.get("configurations")
    if current is None:
        doc.set((), "configurations", configurations)
        return
    if not isinstance(current, list):
        raise DeepboxError(f"{doc.path}: 'configurations' must be a list; fix or remove it.")
    for configuration in configurations:
        items = doc.object_root().value["configurations"]
        index = next(
            (
                i
                for i in range(len(items) - 1, -1, -1)
                if isinstance(items[i], dict) and items[i].get("name") == configuration["name"]
            ),
            None,
        )
        if index is None:
            doc.append(("configurations",), configuration)
            continue
        for key, value in configuration.items():
            doc.set(("configurations", index), key, value)


def _target(path: Path) -> Path:
    """The file to write: a symlinked settings file (a dotfile manager's) is written through the link."""
    return path.resolve() if path.is_symlink() else path


def _documents(spec: Spec, result: UpResult) -> Iterator[_Document]:
    folder = spec.project / ".vscode"
    configurations = [launch_configuration(run, spec) for run in run_configurations(spec)]
    settings = _Document.read(folder / "settings.json")
    extensions = _Document.read(folder / "extensions.json")
    launch = _Document.read(folder / "launch.json") if configurations else None
    _settings(settings, result)
    _extensions(extensions)
    yield settings
    yield extensions
    if launch is not None:
        _launch(launch, configurations)
        yield launch


def write_settings(spec: Spec, result: UpResult) -> list[Path]:
    """Merge the box's interpreter, the recommended extensions and the `[run.*]` debug configurations
    into the project's `.vscode/`; returns the files that changed (none on a second run)."""
    if (spec.project / ".vscode").exists() and not (spec.project / ".vscode").is_dir():
        raise DeepboxError(f"{spec.project / '.vscode'} is a file, not a folder; move it away and run again.")
    documents = list(_documents(spec, result))  # every file parsed and edited before any write
    for doc in documents:
        try:
            load_jsonc(doc.text)
        except JsoncError as exc:  # an edit that broke the file must never reach the disk
            raise DeepboxError(f"deepbox could not merge its settings into {doc.path}; the file is unchanged.") from exc
    written = []
    for doc in documents:
        if not doc.changed or (not doc.existed and load_jsonc(doc.text) == {}):
            continue
        target = _target(doc.path)
        mode = stat.S_IMODE(target.stat().st_mode) if doc.existed else 0o644
        try:
            atomic_write(target, doc.text.encode(), mode)
        except OSError as exc:
            raise DeepboxError(f"Cannot write {target} ({exc.strerror}); check the folder's permissions.") from exc
        written.append(doc.path)
    return written
