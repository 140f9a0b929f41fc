"""ide/vscode.py: Remote-SSH links, the JSONC editor and the .vscode files it merges.

Golden files live in tests/unit/golden/vscode/<case>/; after an intended change, regenerate them with
DEEPBOX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_ide_vscode.py and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepbox import paths
from deepbox.config import load_spec
from deepbox.errors import ConfigError, DeepboxError
from deepbox.ide import vscode
from deepbox.ide.vscode import JsoncError, load_jsonc

from .helpers import check_golden as compare_golden
from .helpers import snapshot, up_result

GOLDEN = Path(__file__).parent / "golden" / "vscode"


def check_golden(case: str, files: dict[str, bytes]) -> None:
    compare_golden(GOLDEN, case, files)


CONFIG = """\
name = "demo"

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

# A project VS Code has already opened: comments, trailing commas, tabs, inline arrays, the user's own
# keys and launch configurations, one of them named like a [run.*] table.
EXISTING = {
    "settings.json": """\
// Workspace settings for this project.
{
\t"editor.formatOnSave": true, // keep this
\t/* wide screens */ "editor.rulers": [100, 120],
\t"python.defaultInterpreterPath": "${workspaceFolder}/.venv/bin/python",
\t"files.exclude": {
\t\t"**/__pycache__": true,
\t},
}
""",
    "extensions.json": """\
{
  // See https://go.microsoft.com/fwlink/?LinkId=827846 to learn about workspace recommendations.
  "recommendations": ["charliermarsh.ruff", "MS-Python.python"]
}
""",
    "launch.json": """\
{
    // Use IntelliSense to learn about possible attributes.
    "version": "0.2.0",
    "configurations": [
        {
            "name": "serve",
            "type": "debugpy",
            "request": "launch",
            "module": "uvicorn",
            "args": ["app:app", "--reload"],
        },
        {
            "name": "train",
            "type": "python",
            "request": "launch",
            "program": "${workspaceFolder}/train.py",
            "justMyCode": false,
            "env": {"WANDB_MODE": "offline", "SEED": "7"}
        } // the user's tweaks
    ]
}
""",
}


@pytest.fixture
def spec(make_project):
    return load_spec(make_project(CONFIG, folder="golden"))


def vscode_files(project: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((project / ".vscode").iterdir())}


def write_existing(project: Path) -> None:
    folder = project / ".vscode"
    folder.mkdir()
    for name, text in EXISTING.items():
        (folder / name).write_text(text)


def read(project: Path, name: str):
    return load_jsonc((project / ".vscode" / name).read_text())


# Links ----------------------------------------------------------------------------------------------


def test_remote_uri_and_url():
    result = up_result()
    assert vscode.remote_uri(result) == "vscode-remote://ssh-remote+deepbox-demo/workspace"
    assert vscode.open_url(result) == "vscode://vscode-remote/ssh-remote+deepbox-demo/workspace"


def test_paths_with_spaces_are_percent_encoded():
    result = up_result(workspace="/work space/ü")
    assert vscode.open_url(result) == "vscode://vscode-remote/ssh-remote+deepbox-demo/work%20space/%C3%BC"
    assert vscode.remote_uri(result) == "vscode-remote://ssh-remote+deepbox-demo/work%20space/%C3%BC"


def test_open_command_needs_code_on_path(monkeypatch):
    monkeypatch.setattr(vscode.shutil, "which", lambda name: "/usr/bin/code" if name == "code" else None)
    assert vscode.open_command(up_result()) == ["code", "--remote", "ssh-remote+deepbox-demo", "/workspace"]
    monkeypatch.setattr(vscode.shutil, "which", lambda name: None)
    assert vscode.open_command(up_result()) is None


def test_ssh_config_hint_names_the_file_that_holds_the_alias(monkeypatch, home):
    hint = vscode.ssh_config_hint(up_result())
    # The tests run with a HOME of their own, not the account's: Remote-SSH reads the account's config.
    account = vscode.hostos.account_home() / ".ssh" / "config"
    assert hint == (
        f"The host deepbox-demo is in {paths.owned_ssh_config()}, which {paths.user_ssh_config()} includes because "
        f"HOME is {home}; VS Code's Remote-SSH reads {account}, so add the line "
        f"`Include {paths.owned_ssh_config()}` to that file, or set remote.SSH.configFile to "
        f"{paths.user_ssh_config()} in VS Code's user settings."
    )

    monkeypatch.setattr(vscode.hostos, "account_home", lambda: home)
    assert vscode.ssh_config_hint(up_result()) == (
        f"VS Code's Remote-SSH finds the host deepbox-demo in {paths.owned_ssh_config()}, through the Include "
        f"deepbox added at the top of {paths.user_ssh_config()}; if remote.SSH.configFile points VS Code at "
        f"another file, add the line `Include {paths.owned_ssh_config()}` to that file."
    )


