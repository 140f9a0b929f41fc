"""`deepbox schema`: the JSON Schema editors check deepbox.toml against, as the command prints it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from deepbox.cli import main
from deepbox.config import config_template, load_config
from deepbox.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*/deepbox.toml"))


@pytest.fixture
def validator(capsys) -> jsonschema.Draft202012Validator:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_schema_has_a_title_and_describes_every_key(validator):
    schema = validator.schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "deepbox.toml"
    assert schema["additionalProperties"] is False
    described = {key for key, field in schema["properties"].items() if field.get("description")}
    assert described == set(schema["properties"]) - {
        "ssh",
        "user",
        "build",
        "secrets",
        "slurm",
    }  # tables: their own description
    for table in (
        "SshSettings",
        "UserSettings",
        "BuildSettings",
        "RunSettings",
        "SecretsSettings",
        "SecretFromEnv",
        "SlurmSettings",
        "BoxTable",
    ):
        assert schema["$defs"][table]["description"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.parent.name)
def test_the_example_projects_are_valid(validator, example):
    assert list(validator.iter_errors(tomllib.loads(example.read_text()))) == []


def test_there_are_examples_to_check():
    assert EXAMPLES


def test_the_init_template_is_valid(validator):
    assert list(validator.iter_errors(tomllib.loads(config_template("my-box")))) == []


def test_a_broken_config_is_invalid(validator):
    broken = tomllib.loads('framworks = ["numpy"]\nshm_size = "lots"\n[ssh]\nport = "2222"\n')
    problems = sorted(
        ".".join(map(str, error.absolute_path)) or error.validator for error in validator.iter_errors(broken)
    )
    assert problems == ["additionalProperties", "shm_size", "ssh.port"]


@pytest.mark.parametrize(
    "toml",
    [
        "gpus = [0, 2]",
        'gpus = ["GPU-1a2b", 1]',
        "gpus = 2",
        "gpus = true",
        'shm_size = "2GB"',
        'shm_size = "2 GiB"',
        'shm_size = "2gbb"',
        '[ssh]\nport = "2222"',
        "[ssh]\nport = 70000",
        "[env]\nSEED = 0",
        '[env]\n"1BAD" = "x"',
        'name = "Bad_Name"',
        'name = "ok-name"',
        'python = "3.12"',
        'python = "3"',
        'cuda = "12.8"',
        'cuda = "twelve"',
        'host = "ssh://alice@gpu1"',
        'host = "gpu1"',
        'workspace = "workspace"',
        'device = "gpu"',
        'ide = ["vscode"]',
        'jupyter = "true"',
        '[run.train]\nargs = "x"',
        '[run.train]\nscript = "train.py"',
        '[box.cuda]\ndevice = "cuda"\nframeworks = ["pytorch"]',
        "[box.cpu]",
        "[box.GPU]",
        "box = 1",
        "[box]\ncpu = 1",
        '[box.cpu]\nframworks = ["numpy"]',
        '[box.cpu]\ndevice = "gpu"',
        '[box.cpu.ssh]\nport = "2222"',
        "[box.cpu.ssh]\nport = 2222",
        '[box.cpu.env]\nX = "1"',
        "[box.cpu.env]\nX = 1",
        '[box.cpu.run.train]\nargs = "x"',
        "[box.cpu.box.inner]",
        'name = "exp"\n[box.mine]\nname = "scratch"',
        '[box.mine]\nname = "Bad_Name"',
        'registry = "127.0.0.1:5000/team"',
        'registry = "registry.example.com/ml-team/boxes"',
        'registry = "localhost/team"',
        'registry = "team"',
        'registry = "registry.example.com"',
        'registry = "https://registry.example.com/team"',
        'registry = "Registry.example.com/Team"',
    ],
)
def test_the_schema_and_the_loader_agree(validator, make_project, toml):
    """What an editor marks as wrong is what deepbox refuses, and the other way round."""
    project = make_project(toml + "\n")
    try:
        load_config(project)
        loads = True
    except ConfigError:
        loads = False
    assert validator.is_valid(tomllib.loads(toml)) == loads


def test_the_schema_line_is_a_comment_to_deepbox(make_project):
    project = make_project('#:schema ./deepbox.schema.json\nname = "with-schema"\n')
    assert load_config(project)[0].name == "with-schema"
