"""The wheel as users install it: built from this tree, installed with `uv tool install` into a folder of
its own, and run from outside the repository, so nothing here (the source tree, .venv) can stand in.

Dependencies come from where pip takes them on this machine (its index, extra indexes, find-links and
constraints, from `pip config` and PIP_* variables), so the test runs against a local package index
as well as against PyPI.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deepbox.resolver import uv_binary

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "deepbox"
# uv's flag for each pip setting that says where packages come from (and constraints, below)
PIP_SOURCES = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
}


def pip_source_options(constraints: str = "--constraints") -> list[str]:
    """pip's configured package sources as uv options (none when pip is not installed); `uv build`
    names its constraints flag --build-constraints."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False, timeout=60
    )
    options: list[str] = []
    for line in listed.stdout.splitlines() if listed.returncode == 0 else []:
        key, _, value = line.partition("=")
        flag = {**PIP_SOURCES, "constraint": constraints}.get(key.rsplit(".", 1)[-1])
        if flag is not None:
            for item in shlex.split(value)[0].split() if value else []:
                options += [flag, item]
    return _unique_pairs(options)


def _unique_pairs(options: list[str]) -> list[str]:
    """The same setting from pip's file and from PIP_* is given to uv once."""
    pairs = list(dict.fromkeys(zip(options[::2], options[1::2], strict=True)))
    return [word for pair in pairs for word in pair]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [
            uv_binary(),
            "build",
            "--wheel",
            "--out-dir",
            str(out),
            "--index-strategy",
            "unsafe-best-match",
            *pip_source_options("--build-constraints"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (built,) = out.glob("deepbox-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict[str, str]:
    """`uv tool install` of the wheel into a temporary tool folder: the environment that runs it."""
    tools = tmp_path_factory.mktemp("tools")
    env = {
        **os.environ,
        "UV_TOOL_DIR": str(tools / "envs"),
        "UV_TOOL_BIN_DIR": str(tools / "bin"),
        "UV_PYTHON_DOWNLOADS": "never",
        "PATH": f"{tools / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("VIRTUAL_ENV", None)
    install = subprocess.run(
        [uv_binary(), "tool", "install", "--python", sys.executable, "--index-strategy", "unsafe-best-match",
         *pip_source_options(), str(wheel)],
        capture_output=True, text=True, check=False, timeout=600, env=env, cwd=tools,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    env["DEEPBOX_TOOL_PYTHON"] = str(tools / "envs" / "deepbox" / "bin" / "python")
    return env


def test_the_wheel_holds_every_module_asset_and_the_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"deepbox/{path.relative_to(SOURCE).as_posix()}"
        for path in SOURCE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected <= names, sorted(expected - names)
    assert {"deepbox/assets/deepbox.toml", "deepbox/assets/sshd_config", "deepbox/catalog/entries.py"} <= names
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert "Classifier: Operating System :: POSIX :: Linux" in text
    assert not any(line.startswith("Classifier: License ::") for line in text.splitlines())
    licenses = [name for name in names if name.endswith("/LICENSE") and ".dist-info/" in name]
    assert licenses, "LICENSE is not in the wheel"
    assert "Copyright (c) 2026 the deepbox authors" in zipfile.ZipFile(wheel).read(licenses[0]).decode()


COMMANDS = [
    pytest.param(["deepbox", "--help"], "Usage: deepbox", id="deepbox --help"),
    pytest.param(["deepbox", "catalog"], "Presets:", id="deepbox catalog"),
    pytest.param(["{python}", "-m", "deepbox", "--help"], "Usage:", id="python -m deepbox --help"),
    pytest.param(["deepbox", "schema"], '"properties"', id="deepbox schema"),
    pytest.param(["deepbox", "completion", "bash"], "_DEEPBOX_COMPLETE=bash_complete", id="deepbox completion bash"),
]


@pytest.mark.parametrize(("command", "expected"), COMMANDS)
def test_the_installed_tool_runs_outside_the_repository(installed, tmp_path, command, expected):
    args = [installed["DEEPBOX_TOOL_PYTHON"] if word == "{python}" else word for word in command]
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120, env=installed, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    where = subprocess.run(
        [installed["DEEPBOX_TOOL_PYTHON"], "-c", "import deepbox; print(deepbox.__file__)"],
        capture_output=True, text=True, check=True, timeout=60, env=installed, cwd=tmp_path,
    )  # fmt: skip
    assert not Path(where.stdout.strip()).is_relative_to(ROOT), "the tool imports deepbox from the source tree"