# The JSONC parser -----------------------------------------------------------------------------------


def test_load_jsonc_reads_comments_and_trailing_commas():
    text = """\ufeff// leading
    {
        "a": "http://x//y /* not a comment */", // trailing
        /* block
           comment */ "b": [1, 2.5, -3e2, true, false, null,],
        "c": {"d": "\\u00e9\\n",},
    }
    """
    assert load_jsonc(text) == {
        "a": "http://x//y /* not a comment */",
        "b": [1, 2.5, -300.0, True, False, None],
        "c": {"d": "é\n"},
    }
    assert load_jsonc("  // only a comment\n") is None
    assert load_jsonc('{"a": 1, "a": 2}') == {"a": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1 "b": 2}', "expected ',' or '}'"),
        ("{'a': 1}", "expected a property name in double quotes"),
        ('{"a": 1,,}', "expected a property name in double quotes"),
        ('{"a": [1, 2}', "expected ',' or ']'"),
        ('{"a": 1} x', "unexpected text after the end"),
        ('{"a": 1 /* open', "never closed"),
        ('{"a": tru}', "expected a value"),
        ('{"a": "x', "unterminated string"),
        ('{"a": ', "the file ends where a value was expected"),
        ("[" * 5000, "nested too deeply"),
    ],
)
def test_load_jsonc_rejects_broken_text(text, message):
    with pytest.raises(JsoncError) as caught:
        load_jsonc(text)
    assert message in caught.value.message


# Fresh and existing projects ------------------------------------------------------------------------


def test_fresh_project_files_match_the_golden_files(spec):
    written = vscode.write_settings(spec, up_result())

    folder = spec.project / ".vscode"
    assert written == [folder / "settings.json", folder / "extensions.json", folder / "launch.json"]
    check_golden("fresh", vscode_files(spec.project))
    assert read(spec.project, "settings.json") == {"python.defaultInterpreterPath": "/opt/venv/bin/python"}
    assert read(spec.project, "extensions.json") == {
        "recommendations": ["ms-python.python", "ms-vscode-remote.remote-ssh"]
    }
    launch = read(spec.project, "launch.json")
    assert launch["version"] == "0.2.0"
    assert [c["name"] for c in launch["configurations"]] == ["eval", "train"]
    train = launch["configurations"][1]
    assert train == {
        "name": "train",
        "type": "debugpy",
        "request": "launch",
        "program": "${workspaceFolder}/src/train.py",
        "args": ["--epochs", "2", "--name", "a b"],
        "cwd": "${workspaceFolder}/src",
        "env": {"GREETING": "hi", "SEED": "1"},
        "console": "integratedTerminal",
    }
    assert launch["configurations"][0]["cwd"] == "${workspaceFolder}"
    assert "env" not in launch["configurations"][0]


def test_existing_files_are_merged_and_match_the_golden_files(spec):
    write_existing(spec.project)

    written = vscode.write_settings(spec, up_result())

    folder = spec.project / ".vscode"
    assert written == [folder / "settings.json", folder / "extensions.json", folder / "launch.json"]
    check_golden("merged", vscode_files(spec.project))


def test_merging_keeps_every_comment_and_every_key_of_the_user(spec):
    write_existing(spec.project)
    vscode.write_settings(spec, up_result())
    folder = spec.project / ".vscode"

    settings = (folder / "settings.json").read_text()
    for kept in ("// Workspace settings for this project.", "// keep this", "/* wide screens */", "true,\n\t},\n}"):
        assert kept in settings
    assert read(spec.project, "settings.json") == {
        "editor.formatOnSave": True,
        "editor.rulers": [100, 120],
        "python.defaultInterpreterPath": "/opt/venv/bin/python",
        "files.exclude": {"**/__pycache__": True},
    }
    # Only the value changed: the text around it is the user's, byte for byte.
    assert settings == EXISTING["settings.json"].replace(
        '"${workspaceFolder}/.venv/bin/python"', '"/opt/venv/bin/python"'
    )

    extensions = (folder / "extensions.json").read_text()
    assert "// See https://go.microsoft.com/fwlink/?LinkId=827846" in extensions
    # Ids are case-insensitive: MS-Python.python is ms-python.python; the inline list stays inline.
    assert '"recommendations": ["charliermarsh.ruff", "MS-Python.python", "ms-vscode-remote.remote-ssh"]' in (
        extensions
    )

    launch = (folder / "launch.json").read_text()
    assert "// Use IntelliSense to learn about possible attributes." in launch
    assert "}, // the user's tweaks" in launch, "the comment stays on the line it was on"
    configurations = read(spec.project, "launch.json")["configurations"]
    assert [c["name"] for c in configurations] == ["serve", "train", "eval"]
    assert configurations[0] == {
        "name": "serve",
        "type": "debugpy",
        "request": "launch",
        "module": "uvicorn",
        "args": ["app:app", "--reload"],
    }, "a configuration deepbox doesn't own is untouched"
    train = configurations[1]
    assert train["justMyCode"] is False
    assert train["type"] == "debugpy"
    assert train["program"] == "${workspaceFolder}/src/train.py"
    assert train["env"] == {"WANDB_MODE": "offline", "SEED": "1", "GREETING": "hi"}
    assert train["args"] == ["--epochs", "2", "--name", "a b"]
    assert '"env": {"WANDB_MODE": "offline", "SEED": "1", "GREETING": "hi"}' in launch, "inline stays inline"


