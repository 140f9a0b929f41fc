"""Properties of the IDE file merges: generated existing .vscode/*.json and .idea/*.xml files.

deepbox merges its entries into whatever the project already has: every key, element and comment of the
user's stays, and a second run with the same box writes nothing. HYPOTHESIS_PROFILE=full draws 1,000 cases.
"""

from __future__ import annotations

import json
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from deepbox.config import load_spec
from deepbox.ide import pycharm, vscode
from deepbox.ide.vscode import load_jsonc

from .helpers import snapshot, up_result

CONFIG = """\
name = "demo"

[run.train]
script = "src/train.py"
args = "--epochs 2"
"""

# deepbox's own keys: the merge may change these, and keeps every other.
OURS = {
    "settings.json": {vscode.INTERPRETER_SETTING},
    "extensions.json": {"recommendations"},
    "launch.json": {"version", "configurations"},
}

keys = st.text(st.sampled_from("abcxyz.-_ éü/"), min_size=1, max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)
comments = st.one_of(st.none(), st.sampled_from(["// keep this", "/* wide screens */", "// ünïcode, // twice"]))


@st.composite
def jsonc_files(draw: st.DrawFn, name: str) -> tuple[str, dict[str, Any], list[str]]:
    """JSONC text of an object, the object itself and the comments in it."""
    members = draw(st.dictionaries(keys.filter(lambda key: key not in OURS[name]), values, max_size=5))
    if name == "extensions.json" and draw(st.booleans()):
        members["recommendations"] = draw(st.lists(st.sampled_from(["ms-python.python", "Other.ext"]), max_size=2))
    if name == "launch.json" and draw(st.booleans()):
        members["version"] = "0.2.0"
        members["configurations"] = [{"name": draw(st.sampled_from(["train", "serve"])), "type": "debugpy"}]
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    indent = draw(st.sampled_from(["  ", "    ", "\t"]))
    lines, said = [], []
    for key, value in members.items():
        comment = draw(comments)
        if comment is not None:
            lines.append(indent + comment)
            said.append(comment)
        lines.append(f"{indent}{json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)},")
    if lines and not draw(st.booleans()):  # a trailing comma, or none
        lines[-1] = lines[-1].removesuffix(",")
    text = newline.join(["{", *lines, "}"])
    if draw(st.booleans()):
        text += newline
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text, members, said


def project(folder: Path) -> Path:
    path = folder / "proj"
    path.mkdir()
    (path / "deepbox.toml").write_text(CONFIG)
    return path


@given(
    settings=jsonc_files("settings.json"),
    extensions=jsonc_files("extensions.json"),
    launch=jsonc_files("launch.json"),
)
def test_vscode_merge_keeps_the_users_content_and_a_second_run_writes_nothing(settings, extensions, launch) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = project(Path(scratch))
        folder = path / ".vscode"
        folder.mkdir()
        files = {"settings.json": settings, "extensions.json": extensions, "launch.json": launch}
        for name, (text, _, _) in files.items():
            (folder / name).write_bytes(text.encode())
        spec = load_spec(path)

        vscode.write_settings(spec, up_result())
        first = snapshot(folder)
        for name, (_, members, said) in files.items():
            text = (folder / name).read_bytes().decode()
            merged = load_jsonc(text)
            for key, value in members.items():
                if key not in OURS[name]:
                    assert merged[key] == value
            for comment in said:
                assert comment in text
            assert text.startswith("\ufeff") == files[name][0].startswith("\ufeff")
        assert load_jsonc((folder / "settings.json").read_text())[vscode.INTERPRETER_SETTING] == "/opt/venv/bin/python"

        assert vscode.write_settings(spec, up_result()) == []
        assert snapshot(folder) == first


# PyCharm ---------------------------------------------------------------------------------------------

IDEA_FILES = ["misc.xml", "workspace.xml", "sshConfigs.xml", "webServers.xml", "deployment.xml", "modules.xml"]
# Text XML can hold (no control characters), as PyCharm writes it.
xml_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8)
names = st.text(st.sampled_from("AbcXyz_-. é&<>\"'"), min_size=1, max_size=10)


@st.composite
def user_components(draw: st.DrawFn) -> ET.Element:
    component = ET.Element("component", {"name": "User" + draw(names)})
    for _ in range(draw(st.integers(0, 3))):
        ET.SubElement(component, "option", {"name": draw(names), "value": draw(xml_text)})
    if draw(st.booleans()):
        component.append(ET.Comment(" the user's note "))
    return component


@st.composite
def idea_files(draw: st.DrawFn) -> tuple[bytes, list[ET.Element]]:
    root = ET.Element("project", {"version": "4"})
    components = draw(st.lists(user_components(), max_size=3, unique_by=lambda c: c.get("name")))
    root.extend(components)
    ET.indent(root, space=draw(st.sampled_from(["  ", "\t"])))
    text = ET.tostring(root, encoding="unicode")
    if draw(st.booleans()):
        text = '<?xml version="1.0" encoding="UTF-8"?>\n' + text
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    if draw(st.booleans()):
        text += "\n"
    data = text.encode()
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data, components


def shape(element: ET.Element) -> tuple:
    """The element without the whitespace between elements (PyCharm's own indentation is rewritten)."""
    return (element.tag, element.attrib, (element.text or "").strip(), [shape(child) for child in element])


@given(existing=st.fixed_dictionaries({name: idea_files() for name in IDEA_FILES}))
def test_pycharm_merge_keeps_the_users_content_and_a_second_run_writes_nothing(existing) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = project(Path(scratch))
        idea = path / ".idea"
        idea.mkdir()
        for name, (data, _) in existing.items():
            (idea / name).write_bytes(data)
        spec = load_spec(path)

        pycharm.write_project(spec, up_result())
        first = snapshot(idea)
        for name, (_, components) in existing.items():
            parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))  # noqa: S314
            root = ET.fromstring((idea / name).read_bytes(), parser=parser)  # noqa: S314
            kept = {child.get("name"): shape(child) for child in root if child.tag == "component"}
            for component in components:
                assert kept[component.get("name")] == shape(component)

        assert pycharm.write_project(spec, up_result()) == []
        assert snapshot(idea) == first
