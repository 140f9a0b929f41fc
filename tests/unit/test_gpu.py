"""GPU logic on recorded inputs: the gpus setting, nvidia-smi output, docker info, driver vs CUDA, doctor."""

from __future__ import annotations

import pytest

from deepbox import doctor, gpu
from deepbox.config import BoxConfig, resolve
from deepbox.engine import EngineInfo
from deepbox.engine.docker import _held_gpus as held_gpus
from deepbox.errors import ConfigError

H200 = "0, NVIDIA H200, 570.124.06, 143771 MiB\n"
TWO_V100 = "0, Tesla V100-SXM2-16GB, 470.182.03, 16160 MiB\n1, Tesla V100-SXM2-16GB, 470.182.03, 16160 MiB\n"
NO_DEVICES = "No devices were found\n"
INFO_NVIDIA = {"Runtimes": {"io.containerd.runc.v2": {}, "nvidia": {"path": "nvidia-container-runtime"}, "runc": {}}}
INFO_CDI = {"Runtimes": {"runc": {}}, "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"}]}
INFO_PLAIN = {"Runtimes": {"io.containerd.runc.v2": {}, "runc": {}}}


def spec_of(tmp_path, **settings):
    return resolve(BoxConfig(**settings), tmp_path, tmp_path / "deepbox.toml")


@pytest.mark.parametrize(
    ("value", "device", "count", "ids"),
    [
        (None, "cpu", 0, ()),
        ("auto", "cpu", 0, ()),
        ("auto", "cuda", -1, ()),
        (None, "cuda", -1, ()),
        ("all", "cpu", -1, ()),
        ("none", "cuda", 0, ()),
        (2, "cuda", 2, ()),
        ("3", "cuda", 3, ()),
        (["0", "2"], "cuda", 0, ("0", "2")),
        (["GPU-5f3c"], "cuda", 0, ("GPU-5f3c",)),
    ],
)
def test_gpus_setting(value, device, count, ids):
    request = gpu.parse_request(value, device)
    assert (request.count, request.device_ids) == (count, ids)


@pytest.mark.parametrize("value", ["lots", -1, ["0", "0"], [""]])
def test_bad_gpus_setting_is_one_sentence_naming_the_file(tmp_path, value):
    with pytest.raises(ConfigError) as caught:
        spec_of(tmp_path, gpus=value)
    assert str(tmp_path / "deepbox.toml") in caught.value.message
    assert "gpus" in caught.value.message


def test_gpus_true_in_the_file_is_refused(tmp_path):
    from deepbox.config import load_spec

    (tmp_path / "deepbox.toml").write_text("gpus = true\n")
    with pytest.raises(ConfigError) as caught:
        load_spec(tmp_path)
    assert "gpus" in caught.value.message


def test_docker_device_requests():
    assert gpu.parse_request(None, "cpu").docker() == []
    assert gpu.parse_request("all", "cpu").docker() == [{"count": -1, "capabilities": [["gpu"]]}]
    assert gpu.parse_request(["1"], "cpu").docker() == [{"count": 0, "device_ids": ["1"], "capabilities": [["gpu"]]}]


