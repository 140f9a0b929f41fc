"""Several boxes of one project side by side: [box.cpu] and [box.other], brought up with --box, each its
own container, alias, environment and lock; the project's own box untouched without --box."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import PREFIX, Project, Result, remove_box

OWNER = (4242, 4243)
BOXES = """frameworks = ["numpy"]
[env]
WHICH = "top"
[box.cpu.env]
WHICH = "cpu"
[box.other]
apt = ["jq"]
[box.other.env]
WHICH = "other"
"""


def _ssh(project: Project, alias: str, command: str) -> Result:
    args = ["ssh", "-F", str(project.home / ".ssh" / "config"), "-o", "BatchMode=yes", alias, command]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def project(tmp_path_factory, home, docker_client):
    path = tmp_path_factory.mktemp("boxes") / "several"
    path.mkdir()
    made = Project(path, f"{PREFIX}-several", home)
    made.write_config(BOXES)
    os.chown(path, *OWNER)
    yield made
    for name in (made.name, f"{made.name}-cpu", f"{made.name}-other"):
        remove_box(docker_client, name)


def test_two_boxes_of_one_project_run_side_by_side(project, docker_client):
    ups = {}
    for box in ("cpu", "other"):
        result = project.deepbox("up", "--box", box, "--json")
        assert result.code == 0, result.err
        ups[box] = json.loads(result.out)
    cpu, other = f"{project.name}-cpu", f"{project.name}-other"
    assert (ups["cpu"]["box"], ups["cpu"]["alias"]) == (cpu, f"deepbox-{cpu}")
    assert (ups["other"]["box"], ups["other"]["alias"]) == (other, f"deepbox-{other}")

    # Each alias reaches its own box, with its own settings over the project's.
    assert _ssh(project, f"deepbox-{cpu}", "echo $WHICH; command -v jq || echo no-jq").out.split() == ["cpu", "no-jq"]
    assert _ssh(project, f"deepbox-{other}", "echo $WHICH; command -v jq").out.split() == ["other", "/usr/bin/jq"]
    # Each box locks its own packages; the project's box, never brought up, has neither lock nor container.
    assert sorted(path.name for path in project.path.glob("*.lock")) == ["deepbox.cpu.lock", "deepbox.other.lock"]
    assert docker_client.containers.list(all=True, filters={"label": f"deepbox.box={project.name}"}) == []

    listed = json.loads(project.deepbox("status", "--json").out)
    ours = {row["box"]: row for row in listed if row["project"] == str(project.path)}
    assert sorted(ours) == [cpu, other]
    assert {row["state"] for row in ours.values()} == {"running"}

    down = project.deepbox("down", "--box", "other")
    assert down.code == 0, down.err
    assert f"Box '{other}' stopped." in down.err
    states = {row["box"]: row["state"] for row in json.loads(project.deepbox("status", "--json").out)}
    assert (states[cpu], states[other]) == ("running", "exited")
    assert _ssh(project, f"deepbox-{cpu}", "echo $WHICH").out.split() == ["cpu"]

    # Without --box, commands act on the project's own box, which is not there.
    alone = project.deepbox("down")
    assert (alone.code, alone.err.strip().splitlines()[-1]) == (
        1,
        f"Error: There is no box named '{project.name}'; `deepbox status` lists the boxes, `deepbox up` makes one.",
    )
    check = project.deepbox("lock", "--check")
    assert (check.code, check.err.strip()) == (1, "Error: deepbox.lock is missing: run `deepbox lock` and commit it.")
