"""Locks against the real package indexes (PyPI through uv), and a box built from its lock on a real engine.

Resolving reads wheel metadata only, so even CUDA framework sets lock in seconds. This machine has
no GPU driver, so cuda = "auto" takes the newest CUDA major every framework resolves for.
"""

from __future__ import annotations

import json
import tomllib

import pytest

LOCKS = {
    "scientific-cpu": ('frameworks = ["scientific"]', "cpu", {"numpy", "scipy", "pandas", "scikit-learn"}),
    "pytorch-cuda": ('frameworks = ["pytorch"]\ndevice = "cuda"', "cuda13", {"torch", "nvidia-cuda-runtime"}),
    "tensorflow-cuda": ('frameworks = ["tensorflow"]\ndevice = "cuda"', "cuda12", {"tensorflow"}),
    "jax-cuda12": ('frameworks = ["jax"]\ndevice = "cuda"\ncuda = "12"', "cuda12", {"jax", "jax-cuda12-plugin"}),
    "jax-cuda13": ('frameworks = ["jax"]\ndevice = "cuda"\ncuda = "13"', "cuda13", {"jax", "jax-cuda13-plugin"}),
}


@pytest.mark.parametrize("case", sorted(LOCKS))
def test_real_locks(make_project, case):
    body, key, expected = LOCKS[case]
    project = make_project(f"lock-{case}", body)
    result = project.deepbox("lock", "--json", timeout=300)
    assert result.code == 0, result.err
    variant = json.loads(result.out)
    assert variant["key"] == key
    names = {package["name"] for package in variant["packages"]}
    assert expected <= names, expected - names
    assert all(len(package["sha256"]) == 64 and package["url"] for package in variant["packages"])
    assert variant["platform"] == "x86_64-manylinux_2_36" and variant["python"] == "3.11"
    nvidia = {name for name in names if name.startswith("nvidia-")}
    if key == "cpu":
        assert not nvidia
    else:
        major = key.removeprefix("cuda")
        assert variant["cuda"].startswith(major + ".")
        assert all(not name.endswith(("-cu11", "-cu12", "-cu13")) or name.endswith(f"-cu{major}") for name in nvidia)
    # Written to the project for the user to commit, and `--check` agrees with it.
    written = tomllib.loads((project.path / "deepbox.lock").read_text())
    assert set(written["variants"]) == {key}
    assert project.deepbox("lock", "--check").code == 0


REFUSED = {
    "tensorflow-cuda13": (
        'frameworks = ["tensorflow"]\ndevice = "cuda"\ncuda = "13.0"',
        ['cuda = "13.0" does not fit these frameworks', "tensorflow brings CUDA 12", 'set cuda = "12"'],
    ),
    "jax-past-0.10-on-3.11": (
        'frameworks = ["jax>=0.11"]\ndevice = "cuda"\ncuda = "13"',
        ["do not resolve for Python 3.11", "Python>=3.12"],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_real_refusals_are_one_sentence(make_project, case):
    body, words = REFUSED[case]
    project = make_project(f"refuse-{case.replace('.', '')}", body)
    result = project.deepbox("lock", timeout=300)
    assert result.code == 1
    first = next(line for line in result.err.splitlines() if line.startswith("Error:"))
    assert all(word in first for word in words), first
    assert "Traceback" not in result.err
    assert not (project.path / "deepbox.lock").exists()


def _freeze(project) -> list[str]:
    listed = project.ssh("uv pip list --format freeze")
    assert listed.code == 0, listed.err
    tools = {"pip", "setuptools", "uv"}
    return sorted(line.lower() for line in listed.out.split() if line.split("==")[0].lower() not in tools)


def test_a_box_is_built_from_its_lock(make_project, docker_client):
    project = make_project("locked", 'frameworks = ["scikit-learn", "tqdm"]\npip = ["six"]')
    first = project.deepbox("up", "--json")
    assert first.code == 0, first.err
    assert "Locked cpu" in first.err
    variant = tomllib.loads((project.path / "deepbox.lock").read_text())["variants"]["cpu"]
    locked = sorted(f"{package['name']}=={package['version']}" for package in variant["packages"])
    assert _freeze(project) == locked
    image = json.loads(first.out)["image"]
    assert json.loads(first.out)["lock"] == "cpu"

    # The same frameworks in another order: the same lock, Dockerfile and image.
    project.write_config('frameworks = ["tqdm", "scikit-learn"]\npip = ["six"]')
    again = project.deepbox("up", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["image"] == image and json.loads(again.out)["action"] == "running"
    assert "Locking" not in again.err

    # A hand-edited config: --check fails in one sentence; --frozen refuses to build it; nothing changed.
    project.write_config('frameworks = ["tqdm", "scikit-learn"]\npip = ["six", "rich"]')
    check = project.deepbox("lock", "--check")
    assert check.code == 1 and "no longer matches deepbox.toml" in check.err
    frozen = project.deepbox("up", "--frozen")
    assert frozen.code == 1 and "--frozen forbids locking again" in frozen.err
    assert docker_client.containers.get(project.alias).attrs["Config"]["Image"] == image

    # Without --frozen, up locks again, keeping every version that still fits, and says what moved.
    moved = project.deepbox("up", "--json")
    assert moved.code == 0, moved.err
    assert "+ rich" in moved.err
    new_variant = tomllib.loads((project.path / "deepbox.lock").read_text())["variants"]["cpu"]
    kept = {p["name"]: p["version"] for p in variant["packages"]}
    assert all(kept[p["name"]] == p["version"] for p in new_variant["packages"] if p["name"] in kept)
    assert "rich" in {line.split("==")[0] for line in _freeze(project)}