def test_a_second_run_changes_nothing(spec, make_project):
    write_existing(spec.project)
    vscode.write_settings(spec, up_result())
    before = snapshot(spec.project / ".vscode")

    assert vscode.write_settings(spec, up_result()) == []
    assert snapshot(spec.project / ".vscode") == before

    fresh = load_spec(make_project(CONFIG, folder="fresh"))
    vscode.write_settings(fresh, up_result())
    before = snapshot(fresh.project / ".vscode")
    assert vscode.write_settings(fresh, up_result()) == []
    assert snapshot(fresh.project / ".vscode") == before


def test_another_interpreter_replaces_only_that_value(spec):
    vscode.write_settings(spec, up_result())
    folder = spec.project / ".vscode"
    before = snapshot(folder)

    written = vscode.write_settings(spec, up_result(python="/usr/bin/python3"))

    assert written == [folder / "settings.json"]
    assert read(spec.project, "settings.json") == {"python.defaultInterpreterPath": "/usr/bin/python3"}
    after = snapshot(folder)
    assert after["launch.json"] == before["launch.json"]
    assert after["extensions.json"] == before["extensions.json"]


def test_no_run_configurations_and_no_script_means_no_launch_json(make_project):
    spec = load_spec(make_project('name = "plain"\n', folder="plain"))
    written = vscode.write_settings(spec, up_result())
    assert [path.name for path in written] == ["settings.json", "extensions.json"]
    assert not (spec.project / ".vscode" / "launch.json").exists()


def test_train_py_gets_a_configuration_without_run_tables(make_project):
    project = make_project('name = "plain"\n', folder="plain")
    (project / "train.py").write_text("print('hi')\n")
    vscode.write_settings(load_spec(project), up_result())
    configurations = read(project, "launch.json")["configurations"]
    assert [(c["name"], c["program"]) for c in configurations] == [("train", "${workspaceFolder}/train.py")]


def test_empty_and_comment_only_files_get_an_object(spec):
    folder = spec.project / ".vscode"
    folder.mkdir()
    (folder / "settings.json").write_text("")
    (folder / "extensions.json").write_text("// nothing yet\n")

    vscode.write_settings(spec, up_result())

    assert (
        folder / "settings.json"
    ).read_text() == '{\n    "python.defaultInterpreterPath": "/opt/venv/bin/python"\n}\n'
    assert (folder / "extensions.json").read_text().startswith("// nothing yet\n{\n")
    assert read(spec.project, "extensions.json")["recommendations"] == [
        "ms-python.python",
        "ms-vscode-remote.remote-ssh",
    ]


def test_empty_objects_and_crlf_files(spec):
    folder = spec.project / ".vscode"
    folder.mkdir()
    (folder / "settings.json").write_bytes(b'{\r\n  "a": 1\r\n}\r\n')
    (folder / "extensions.json").write_bytes(b"{}")

    vscode.write_settings(spec, up_result())

    assert (folder / "settings.json").read_bytes() == (
        b'{\r\n  "a": 1,\r\n  "python.defaultInterpreterPath": "/opt/venv/bin/python"\r\n}\r\n'
    )
    assert (folder / "extensions.json").read_bytes() == (
        b'{\n    "recommendations": [\n        "ms-python.python",\n        "ms-vscode-remote.remote-ssh"\n    ]\n}'
    )


def test_a_line_comment_after_the_last_member_stays_on_its_line(spec):
    folder = spec.project / ".vscode"
    folder.mkdir()
    (folder / "settings.json").write_text('{\n  "a": 1 // one\n}\n')
    vscode.write_settings(spec, up_result())
    assert (folder / "settings.json").read_text() == (
        '{\n  "a": 1, // one\n  "python.defaultInterpreterPath": "/opt/venv/bin/python"\n}\n'
    )


