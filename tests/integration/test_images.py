"""Image housekeeping on a real engine: `deepbox images` and `deepbox prune` on one small box.

Every check is scoped to this test's box (prune NAME), so images of other boxes on the engine are
never listed or removed here."""

from __future__ import annotations

import json
import socket

import docker.errors


def rows(project, *args: str) -> dict[str, str]:
    listed = project.deepbox("images", project.name, "--json", *args)
    assert listed.code == 0, listed.err
    return {row["name"]: row["state"] for row in json.loads(listed.out)}


def test_prune_removes_superseded_and_unused_images_and_keeps_the_used_one_and_snapshots(
    make_project, docker_client
) -> None:
    project = make_project("prune", "frameworks = []")
    up = project.deepbox("up", "--json")
    assert up.code == 0, up.err
    first = json.loads(up.out)["image"]
    assert rows(project) == {first: "in use"}

    # An up that builds the new spec and then stops (a fixed port taken) leaves a tag the box does not use.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        project.write_config(f'frameworks = []\npip = ["six"]\nports = ["{port}:8000"]')
        refused = project.deepbox("up")
    assert refused.code == 1
    (second,) = set(rows(project)) - {first}
    assert rows(project) == {first: "in use", second: "superseded"}

    snapshot = f"{project.name}-snap:1"
    assert project.deepbox("snapshot", snapshot).code == 0

    # A dry run lists what would go, and removes nothing.
    dry = project.deepbox("prune", project.name)
    assert dry.code == 0, dry.err
    last = dry.out.strip().splitlines()[-1]
    assert last.startswith("Would remove 1 image, ")
    assert last.endswith(f"Run `deepbox prune {project.name} --yes` to remove them.")
    dry_json = json.loads(project.deepbox("prune", project.name, "--json").out)
    assert dry_json["removed"] is False
    assert [row["name"] for row in dry_json["images"]] == [second]
    assert rows(project) == {first: "in use", second: "superseded", snapshot: "snapshot"}

    done = project.deepbox("prune", project.name, "--yes", "--json")
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert report["removed"] is True
    assert [row["name"] for row in report["images"]] == [second]
    assert rows(project) == {first: "in use", snapshot: "snapshot"}
    try:
        docker_client.images.get(second)
        raise AssertionError(f"{second} is still there")
    except docker.errors.ImageNotFound:
        pass
    assert docker_client.containers.get(project.alias).status == "running"

    # Once the box is gone its image is unused; the snapshot goes only with --snapshots.
    assert project.deepbox("rm").code == 0
    assert rows(project) == {first: "unused", snapshot: "snapshot"}
    assert project.deepbox("prune", project.name, "--yes").out.strip().startswith("Removed 1 image, ")
    assert rows(project) == {snapshot: "snapshot"}
    assert project.deepbox("prune", project.name, "--snapshots", "--yes").code == 0
    assert rows(project) == {}
    nothing = project.deepbox("prune", project.name)
    assert nothing.out.strip() == "Nothing to remove: every box image is in use or a snapshot."
