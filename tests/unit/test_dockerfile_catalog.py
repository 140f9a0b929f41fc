"""dockerfile.py with the catalog: golden Dockerfiles, layer order, CUDA/Python, project requirements.

Golden files live in tests/unit/golden/; after an intended change, regenerate them with
DEEPBOX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_dockerfile_catalog.py and review the diff.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from deepbox.baseimage import BaseFacts
from deepbox.config import load_spec
from deepbox.dockerfile import render, standalone
from deepbox.errors import ConfigError
from deepbox.lock import Variant
from deepbox.resolver import Package

GOLDEN = Path(__file__).parent / "golden"
USER = '[user]\nname = "alice"\nuid = 4321\ngid = 4322\n'
CASES = {
    "default": "",
    "subset": 'frameworks = ["scikit-learn", "xgboost", "lightgbm", "onnxruntime", "opencv-headless"]\n',
    "pytorch-cpu": 'frameworks = ["pytorch", "scikit-learn"]\npip = ["rich"]\n',
    "all-cuda": 'frameworks = ["all"]\ndevice = "cuda"\ncuda = "12.6"\n',
    "keras-jax": 'frameworks = ["keras"]\n',
    "darknet-boost": 'frameworks = ["darknet", "boost"]\nbase = "deepbox/debian:bookworm"\n',
    "caffe-bullseye": 'frameworks = ["caffe"]\nbase = "deepbox/debian:bullseye"\n',
    "python312": 'frameworks = ["numpy"]\npython = "3.12"\nbase = "deepbox/debian:bookworm"\n',
}


def runs(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("RUN ")]


# A Deepo-like base: frameworks in a conda Python 3.6 that is first on the image's PATH.
DEEPO = BaseFacts(
    image_id="sha256:deepo",
    path="/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    os="ubuntu",
    codename="bionic",
    python="3.6.9",
    python_path="/opt/conda/bin/python3",
    packages={"torch": "1.10.0", "numpy": "1.19.5"},
)


def check_golden(case: str, text: str) -> None:
    path = GOLDEN / f"{case}.Dockerfile"
    if os.environ.get("DEEPBOX_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.is_file(), f"no golden file {path.name}: run with DEEPBOX_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path.name} changed; review and regenerate with DEEPBOX_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_dockerfiles(make_project, case):
    project = make_project(CASES[case] + USER, folder="golden")
    check_golden(case, render(load_spec(project)).dockerfile)


def test_golden_dockerfile_on_a_base_that_has_frameworks(make_project):
    config = 'frameworks = ["pytorch", "tqdm"]\nbase = "ufoym/deepo:pytorch-py36-cpu"\n'
    text = render(load_spec(make_project(config + USER, folder="golden")), facts=DEEPO).dockerfile
    check_golden("deepo-base", text)
    assert "python3 -m venv --system-site-packages /opt/venv" in text
    assert "torch" not in "".join(runs(text)), "the base's torch is used, not installed again"
    assert "ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/opt/conda/bin:/usr/local/sbin:" in text
    assert "not read" not in text


def test_adding_a_library_keeps_the_heavy_layers(make_project):
    before = render(load_spec(make_project('frameworks = ["pytorch"]\n', folder="a"))).dockerfile
    after = render(load_spec(make_project('frameworks = ["pytorch", "xgboost"]\n', folder="b"))).dockerfile
    torch_layer = next(line for line in runs(before) if "torch==" in line)
    assert torch_layer in runs(after), "the PyTorch layer is unchanged, so the cache keeps it"
    assert runs(after).index(torch_layer) < next(i for i, line in enumerate(runs(after)) if "xgboost" in line)


def test_framework_system_packages_get_their_own_layer(make_project):
    text = render(load_spec(make_project('frameworks = ["lightgbm"]\n'))).dockerfile
    apt = [line for line in text.split("\nRUN ")[1:] if "apt-get install" in line]
    assert len(apt) == 2
    assert "libgomp1" in apt[1] and "libgomp1" not in apt[0]


def test_debian_frameworks_get_an_import_check_module(make_project):
    context = render(load_spec(make_project('frameworks = ["darknet"]\n')))
    assert "deepbox/checks/deepbox_check_darknet.py" in context.files
    assert "COPY deepbox/checks/ /tmp/deepbox-checks/" in context.dockerfile


def test_caffe_uses_the_system_site_packages(make_project):
    text = render(load_spec(make_project('frameworks = ["caffe"]\nbase = "debian:bullseye"\n'))).dockerfile
    assert "python3 -m venv --system-site-packages /opt/venv" in text


def test_another_python_than_the_base_is_a_managed_one(make_project):
    text = render(load_spec(make_project('python = "3.12"\nbase = "debian:bookworm"\n'))).dockerfile
    assert "uv venv --seed --python 3.12 /opt/venv" in text
    same = render(load_spec(make_project('python = "3.11"\nbase = "debian:bookworm"\n', folder="same"))).dockerfile
    assert "uv venv" not in same


def test_incompatible_python_fails_before_docker(make_project):
    with pytest.raises(ConfigError, match=r"Python 3.7-3.11"):
        render(load_spec(make_project('frameworks = ["mxnet"]\npython = "3.12"\n')))


# Project requirements --------------------------------------------------------------------------------------


def test_requirements_txt_is_the_last_layer(make_project):
    project = make_project('pip = ["rich"]\n')
    (project / "requirements.txt").write_text("httpx==0.27\n")
    context = render(load_spec(project))
    assert context.files["deepbox/requirements.txt"] == b"httpx==0.27\n"
    lines = context.dockerfile.splitlines()
    assert lines[-2] == "RUN uv pip install -r /tmp/deepbox-requirements.txt"
    assert lines[-1] == "USER root"
    assert lines.index("RUN uv pip install rich") < lines.index(lines[-2])


def test_pyproject_dependencies_when_there_is_no_requirements_txt(make_project):
    project = make_project('[project]\nname = "p"\ndependencies = ["rich>=13", "httpx"]\n', filename="pyproject.toml")
    context = render(load_spec(project))
    assert context.files["deepbox/requirements.txt"] == b"rich>=13\nhttpx\n"
    assert "# The project's requirements (pyproject.toml)" in context.dockerfile


def test_requirements_path_and_off(make_project):
    project = make_project('requirements = "env/dev.txt"\n')
    (project / "env").mkdir()
    (project / "env" / "dev.txt").write_text("rich\n")
    (project / "requirements.txt").write_text("ignored\n")
    assert render(load_spec(project)).files["deepbox/requirements.txt"] == b"rich\n"
    off = make_project('requirements = "off"\n', folder="off")
    (off / "requirements.txt").write_text("rich\n")
    assert "deepbox/requirements.txt" not in render(load_spec(off)).files
    missing = make_project('requirements = "nope.txt"\n', folder="missing")
    with pytest.raises(ConfigError, match=r"nope.txt"):
        render(load_spec(missing))


def test_changing_requirements_changes_only_the_last_layer(make_project):
    project = make_project()
    (project / "requirements.txt").write_text("rich\n")
    first = render(load_spec(project))
    (project / "requirements.txt").write_text("rich\nhttpx\n")
    second = render(load_spec(project))
    assert first.dockerfile == second.dockerfile
    assert first.spec_hash != second.spec_hash


# Without a project, like Deepo's generator -------------------------------------------------------------------


def test_standalone_dockerfile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "requirements.txt").write_text("rich\n")
    text = standalone(["pytorch", "keras"], cuda="12.4", python="3.11").dockerfile
    assert "https://download.pytorch.org/whl/cu124" in text
    assert "ENV KERAS_BACKEND=torch" in text
    assert "requirements" not in text.split("CMD []")[1], "no project, so no project requirements"
    with pytest.raises(ConfigError, match=r"Unknown CUDA version"):
        standalone(["pytorch"], cuda="10.2")
    with pytest.raises(ConfigError) as refused:
        standalone(["pytorch"], python="three")
    assert refused.value.message == "--python must be a version such as '3.11'."


def test_old_sdists_build_with_their_build_constraints(make_project):
    context = render(load_spec(make_project('frameworks = ["chainer"]\n')))
    assert context.files["deepbox/build-constraints.txt"] == b"setuptools<81\n"
    chainer = next(line for line in runs(context.dockerfile) if "chainer" in line)
    assert "--build-constraint /tmp/deepbox-build-constraints.txt" in chainer
    assert "build-constraint" not in render(load_spec(make_project(folder="plain"))).dockerfile


def _locked(*packages: tuple[str, str, str]) -> Variant:
    return Variant(
        "cpu", "digest", "3.11", "x86_64-manylinux_2_36", "", "", "", "2026-11-30T00:00:00Z", "uv 0.13.9",
        tuple(
            Package(name, version, tier, f"https://files.example/{name}-{version}-py3-none-any.whl", "ab" * 32)
            for name, version, tier in packages
        ),
    )  # fmt: skip


def test_golden_locked_dockerfile(make_project):
    project = make_project('frameworks = ["pytorch", "scikit-learn"]\npip = ["rich"]\n' + USER, folder="golden")
    (project / "requirements.txt").write_text("tqdm\n")
    variant = _locked(
        ("numpy", "2.4.6", "base"),
        ("torch", "2.13.0+cpu", "heavy"),
        ("sympy", "1.14.0", "heavy"),
        ("scikit-learn", "1.9.1", "library"),
        ("rich", "15.0.0", "pip"),
        ("tqdm", "4.70.1", "requirements"),
    )
    context = render(load_spec(project), lock=variant)
    check_golden("locked", context.dockerfile)
    steps = runs(context.dockerfile)
    assert not [step for step in steps if "==" in step and "uv pip install" in step], "no specifier is resolved"
    assert context.files["deepbox/lock/1-heavy.txt"].decode().splitlines() == [
        f"torch @ https://files.example/torch-2.13.0+cpu-py3-none-any.whl --hash=sha256:{'ab' * 32}",
        f"sympy @ https://files.example/sympy-1.14.0-py3-none-any.whl --hash=sha256:{'ab' * 32}",
    ]
    assert context.files["deepbox/lock/installed.txt"].decode().splitlines()[0] == "numpy==2.4.6"
    lines = context.dockerfile.splitlines()
    heavy_copy = lines.index("COPY --chown=4321:4322 deepbox/lock/1-heavy.txt /tmp/deepbox-lock/1-heavy.txt")
    assert lines[heavy_copy + 1] == "RUN uv pip install --no-deps --require-hashes -r /tmp/deepbox-lock/1-heavy.txt"
    assert "Not locked" not in context.dockerfile


def test_a_locked_change_of_the_project_s_packages_keeps_the_framework_layers(make_project):
    project = make_project('frameworks = ["pytorch"]\npip = ["rich"]\n' + USER)
    base = [("numpy", "2.4.6", "base"), ("torch", "2.13.0+cpu", "heavy")]
    before = render(load_spec(project), lock=_locked(*base, ("rich", "15.0.0", "pip")))
    after = render(load_spec(project), lock=_locked(*base, ("rich", "15.0.0", "pip"), ("six", "1.17.0", "pip")))
    assert before.files["deepbox/lock/1-heavy.txt"] == after.files["deepbox/lock/1-heavy.txt"]
    assert before.files["deepbox/lock/4-pip.txt"] != after.files["deepbox/lock/4-pip.txt"]
    heavy = before.dockerfile.split("# The SSH layer")[0]
    assert heavy == after.dockerfile.split("# The SSH layer")[0], "the layers above the project's are the same"


def test_a_locked_local_wheel_travels_alone_in_the_context(make_project, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"torch")
    (wheels / "other-1.0-py3-none-any.whl").write_bytes(b"other")
    project = make_project(f'frameworks = ["pytorch"]\n[build]\nfind_links = ["{wheels}"]\n' + USER)
    local = (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").resolve().as_uri()
    variant = dataclasses.replace(
        _locked(("numpy", "2.4.6", "base")),
        packages=(Package("torch", "2.13.0+cpu", "heavy", local, "cd" * 32),),
    )
    context = render(load_spec(project), lock=variant)
    assert sorted(name for name in context.files if name.startswith("deepbox/wheels/")) == [
        "deepbox/wheels/0/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    ]
    assert context.files["deepbox/lock/1-heavy.txt"].decode() == (
        "torch @ file:///tmp/deepbox-wheels/0/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl "
        f"--hash=sha256:{'cd' * 32}\n"
    )
