"""devcontainer.py: `deepbox export devcontainer` - the files, the schema, and whose files it may replace.

Golden files live in tests/unit/golden/devcontainer/<case>/; after an intended change, regenerate them
with DEEPBOX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_devcontainer.py and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from deepbox import devcontainer
from deepbox.config import load_spec
from deepbox.dockerfile import render
from deepbox.errors import DeepboxError
from deepbox.gpu import GpuRequest
from deepbox.ide.vscode import load_jsonc

from .helpers import check_golden as compare_golden
from .helpers import snapshot

GOLDEN = Path(__file__).parent / "golden" / "devcontainer"


def check_golden(case: str, files: dict[str, bytes]) -> None:
    compare_golden(GOLDEN, case, files)


SCHEMA = Path("/work/shared/data/devcontainer-schema/devContainer.base.schema.json")
PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIBfakecertificatebody\n-----END CERTIFICATE-----\n"
CONFIG = """\
name = "demo"
jupyter = true
mounts = ["~/datasets:/data:ro", "./cache:/cache"]
shm_size = "8g"
env = { WANDB_MODE = "offline", HF_HOME = "/data/hf" }

[user]
name = "alice"
uid = 4321
gid = 4322
"""


@pytest.fixture
def spec(make_project):
    return load_spec(make_project(CONFIG, folder="golden"))


@pytest.fixture(scope="module")
def validator():
    if not SCHEMA.is_file():
        pytest.skip(f"the Dev Container schema is not at {SCHEMA}")
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft201909Validator, "the schema declares draft 2019-09"
    cls.check_schema(schema)
    return cls(schema)


def config_of(project: Path) -> dict:
    return json.loads((project / ".devcontainer" / "devcontainer.json").read_text())


def problems(validator, config: dict) -> list[str]:
    return [error.message for error in validator.iter_errors(config)]


# The files ------------------------------------------------------------------------------------------


def test_export_matches_the_golden_files_and_copies_the_build_context(spec):
    context = render(spec)
    written = devcontainer.export(spec, context)

    folder = spec.project / ".devcontainer"
    expected = [folder / "Dockerfile", *(folder / name for name in sorted(context.files)), folder / "devcontainer.json"]
    assert written == expected, "the Dockerfile and its files first, devcontainer.json last"
    check_golden(
        "jupyter-mounts",
        {name: (folder / name).read_bytes() for name in ("devcontainer.json", "Dockerfile")},
    )
    assert (folder / "Dockerfile").read_text() == context.dockerfile
    for name, data in context.files.items():
        assert (folder / name).read_bytes() == data
    assert (folder / "deepbox/entrypoint.sh").stat().st_mode & 0o777 == 0o755
    assert (folder / "deepbox/sshd_config").stat().st_mode & 0o777 == 0o644


def test_the_config_describes_the_box(spec):
    devcontainer.export(spec, render(spec))
    config = config_of(spec.project)

    assert config["build"] == {"dockerfile": "Dockerfile", "context": "."}
    assert config["workspaceFolder"] == "/workspace"
    assert config["workspaceMount"] == "source=${localWorkspaceFolder},target=/workspace,type=bind"
    assert config["mounts"] == [
        "source=${localEnv:HOME}/datasets,target=/data,type=bind,readonly",
        "source=${localWorkspaceFolder}/cache,target=/cache,type=bind",
    ]
    assert config["runArgs"] == ["--shm-size=8g"]
    assert config["containerEnv"] == {"HF_HOME": "/data/hf", "WANDB_MODE": "offline"}
    assert config["remoteUser"] == "alice"
    assert config["overrideCommand"] is True
    assert config["forwardPorts"] == [8888]
    assert "jupyter lab --ip=127.0.0.1 --port=8888" in config["postStartCommand"]
    assert config["postStartCommand"].startswith("nohup sh -c ")
    assert config["customizations"]["vscode"]["settings"] == {"python.defaultInterpreterPath": "/opt/venv/bin/python"}
    assert "ms-python.python" in config["customizations"]["vscode"]["extensions"]
    marker = config["customizations"]["deepbox"]
    assert marker["generatedBy"] == "deepbox export devcontainer"
    assert marker["files"][0] == "Dockerfile"
    assert "hostRequirements" not in config


def test_the_config_is_valid_against_the_dev_container_schema(spec, make_project, validator):
    devcontainer.export(spec, render(spec))
    assert problems(validator, config_of(spec.project)) == []

    plain = load_spec(make_project('name = "plain"\n', folder="plain"))
    devcontainer.export(plain, render(plain))
    config = config_of(plain.project)
    assert problems(validator, config) == []
    assert not {"mounts", "forwardPorts", "postStartCommand", "portsAttributes", "containerEnv"} & set(config)


def test_the_schema_check_catches_a_broken_config(spec, validator):
    config = devcontainer.devcontainer_config(spec, render(spec), ["Dockerfile"])
    assert problems(validator, config) == []
    assert problems(validator, {**config, "deepbox": {"files": []}}), "an unknown top-level key"
    assert problems(validator, {**config, "mounts": [{"type": "tmpfs", "target": "/x"}]})
    assert problems(validator, {**config, "build": {"context": "."}}), "a build without a Dockerfile"


@pytest.mark.parametrize(
    ("request_", "run_args", "host_requirements"),
    [
        (GpuRequest(count=-1), ["--shm-size=8g"], {"gpu": True}),
        (GpuRequest(count=2), ["--shm-size=8g", "--gpus", "2"], None),
        (GpuRequest(device_ids=("0", "2")), ["--shm-size=8g", "--gpus", '"device=0,2"'], None),
    ],
)
def test_gpu_requests(spec, validator, request_, run_args, host_requirements):
    config = devcontainer.devcontainer_config(dataclasses.replace(spec, gpus=request_), render(spec), [])
    assert config["runArgs"] == run_args
    assert config.get("hostRequirements") == host_requirements
    assert problems(validator, config) == []


def test_mount_sources_outside_home_and_project_stay_absolute_and_commas_are_quoted(make_project, tmp_path):
    elsewhere = tmp_path / "mnt" / "a,b"
    spec = load_spec(make_project(f'name = "m"\nmounts = ["{elsewhere}:/data"]\n', folder="m"))
    config = devcontainer.devcontainer_config(spec, render(spec), [])
    assert config["mounts"] == [f'"source={elsewhere}",target=/data,type=bind']


# Whose files: refusals, force, re-runs ---------------------------------------------------------------


def test_a_second_export_changes_nothing(spec):
    context = render(spec)
    devcontainer.export(spec, context)
    before = snapshot(spec.project / ".devcontainer")

    assert devcontainer.export(spec, render(spec)) == []
    assert snapshot(spec.project / ".devcontainer") == before


def test_a_foreign_devcontainer_json_is_refused(spec):
    folder = spec.project / ".devcontainer"
    folder.mkdir()
    (folder / "devcontainer.json").write_text('{\n  // mine\n  "name": "mine",\n  "image": "python:3.12",\n}\n')
    before = snapshot(folder)

    with pytest.raises(DeepboxError) as caught:
        devcontainer.export(spec, render(spec))

    assert caught.value.message == (
        f"{folder / 'devcontainer.json'} was not written by deepbox (it has no customizations.deepbox marker); "
        "move it away, or run `deepbox export devcontainer --force` to replace it."
    )
    assert snapshot(folder) == before, "nothing was written"


def test_an_unreadable_devcontainer_json_is_refused_too(spec):
    folder = spec.project / ".devcontainer"
    folder.mkdir()
    (folder / "devcontainer.json").write_text("{ not json")
    with pytest.raises(DeepboxError, match="was not written by deepbox"):
        devcontainer.export(spec, render(spec))
    assert sorted(path.name for path in folder.iterdir()) == ["devcontainer.json"]


def test_force_replaces_a_foreign_devcontainer_json(spec):
    folder = spec.project / ".devcontainer"
    folder.mkdir()
    (folder / "devcontainer.json").write_text('{"name": "mine", "image": "python:3.12"}')
    (folder / "Dockerfile").write_text("FROM python:3.12\n")

    written = devcontainer.export(spec, render(spec), force=True)

    assert folder / "devcontainer.json" in written
    assert folder / "Dockerfile" in written
    assert config_of(spec.project)["customizations"]["deepbox"]["box"] == "demo"
    assert devcontainer.export(spec, render(spec)) == [], "from now on the file is deepbox's"


def test_a_foreign_dockerfile_without_devcontainer_json_is_refused(spec):
    folder = spec.project / ".devcontainer"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM python:3.12\n")
    with pytest.raises(DeepboxError) as caught:
        devcontainer.export(spec, render(spec))
    assert caught.value.message.startswith(f"{folder / 'Dockerfile'} already exists and was not written by deepbox;")
    assert sorted(path.name for path in folder.iterdir()) == ["Dockerfile"]


def test_files_with_deepboxs_own_content_are_not_foreign(spec):
    context = render(spec)
    folder = spec.project / ".devcontainer"
    folder.mkdir()
    (folder / "Dockerfile").write_text(context.dockerfile)  # e.g. a devcontainer.json deleted by hand
    written = devcontainer.export(spec, context)
    assert folder / "Dockerfile" not in written
    assert folder / "devcontainer.json" in written


def test_deepboxs_own_file_with_the_users_comments_is_still_recognised(spec):
    devcontainer.export(spec, render(spec))
    path = spec.project / ".devcontainer" / "devcontainer.json"
    path.write_text("// a note\n" + path.read_text().replace('"init": true,', '"init": true, // why'))
    assert load_jsonc(path.read_text())["customizations"]["deepbox"]

    assert devcontainer.export(spec, render(spec)) == [path]
    assert "// a note" not in path.read_text(), "the generated file is replaced as a whole"


def test_files_no_longer_needed_are_removed(make_project):
    project = make_project(CONFIG + '[build]\nca_certificates = ["certs/corp.pem"]\n', folder="certs")
    (project / "certs").mkdir()
    (project / "certs" / "corp.pem").write_text(PEM_CERT)
    spec = load_spec(project)
    devcontainer.export(spec, render(spec))
    folder = project / ".devcontainer"
    assert (folder / "deepbox/certs/extra-0.crt").read_text() == PEM_CERT
    (folder / "notes.md").write_text("the user's own file\n")

    (project / "deepbox.toml").write_text(CONFIG)
    spec = load_spec(project)
    written = devcontainer.export(spec, render(spec))

    assert folder / "deepbox/certs/extra-0.crt" in written
    assert not (folder / "deepbox/certs").exists(), "the emptied folder is gone too"
    assert (folder / "notes.md").read_text() == "the user's own file\n", "a file deepbox never wrote stays"
    assert "deepbox/certs/extra-0.crt" not in config_of(project)["customizations"]["deepbox"]["files"]


def test_a_marker_never_makes_deepbox_delete_outside_its_folder(spec, tmp_path):
    devcontainer.export(spec, render(spec))
    path = spec.project / ".devcontainer" / "devcontainer.json"
    config = json.loads(path.read_text())
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (spec.project / "keep.txt").write_text("keep")
    config["customizations"]["deepbox"]["files"] += [str(victim), "../keep.txt", "deepbox/../../keep.txt"]
    path.write_text(json.dumps(config))

    devcontainer.export(spec, render(spec))

    assert victim.read_text() == "keep"
    assert (spec.project / "keep.txt").read_text() == "keep"


def test_a_file_where_the_folder_belongs_is_refused(spec):
    (spec.project / ".devcontainer").write_text("oops")
    with pytest.raises(DeepboxError, match="is a file, not a folder"):
        devcontainer.export(spec, render(spec))