def test_status_reads_back_what_the_container_holds():
    assert held_gpus({"HostConfig": {"DeviceRequests": None}}) == ""
    assert held_gpus({"HostConfig": {"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]}}) == "all"
    ids = {"Count": 0, "DeviceIDs": ["0", "2"], "Capabilities": [["gpu"]]}
    assert held_gpus({"HostConfig": {"DeviceRequests": [ids]}}) == "0,2"


def test_gpus_change_the_container_not_the_image(tmp_path):
    from deepbox.box import _run_hash
    from deepbox.dockerfile import render

    cpu, with_gpu = spec_of(tmp_path), spec_of(tmp_path, gpus="all")
    assert render(cpu).spec_hash == render(with_gpu).spec_hash
    assert _run_hash(cpu, "img", "key") != _run_hash(with_gpu, "img", "key")


def test_parse_nvidia_smi():
    (h200,) = gpu.parse_nvidia_smi(H200)
    assert (h200.index, h200.name, h200.driver, h200.memory_mib) == ("0", "NVIDIA H200", "570.124.06", 143771)
    assert [g.index for g in gpu.parse_nvidia_smi(TWO_V100)] == ["0", "1"]
    assert gpu.parse_nvidia_smi(NO_DEVICES) == []
    assert gpu.parse_nvidia_smi("") == []


def test_nvidia_runtime_in_docker_info():
    assert gpu.nvidia_runtime(INFO_NVIDIA)
    assert gpu.nvidia_runtime(INFO_CDI)
    assert not gpu.nvidia_runtime(INFO_PLAIN)
    assert not gpu.nvidia_runtime({})


@pytest.mark.parametrize(
    ("driver", "cuda", "level"),
    [
        ("570.124.06", "12.8", "ok"),
        ("570.124.06", "12.4", "ok"),
        ("550.54.14", "12.4", "ok"),
        ("535.104.05", "12.4", "warning"),  # 12.x minor-version compatibility
        ("470.182.03", "12.4", "error"),
        ("570.124.06", "13.0", "error"),
    ],
)
def test_driver_verdict(driver, cuda, level):
    verdict = gpu.driver_verdict(driver, cuda)
    assert verdict.level == level
    if level != "ok":
        assert "driver" in verdict.message and cuda in verdict.message


def test_old_driver_names_the_newest_cuda_it_runs():
    assert 'cuda = "11.4"' in gpu.driver_verdict("470.182.03", "12.4").message


def levels(findings):
    return {finding.check: finding.level for finding in findings}


def test_doctor_cpu_box_needs_no_driver(tmp_path):
    assert levels(doctor.gpu_findings(spec_of(tmp_path), None, False)) == {"gpu": "ok"}


def test_doctor_cuda_box_without_driver_is_an_error(tmp_path):
    (finding,) = doctor.gpu_findings(spec_of(tmp_path, device="cuda"), None, False)
    assert finding.level == "error" and 'device = "cpu"' in finding.message


def test_doctor_cuda_box_with_driver_and_runtime(tmp_path):
    found = levels(doctor.gpu_findings(spec_of(tmp_path, device="cuda"), H200, True))
    assert found == {"gpu": "ok", "runtime": "ok"}


def test_doctor_missing_runtime(tmp_path):
    found = doctor.gpu_findings(spec_of(tmp_path, device="cuda"), TWO_V100, False)
    assert levels(found) == {"gpu": "ok", "runtime": "error"}
    assert "nvidia-ctk" in next(f.message for f in found if f.check == "runtime")


def test_nvidia_smi_with_and_without_compute_capability():
    (h200,) = gpu.parse_nvidia_smi("0, NVIDIA H200, 580.65.06, 143771 MiB, 9.0\n")
    assert h200.compute_capability == "9.0" and h200.driver == "580.65.06"
    assert gpu.parse_nvidia_smi(TWO_V100)[0].compute_capability is None, "drivers before ~510 cannot tell"
    assert "compute_cap" in gpu.NVIDIA_SMI and "||" in gpu.NVIDIA_SMI, "old drivers get the query without it"


def test_doctor_unknown_gpu_id(tmp_path):
    found = levels(doctor.gpu_findings(spec_of(tmp_path, gpus=["0", "3"]), TWO_V100, True))
    assert found["gpu-ids"] == "error"


def test_doctor_driver_without_gpus(tmp_path):
    assert levels(doctor.gpu_findings(spec_of(tmp_path, gpus="all"), NO_DEVICES, True)) == {"gpu": "error"}


def test_doctor_container_check():
    assert doctor.container_gpu_finding("GPU 0: NVIDIA H200 (UUID: GPU-1)\n").level == "ok"
    failed = doctor.container_gpu_finding(None, "could not select device driver")
    assert failed.level == "error" and "could not select device driver" in failed.message


def test_doctor_disk_and_port(tmp_path):
    gib = doctor.GIB
    assert doctor.disk_finding(100 * gib, "/var/lib/docker", "cpu").level == "ok"
    assert doctor.disk_finding(10 * gib, "/var/lib/docker", "cuda").level == "error"
    assert doctor.disk_finding(None, "/x", "cpu").level == "warning"
    fixed = spec_of(tmp_path, ssh={"port": 2222})
    assert doctor.port_finding(fixed, free=False, held_by_box=False).level == "error"
    assert doctor.port_finding(fixed, free=False, held_by_box=True).level == "ok"
    assert doctor.port_finding(spec_of(tmp_path), free=False, held_by_box=False).level == "ok"


def _info(kind: str, rootless: bool) -> EngineInfo:
    return EngineInfo(kind, "27.0", rootless, "/var/lib/docker", False, "x86_64", "unix:///run/user/1000/docker.sock")


def test_doctor_names_the_engine_and_what_rootless_means(tmp_path):
    (engine,) = doctor.engine_findings(_info("docker", False), spec_of(tmp_path))
    assert engine.message == "Docker 27.0 at unix:///run/user/1000/docker.sock answers."
    docker = dict((f.check, f) for f in doctor.engine_findings(_info("docker", True), spec_of(tmp_path)))
    assert (
        docker["rootless"].level == "ok"
        and "box user is root inside, which is you outside" in docker["rootless"].message
    )
    assert docker["engine"].message.startswith("rootless Docker 27.0")
    podman = dict((f.check, f) for f in doctor.engine_findings(_info("podman", True), spec_of(tmp_path)))
    assert "--userns=keep-id" in podman["rootless"].message
    named = doctor.engine_findings(_info("docker", True), spec_of(tmp_path, user={"name": "dev", "uid": 1000}))
    assert levels(named)["rootless"] == "warning", "a [user] of one's own writes files as a subordinate UID"


def run_verify(tmp_path, checks, previous=None):
    """The framework check exactly as `up` runs it in the box, here with this machine's python."""
    import json
    import os
    import subprocess
    import sys

    from deepbox.verify import _VERIFY

    done = subprocess.run(
        [sys.executable, "-c", _VERIFY, json.dumps(checks), json.dumps(previous)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_framework_check_counts_gpus_and_reuses_an_unchanged_result(tmp_path):
    (tmp_path / "fakegpu.py").write_text("__version__ = '1.2'\ndef count():\n    return 2\n")
    checks = [
        {"name": "counted", "module": "fakegpu", "gpu": "m.count()"},
        {"name": "yes-or-no", "module": "fakegpu", "gpu": "m.count() > 0"},
        {"name": "absent", "module": "no_such_module_here", "gpu": None},
    ]
    report = run_verify(tmp_path, checks)
    rows = {row["name"]: row for row in report["checks"]}
    assert (rows["counted"]["gpu"], rows["counted"]["gpu_count"], rows["counted"]["version"]) == (True, 2, "1.2")
    assert (rows["yes-or-no"]["gpu"], rows["yes-or-no"]["gpu_count"]) == (True, None)
    assert not rows["absent"]["ok"] and "ModuleNotFoundError" in rows["absent"]["error"]
    assert report["cached"] is False

    assert run_verify(tmp_path, checks, report)["cached"] is True
    (tmp_path / "another.py").write_text("")  # a package installed in the box changes the fingerprint
    assert run_verify(tmp_path, checks, report)["cached"] is False
    assert run_verify(tmp_path, checks[:1], report)["cached"] is False  # another set of frameworks


class _BoxPython:
    """The engine as the framework check uses it: `exec` runs the check with this machine's python (the
    box's Python path is tmp_path), `path_mtime_ns` answers from `mtimes`, the folders as the engine sees them."""

    def __init__(self, tmp_path):
        self.tmp_path, self.execs, self.mtimes = tmp_path, 0, {}

    def exec(self, container, command, user=""):
        import json
        import os
        import subprocess
        import sys

        self.execs += 1
        done = subprocess.run(
            [sys.executable, *command[1:]],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(self.tmp_path)},
        )
        report = json.loads(done.stdout.strip().splitlines()[-1])
        self.mtimes = dict(report["folders"])
        return done.returncode, done.stdout

    def path_mtime_ns(self, container, path):
        return self.mtimes.get(path)


def test_a_box_whose_python_folders_are_unchanged_keeps_its_check_without_running_python(tmp_path):
    from types import SimpleNamespace

    from deepbox.engine import Container
    from deepbox.verify import verify

    (tmp_path / "fakegpu.py").write_text("__version__ = '1.2'\n")
    frameworks = [SimpleNamespace(name="fake", module="fakegpu", gpu_check=None)]
    box, container, spec = _BoxPython(tmp_path), Container("c1", "box", "running", {}, "img"), spec_of(tmp_path)

    assert verify(box, container, spec, frameworks)[1][0].version == "1.2"
    assert box.execs == 1
    assert box.mtimes[str(tmp_path)] == tmp_path.stat().st_mtime_ns  # what the engine's stat reads
    python, checks = verify(box, container, spec, frameworks)
    assert box.execs == 1, "the engine finds every folder as the check left it: nothing runs in the box"
    assert (checks[0].ok, checks[0].version) == (True, "1.2")
    assert verify(box, container, spec, frameworks, trust_unchanged=False)[0] == python
    assert box.execs == 2, "asked not to trust it (up --check): the check runs"

    box.mtimes[str(tmp_path)] += 1  # a package installed or removed
    verify(box, container, spec, frameworks)
    assert box.execs == 3
    box.mtimes[str(tmp_path)] = None  # a folder gone, or an engine that cannot tell
    verify(box, container, spec, frameworks)
    assert box.execs == 4
    verify(box, container, spec, [SimpleNamespace(name="x", module="json", gpu_check=None)])
    assert box.execs == 5, "another set of frameworks is checked in the box"


# Recorded on an H200 host with driver 580 (bench/gpu_host_check.py): deepbox's own query, with compute_cap.
H200_DRIVER_580 = "0, NVIDIA H200, 580.159.04, 143771 MiB, 9.0\n"


def test_a_recorded_h200_host_gets_cuda_13_first():
    from deepbox import cudachoice

    (h200,) = gpu.parse_nvidia_smi(H200_DRIVER_580)
    assert (h200.driver, h200.memory_mib, h200.compute_capability) == ("580.159.04", 143771, "9.0")
    host = cudachoice.Host.of([h200])
    assert cudachoice.candidate_majors("auto", host) == ([13, 12, 11], [])
    assert gpu.driver_verdict(h200.driver, "13.0").level == "ok"
    # The same GPU on the 570 driver recorded above: CUDA 13 is left out, with the reason.
    majors, reasons = cudachoice.candidate_majors("auto", cudachoice.Host.of(gpu.parse_nvidia_smi(H200)))
    assert majors == [12, 11]
    assert reasons == ["CUDA 13 needs driver 580.65.06 or newer (the host has 570.124.06)"]
