"""Sharing box images through a registry: the setting, the shared name, the pinned base, push/pull progress."""

from __future__ import annotations

import pytest

from deepbox import box, state
from deepbox.config import load_spec
from deepbox.engine import Image
from deepbox.engine.docker import transfer_line
from deepbox.errors import ConfigError, DeepboxError


@pytest.mark.parametrize(
    "registry", ["127.0.0.1:5000/team", "registry.example.com/ml-team", "localhost:5000/a/b", "ghcr.io/org/boxes"]
)
def test_a_registry_is_host_port_and_namespace(make_project, registry):
    project = make_project(f'registry = "{registry}"\n')
    assert load_spec(project).registry == registry


@pytest.mark.parametrize(
    "registry", ["team", "registry.example.com", "https://registry.example.com/team", "Registry.Example.com/Team"]
)
def test_a_registry_without_a_host_or_namespace_is_refused(make_project, registry):
    project = make_project(f'registry = "{registry}"\n')
    with pytest.raises(ConfigError) as info:
        load_spec(project)
    assert info.value.message == (
        f"{project / 'deepbox.toml'}: 'registry' must be \"host[:port]/namespace\" in lower case, such as "
        '"registry.example.com:5000/ml-team".'
    )


def test_no_registry_by_default(make_project):
    assert load_spec(make_project('name = "plain"\n')).registry == ""


def test_the_shared_name_is_the_registry_the_box_and_the_spec_hash():
    shared = box.registry_ref("127.0.0.1:5000/team/", "digits", "0123456789ab")
    assert shared == "127.0.0.1:5000/team/digits:0123456789ab"


@pytest.mark.parametrize(
    ("base", "digests", "pinned"),
    [
        ("python:3.12-slim", ("python@sha256:aa",), "python@sha256:aa"),
        ("python:3.12-slim", ("mirror.local/python@sha256:bb", "python@sha256:aa"), "python@sha256:aa"),
        ("localhost:5000/base", ("localhost:5000/base@sha256:cc",), "localhost:5000/base@sha256:cc"),
        ("deepbox/debian:bookworm", (), "deepbox/debian:bookworm"),  # built here: no registry digest
        ("python@sha256:dd", ("python@sha256:dd",), "python@sha256:dd"),
    ],
)
def test_a_base_from_a_registry_is_pinned_by_digest(base, digests, pinned):
    assert box.pinned_base(base, Image("sha256:1", digests=digests)) == pinned


def test_a_missing_base_is_recorded_by_name():
    assert box.pinned_base("python:3.12-slim", None) == "python:3.12-slim"


def test_progress_is_a_line_when_a_layer_is_done():
    chunks = [
        {"status": "The push refers to repository [127.0.0.1:5000/team/box]"},
        {"status": "Preparing", "progressDetail": {}, "id": "3f4e5a6b7c8d"},
        {"status": "Pushing", "progressDetail": {"current": 512, "total": 4096}, "id": "3f4e5a6b7c8d"},
        {"status": "Pushing", "progressDetail": {"current": 2048, "total": 4096}, "id": "3f4e5a6b7c8d"},
        {"status": "Pushed", "progressDetail": {}, "id": "3f4e5a6b7c8d"},
        {"status": "Layer already exists", "progressDetail": {}, "id": "0a1b2c3d4e5f"},
        {"status": "Downloading", "progressDetail": {"current": 1, "total": 9}, "id": "5d0b34257289"},
        {"status": "Pull complete", "progressDetail": {}, "id": "5d0b34257289"},
        {"status": "v1: digest: sha256:ee size: 1234"},
        {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": "sha256:ee", "Size": 1234}},
        {"status": "Pulling from team/box", "id": "v1"},
    ]
    lines = [line for chunk in chunks if (line := transfer_line(chunk)) is not None]
    assert lines == [
        "The push refers to repository [127.0.0.1:5000/team/box]",
        "3f4e5a6b7c8d: Pushed",
        "0a1b2c3d4e5f: Layer already exists",
        "5d0b34257289: Pull complete",
        "v1: digest: sha256:ee size: 1234",
        "v1: Pulling from team/box",
    ]


def test_how_an_image_came_is_remembered(home):
    assert state.image_source("deepbox/x:1") == "built"  # nothing recorded: made on this engine
    state.remember_image("deepbox/x:1", {"source": "pulled", "from": "r.example.com/t/x:1", "digest": "sha256:f"})
    state.remember_image("deepbox/y:2", {"source": "built", "base": "python@sha256:aa"})
    assert state.image_source("deepbox/x:1") == "pulled"
    assert state.image_record("deepbox/y:2") == {"source": "built", "base": "python@sha256:aa"}


def test_push_without_a_registry_is_one_sentence_before_any_engine_call(make_project):
    project = make_project('name = "solo"\n')
    with pytest.raises(DeepboxError) as info:
        box.push(load_spec(project), None, None)  # type: ignore[arg-type] - refused before either is used
    assert info.value.message == (
        f"No registry is set for box 'solo': add registry = \"host[:port]/namespace\" to {project / 'deepbox.toml'}, "
        'for example registry = "registry.example.com:5000/ml-team".'
    )