def test_unwanted_recommendations_are_respected(spec):
    folder = spec.project / ".vscode"
    folder.mkdir()
    (folder / "extensions.json").write_text('{"unwantedRecommendations": ["ms-vscode-remote.remote-ssh"]}\n')
    vscode.write_settings(spec, up_result())
    assert read(spec.project, "extensions.json") == {
        "unwantedRecommendations": ["ms-vscode-remote.remote-ssh"],
        "recommendations": ["ms-python.python"],
    }


def test_a_symlinked_settings_file_is_written_through_the_link(spec, tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "settings.json").write_text('{"a": 1}\n')
    (dotfiles / "settings.json").chmod(0o600)
    folder = spec.project / ".vscode"
    folder.mkdir()
    (folder / "settings.json").symlink_to(dotfiles / "settings.json")

    vscode.write_settings(spec, up_result())

    assert (folder / "settings.json").is_symlink()
    assert load_jsonc((dotfiles / "settings.json").read_text())["python.defaultInterpreterPath"] == (
        "/opt/venv/bin/python"
    )
    assert (dotfiles / "settings.json").stat().st_mode & 0o777 == 0o600


# Refusals: nothing is written -----------------------------------------------------------------------


def test_a_malformed_file_is_refused_with_its_line_and_column(spec):
    folder = spec.project / ".vscode"
    folder.mkdir()
    (folder / "settings.json").write_text('{"a": 1}\n')
    (folder / "launch.json").write_text('{\n  "version": "0.2.0"\n  "configurations": []\n}\n')
    before = snapshot(folder)

    with pytest.raises(DeepboxError) as caught:
        vscode.write_settings(spec, up_result())

    assert caught.value.message == (
        f"{folder / 'launch.json'} is not valid JSON with comments (expected ',' or '}}' at line 3, column 3); "
        "fix that spot or remove the file, and run the command again."
    )
    assert snapshot(folder) == before, "no file was written, not even the valid ones"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("settings.json", "[1, 2]\n", "does not hold a JSON object"),
        ("extensions.json", '{"recommendations": "ms-python.python"}', "'recommendations' must be a list"),
        ("launch.json", '{"configurations": {}}', "'configurations' must be a list"),
    ],
)
def test_files_of_the_wrong_shape_are_refused(spec, name, text, message):
    folder = spec.project / ".vscode"
    folder.mkdir()
    (folder / name).write_text(text)
    with pytest.raises(DeepboxError, match=message):
        vscode.write_settings(spec, up_result())
    assert sorted(path.name for path in folder.iterdir()) == [name]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('script = "../outside.py"', "run.bad.script '../outside.py' must be a path inside the project folder,"),
        ('script = "/abs/train.py"', "must be a path inside the project folder"),
        ('script = "t.py"\nworkdir = "../x"', "run.bad.workdir '../x' is not in a folder mounted in the box"),
        ('script = "t.py"\nargs = "--name \\"open"', "run.bad.args '--name \"open' cannot be split"),
    ],
)
def test_bad_run_configurations_are_refused_before_writing(make_project, table, message):
    project = make_project(f'name = "bad"\n[run.bad]\n{table}\n', folder="bad")
    with pytest.raises(ConfigError) as caught:
        vscode.write_settings(load_spec(project), up_result())
    assert message in caught.value.message
    assert not (project / ".vscode").exists()


@pytest.mark.parametrize(
    ("workdir", "cwd"),
    [
        ("/data", "/data"),
        ("/data/runs", "/data/runs"),
        ("/workspace/src", "${workspaceFolder}/src"),
        (".", "${workspaceFolder}"),
    ],
)
def test_the_working_folder_is_the_project_folder_or_a_mounts_box_path(make_project, workdir, cwd):
    project = make_project(
        f'name = "m"\nmounts = ["~/datasets:/data"]\n[run.train]\nscript = "t.py"\nworkdir = "{workdir}"\n'
    )

    vscode.write_settings(load_spec(project), up_result())

    assert read(project, "launch.json")["configurations"][0]["cwd"] == cwd


def test_a_working_folder_outside_every_mount_names_the_mounts(make_project):
    project = make_project(
        'name = "m"\nmounts = ["~/datasets:/data"]\n[run.train]\nscript = "t.py"\nworkdir = "/scratch"\n'
    )

    with pytest.raises(ConfigError) as caught:
        vscode.write_settings(load_spec(project), up_result())

    assert caught.value.message == (
        f"{project / 'deepbox.toml'}: run.train.workdir '/scratch' is not in a folder mounted in the box; use a "
        "path relative to the project folder, or a box path under /workspace or /data."
    )
    assert not (project / ".vscode").exists()
