"""`deepbox doctor` against a real engine: the base image is read as `up` reads it, and what is wrong
in the settings is said to be that, not an engine fault, with the engine answering."""

from __future__ import annotations

import io
import json

from conftest import BASE_IMAGE, PREFIX


def findings(project) -> tuple[int, dict[str, dict[str, str]]]:
    result = project.deepbox("doctor", "--json", timeout=300)
    assert "Traceback" not in result.err
    return result.code, {row["check"]: row for row in json.loads(result.out)}


def test_a_base_that_is_not_debian_like_is_an_error(make_project, docker_client):
    tag = f"{PREFIX}-notdebian:1"
    recipe = f"FROM {BASE_IMAGE}\nRUN printf 'ID=fedora\\nID_LIKE=\"rhel centos\"\\n' > /etc/os-release\n"
    docker_client.images.build(fileobj=io.BytesIO(recipe.encode()), tag=tag, network_mode="none", rm=True)
    try:
        project = make_project("fedora")
        project.write_config(base=tag)
        code, found = findings(project)
        assert code == 1
        assert found["base"] == {
            "check": "base",
            "level": "error",
            "message": f"Base image '{tag}' is fedora, not Debian or Ubuntu based, and deepbox installs the box's SSH "
            "server with apt-get: set base in deepbox.toml to a Debian or Ubuntu based image.",
        }
    finally:
        docker_client.images.remove(tag, force=True)


def test_a_debian_base_and_good_settings_are_ok(make_project):
    code, found = findings(make_project("healthy"))
    assert code == 0, found
    assert found["base"]["message"].startswith(f"Base image {BASE_IMAGE} is on the engine: Debian bookworm, ")
    assert found["build"]["message"].startswith("The box's Dockerfile renders: its frameworks fit the base image's")
    assert {found[check]["level"] for check in ("engine", "frameworks", "build", "tools", "mounts", "port")} == {"ok"}


def test_bad_settings_are_named_while_the_engine_answers(make_project):
    project = make_project("badbase")
    project.write_config(base="Debian:Bookworm")
    code, found = findings(project)
    assert code == 1
    assert found["engine"]["level"] == "ok"
    assert found["base"]["message"].startswith('base = "Debian:Bookworm" in ')

    project.write_config('frameworks = ["pytorh"]\n[ssh]\nbind = "10.99.99.99"\nport = 2299')
    code, found = findings(project)
    assert code == 1
    assert found["frameworks"]["message"].startswith("Unknown framework 'pytorh'. Did you mean pytorch")
    assert found["port"]["message"].startswith('ssh.bind = "10.99.99.99" in ')
    assert "lock" not in found  # the unknown framework is said once
