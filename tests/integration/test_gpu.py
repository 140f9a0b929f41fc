"""GPUs and `deepbox doctor` on a real engine: refusals here, the real thing where a GPU exists."""

from __future__ import annotations

import json
import shutil

import pytest

HAS_NVIDIA_SMI = shutil.which("nvidia-smi") is not None


def nvidia_runtime(docker_client) -> bool:
    from deepbox.gpu import nvidia_runtime as has_runtime

    return has_runtime(docker_client.info())


def test_doctor_json_on_a_cpu_project(make_project):
    project = make_project("doctor")
    result = project.deepbox("doctor", "--json")
    assert result.code == 0, result.out + result.err
    findings = {row["check"]: row for row in json.loads(result.out)}
    assert findings["engine"]["level"] == "ok"
    assert findings["base"]["level"] == "ok"  # the tests' base image is on the engine
    assert findings["disk"]["level"] in ("ok", "warning")
    assert findings["gpu"]["level"] == "ok"


@pytest.mark.skipif(HAS_NVIDIA_SMI, reason="this host has an NVIDIA driver")
def test_doctor_reports_a_cuda_box_on_a_host_without_gpu(make_project):
    project = make_project("doctor-cuda", 'device = "cuda"')
    result = project.deepbox("doctor", "--json")
    assert result.code == 1
    gpu = next(row for row in json.loads(result.out) if row["check"] == "gpu")
    assert gpu["level"] == "error" and "NVIDIA driver" in gpu["message"]


def test_gpus_on_an_engine_without_nvidia_runtime_is_one_sentence(make_project, docker_client):
    if nvidia_runtime(docker_client):
        pytest.skip("this engine has the NVIDIA runtime")
    project = make_project("nogpu", 'gpus = "all"\nframeworks = ["numpy"]')
    result = project.deepbox("up")
    assert result.code == 1
    assert "NVIDIA Container Toolkit" in result.err and "Traceback" not in result.err
    assert docker_client.containers.list(all=True, filters={"label": f"deepbox.box={project.name}"}) == []


@pytest.mark.gpu
def test_box_with_gpus_sees_them(make_project, docker_client):
    if not (HAS_NVIDIA_SMI and nvidia_runtime(docker_client)):
        pytest.skip("needs an NVIDIA GPU, its driver and the NVIDIA container runtime")
    project = make_project("gpu", 'gpus = "all"\nframeworks = ["numpy"]\n[env]\nNVIDIA_DRIVER_CAPABILITIES = "all"')
    result = project.deepbox("up", "--json")
    assert result.code == 0, result.err
    listed = project.ssh("nvidia-smi -L")
    assert listed.code == 0, listed.err
    assert listed.out.startswith("GPU 0")
    status = json.loads(project.deepbox("status", "--json").out)
    assert next(row for row in status if row["box"] == project.name)["gpus"] == "all"
    doctor = project.deepbox("doctor", "--json")
    checks = {row["check"]: row["level"] for row in json.loads(doctor.out)}
    assert checks["runtime"] == "ok" and checks["container-gpu"] == "ok"
