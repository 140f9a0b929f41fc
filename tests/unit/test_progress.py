"""BuildKit's trace messages read by hand, and the plain one-line-a-step progress."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from deepbox import box, progress
from deepbox.config import load_spec
from deepbox.dockerfile import render
from deepbox.engine import BuildKitUnavailable, EngineInfo, buildkit, buildlog
from deepbox.engine.docker import DockerEngine, _BuildKitSteps
from deepbox.errors import DeepboxError
from deepbox.model import BuildContext, BuildEvent
from deepbox.paths import build_log

# A real /build?version=2 stream from Docker 20.10: FROM a local image, then a RUN that prints a line and fails.
TRACE = Path(__file__).parent / "data" / "buildkit_trace.jsonl"
RUN = "[2/2] RUN apt-get update -qq && echo hello-from-step && false"
FAILED = "executor failed running [/bin/sh -c apt-get update -qq && echo hello-from-step && false]: exit code: 1"


def _chunks() -> list[dict[str, object]]:
    return [json.loads(line) for line in TRACE.read_text().splitlines()]


def test_the_decoder_reads_vertexes_logs_and_errors_of_a_real_trace():
    decoded = [buildkit.decode(str(chunk["aux"])) for chunk in _chunks() if chunk.get("id") == buildkit.TRACE_ID]
    vertexes = [vertex for status in decoded for vertex in status.vertexes]
    logs = [log for status in decoded for log in status.logs]

    assert [vertex.name for vertex in vertexes if vertex.name.startswith("[")][-1] == RUN
    assert [log.data for log in logs] == [b"hello-from-step\n"]
    run = [vertex for vertex in vertexes if vertex.name == RUN]
    assert logs[0].vertex == run[0].digest
    assert run[0].started is None  # announced before it runs
    assert run[1].started is not None and run[1].completed is None
    assert run[-1].error == FAILED and run[-1].completed is not None
    assert not any(vertex.cached for vertex in vertexes)


def test_the_trace_becomes_steps_and_the_failing_step_s_tail():
    events: list[BuildEvent] = []
    steps = _BuildKitSteps(events.append)
    for chunk in _chunks():
        if "error" not in chunk:
            steps.feed(chunk)

    assert [(event.kind, event.text) for event in events if event.step == RUN] == [
        ("start", ""),
        ("output", "hello-from-step"),
        ("error", FAILED),
    ]
    assert steps.failed() == (RUN, ["hello-from-step"])
    assert buildlog.step_title(RUN) == "step 2/2 (RUN apt-get update -qq && echo hello-from-step && false)"


def _event(step: str, kind: str, at: float, text: str = "", current: int = 0, total: int = 0) -> BuildEvent:
    return BuildEvent(step, kind, text, current, total, at)


def test_plain_progress_prints_one_line_a_finished_step():
    lines: list[str] = []
    show = progress.plain(lines.append)
    for event in [
        _event("[internal] load build definition from Dockerfile", "start", 0.0),
        _event("[internal] load build definition from Dockerfile", "done", 0.1),
        _event("[1/3] FROM docker.io/library/debian:bookworm", "cached", 0.2),
        _event("[2/3] RUN apt-get install -y curl", "start", 1.0),
        _event("[2/3] RUN apt-get install -y curl", "output", 1.5, "Get:1 http://deb.debian.org curl"),
        _event("[2/3] RUN apt-get install -y curl", "download", 2.0, "sha256:ab", 2_500_000, 0),
        _event("[2/3] RUN apt-get install -y curl", "download", 2.5, "sha256:ab", 12_300_000, 12_300_000),
        _event("[2/3] RUN apt-get install -y curl", "done", 5.25),
        _event("[3/3] RUN false", "start", 6.0),
        _event("[3/3] RUN false", "error", 6.5, "exit code: 1"),
    ]:
        show(event)

    assert lines == [
        "CACHED  [1/3] FROM docker.io/library/debian:bookworm",
        "DONE    [2/3] RUN apt-get install -y curl (4.2s, 12.3 MB downloaded)",
        "FAILED  [3/3] RUN false (0.5s)",
    ]


def test_sizes_read_as_a_person_reads_them():
    assert [progress.size(n) for n in (850, 12_300_000, 1_400_000_000)] == ["850 B", "12.3 MB", "1.4 GB"]


def test_the_log_file_has_every_line_of_every_step(tmp_path):
    log = tmp_path / "builds" / "box.log"
    shown: list[BuildEvent] = []
    with progress.logged(log, shown.append) as on_event:
        on_event(_event("[2/3] RUN make", "start", 0.0))
        on_event(_event("[2/3] RUN make", "output", 0.5, "cc -o app app.c"))
    assert len(shown) == 2
    assert [line.split(" ", 1)[1] for line in log.read_text().splitlines()] == [
        "[2/3] RUN make [start]",
        "[2/3] RUN make | cc -o app app.c",
    ]


def test_step_titles_read_the_same_for_both_builders():
    assert buildlog.step_title("[stage-0 18/22] RUN mkdir -p /x  && apt-get update") == (
        "step 18/22 (RUN mkdir -p /x && apt-get update)"
    )
    assert buildlog.step_title("Step 3/9 : RUN uv pip install six") == "step 3/9 (RUN uv pip install six)"


def _engine_of(kind: str) -> DockerEngine:
    engine = DockerEngine.__new__(DockerEngine)
    engine.where = "test"
    engine._info = EngineInfo(kind, "1", False, "/x", False, "x86_64", "test")
    return engine


def test_docker_builds_with_buildkit_podman_and_deepbox_builder_classic_without(monkeypatch):
    monkeypatch.delenv("DEEPBOX_BUILDER", raising=False)
    assert (_engine_of("docker").builder(), _engine_of("podman").builder()) == ("buildkit", "classic")
    monkeypatch.setenv("DEEPBOX_BUILDER", "Classic")
    assert _engine_of("docker").builder() == "classic"
    monkeypatch.setenv("DEEPBOX_BUILDER", "buildah")
    with pytest.raises(DeepboxError) as raised:
        _engine_of("docker").builder()
    assert raised.value.message == (
        "DEEPBOX_BUILDER=buildah is not a builder deepbox knows; set it to buildkit or classic, or unset it."
    )


class _RefusingEngine:
    """An engine that refuses BuildKit, as one without it answers /build?version=2."""

    def __init__(self) -> None:
        self.built: list[tuple[bool, str]] = []

    def build(self, context: BuildContext, tag: str, *_args: object, **_options: object) -> None:
        if context.buildkit:
            raise BuildKitUnavailable("The engine at test does not build with BuildKit.")
        self.built.append((context.buildkit, tag))


class _Reporter:
    def __init__(self) -> None:
        self.steps: list[str] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def build_line(self, line: str) -> None:
        pass

    def build_progress(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext(lambda _event: None)


def test_an_engine_refusing_buildkit_gets_the_same_image_from_the_classic_builder(make_project):
    spec = load_spec(make_project('apt = ["curl"]'))
    engine, reporter = _RefusingEngine(), _Reporter()
    cached = render(spec, buildkit=True)
    tag = box.image_tag(spec, cached)

    box.build_image(engine, spec, cached, tag, {}, reporter, lambda: render(spec))  # type: ignore[arg-type]

    assert engine.built == [(False, tag)]
    log = build_log(spec.engine_name)
    assert reporter.steps == [
        f"Building image {tag} with BuildKit (log: {log})",
        "Note: The engine at test does not build with BuildKit. Building with the classic builder (no download "
        "caches).",
        f"Building image {tag} with the classic builder (log: {log})",
    ]
