"""`deepbox doctor` makes every check `up` makes, reports each, and never misdiagnoses: a bad base name,
a foreign bind address and an unknown framework are said to be what they are, even with no engine."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from deepbox import doctor
from deepbox.cli import main
from deepbox.config import load_spec
from deepbox.engine import Location
from deepbox.site import LocalSite, ServerSite

NO_ENGINE = Location("unix:///nonexistent.sock", "DOCKER_HOST")


def findings_of(project, capsys) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["-C", str(project), "doctor", "--json"])
    rows = json.loads(capsys.readouterr().out)
    return code, {row["check"]: row for row in rows}


def test_an_invalid_base_is_reported_as_such_not_as_an_engine_fault(make_project, capsys):
    project = make_project('base = "Debian:Bookworm"\n')
    code, found = findings_of(project, capsys)
    assert code == 1
    assert found["base"] == {
        "check": "base",
        "level": "error",
        "message": f'base = "Debian:Bookworm" in {project / "deepbox.toml"} is not an image reference: write it as '
        "[REGISTRY/]NAME[:TAG], the name in lowercase letters, digits and . _ - (such as "
        '"debian:bookworm-slim"); did you mean "debian:bookworm"?',
    }
    assert found["frameworks"]["level"] == "ok"
    assert "build" not in found  # the Dockerfile's FROM would be that name


def test_a_bind_address_of_another_machine_is_not_a_taken_port(make_project, capsys):
    project = make_project('[ssh]\nbind = "10.99.99.99"\nport = 2299\n')
    code, found = findings_of(project, capsys)
    assert code == 1
    assert found["port"]["message"] == (
        f'ssh.bind = "10.99.99.99" in {project / "deepbox.toml"} is not an address this machine can listen on '
        '(Cannot assign requested address); set it to "127.0.0.1" (the default), or to an address of one of its '
        "network interfaces."
    )


def test_an_unknown_framework_is_an_error(make_project, capsys):
    project = make_project('frameworks = ["pytorh"]\n')
    code, found = findings_of(project, capsys)
    assert code == 1
    assert found["frameworks"]["level"] == "error"
    assert found["frameworks"]["message"].startswith("Unknown framework 'pytorh'. Did you mean pytorch")


def test_without_an_engine_the_settings_are_still_checked(make_project, capsys):
    project = make_project('frameworks = ["numpy"]\n[build]\nca_certificates = ["missing.pem"]\n')
    code, found = findings_of(project, capsys)
    assert code == 1
    assert found["engine"]["level"] == "error"
    assert found["build"] == {
        "check": "build",
        "level": "error",
        "message": f"{project / 'deepbox.toml'}: cannot read the CA certificate file {project / 'missing.pem'} "
        "(No such file or directory); fix the path in build.ca_certificates.",
    }
    assert found["frameworks"] == {
        "check": "frameworks",
        "level": "ok",
        "message": "Frameworks numpy are in the catalog.",
    }
    assert found["tools"]["level"] == "ok"


def test_good_settings_render(make_project):
    spec = load_spec(make_project('frameworks = ["numpy"]\n'))
    (frameworks, build) = doctor.settings_findings(spec, None)
    assert (frameworks.level, build.level) == ("ok", "ok")
    assert build.message == (
        "The box's Dockerfile renders: its frameworks fit the settings (the base image is not read yet), and every "
        "file the settings name can be read."
    )


def test_python_too_old_for_a_framework_is_the_build_s_error(make_project):
    spec = load_spec(make_project('python = "3.6"\nframeworks = ["pytorch"]\n'))
    found = {finding.check: finding for finding in doctor.settings_findings(spec, None)}
    assert found["build"].level == "error"
    assert "not the box's Python 3.6" in found["build"].message


def test_missing_ssh_client_is_an_error_and_rsync_a_server_box_s_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing is installed
    (local,) = doctor.tools_findings(LocalSite(NO_ENGINE))
    assert local == doctor.Finding(
        "tools",
        "error",
        "ssh and ssh-keygen are not installed here, and deepbox reaches its boxes with the OpenSSH client: install "
        "it (sudo apt-get install openssh-client) and run again.",
    )
    tools, rsync = doctor.tools_findings(ServerSite(Location("ssh://alice@gpu-server", "--host")))
    assert tools.level == "error"
    assert rsync == doctor.Finding(
        "rsync",
        "warning",
        "rsync is not installed here, and `deepbox sync` copies the project to the server with it: install it "
        "(sudo apt-get install rsync).",
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount only root can write needs root to make it")
def test_a_mount_the_box_user_cannot_write_is_a_warning(make_project, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    spec = load_spec(make_project(f'mounts = ["{data}:/data"]\n[user]\nname = "dev"\nuid = 4242\ngid = 4242\n'))
    found = doctor.mounts_findings(spec, LocalSite(NO_ENGINE))
    assert (
        doctor.Finding(
            "mounts",
            "warning",
            f"The box user dev (UID 4242) cannot write to {data}, which UID 0 owns: run `chown -R 4242:4242 {data}` or "
            "set [user] uid.",
        )
        in found
    )


def test_a_taken_fixed_port_names_its_holder(tmp_path):
    spec = dataclasses.replace(load_spec(tmp_path), ssh_port=2222)
    fixed = doctor.port_finding(spec, free=False, held_by_box=False, holder="nginx (process 7)")
    assert fixed.message == (
        "Port 127.0.0.1:2222 is taken by nginx (process 7); set ssh.port = 0 in deepbox.toml to let deepbox pick a "
        "free one, or stop that program."
    )


def test_a_name_the_engine_refuses_is_not_an_unreachable_engine():
    import docker.errors

    from deepbox.engine.docker import DockerEngine
    from deepbox.errors import DeepboxError

    class Images:
        def get(self, name: str) -> None:
            refusal = f"no such image: {name}: invalid reference format"
            raise docker.errors.APIError("400 Client Error", explanation=refusal)

    engine = DockerEngine.__new__(DockerEngine)
    engine.where = "unix:///var/run/docker.sock"
    with pytest.raises(DeepboxError) as raised:
        engine._find(Images(), "debian:bookworm slim")
    assert raised.value.message == (
        "The engine could not look up 'debian:bookworm slim': no such image: debian:bookworm slim: invalid reference "
        "format."
    )
