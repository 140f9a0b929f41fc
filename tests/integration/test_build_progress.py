"""BuildKit builds with download caches, the classic builder when asked for, and what a person sees
of a build: one line a step off a terminal, the whole log in a file, a failure naming both."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from deepbox.paths import build_log


def _log(box: str) -> str:
    return build_log(box).read_text()  # the fixtures' HOME, as the deepbox processes have it


def _fetched_debs(log: str) -> set[str]:
    """The Debian packages apt downloaded: its "Get:N URL SUITE/COMPONENT ARCH NAME VERSION" lines."""
    return set(re.findall(r"\| Get:\d+ \S+ \S+/\S+ \S+ (\S+) ", log))


def test_a_rebuild_fetches_nothing_already_cached_and_shows_one_line_a_step(make_project, home):
    # A workspace of this run's own makes the apt and pip layers new, whatever earlier runs left cached.
    body = f'workspace = "/ws-{uuid.uuid4().hex[:8]}"\n'
    project = make_project("bkcache", body + 'apt = ["tree"]\npip = ["six"]')
    first = project.deepbox("up", "--plain")
    assert first.code == 0, first.err
    assert f"with BuildKit (log: {home}/.local/share/deepbox/builds/{project.name}.log)" in first.err
    done_line = r"\n  DONE    \[\d+/\d+\] RUN .*apt-get install .* tree( && [^\n]*)? \(\d+\.\ds"
    assert re.search(done_line, first.err), first.err
    assert "Unpacking tree " in _log(project.name)

    project.write_config(body + 'apt = ["tree", "libmagic-mgc"]\npip = ["six", "idna"]')
    second = project.deepbox("up", "--plain")
    assert second.code == 0, second.err
    log = _log(project.name)
    # Both layers ran again: apt unpacked tree without downloading it, uv fetched at most idna.
    assert "Unpacking tree " in log and "Unpacking libmagic-mgc " in log, log
    assert "tree" not in _fetched_debs(log), log
    assert re.search(r"\| Installed 2 packages", log), log
    assert not re.search(r"\| Prepared 2 packages", log), log


def test_the_classic_builder_still_builds_when_asked_for(make_project, home):
    project = make_project("classic")
    made = project.deepbox("up", "--plain", env={"DEEPBOX_BUILDER": "classic"})
    assert made.code == 0, made.err
    assert "with the classic builder" in made.err
    assert "--mount=" not in _log(project.name)
    assert re.search(r"(DONE|CACHED)  +Step 1/\d+ : FROM ", made.err), made.err


def test_a_failed_build_names_the_step_and_the_log_file(make_project, home):
    project = make_project("bkfail", 'apt = ["deepbox-test-no-such-package-xyz"]')
    failed = project.deepbox("up", "--plain")
    assert failed.code == 1
    log = f"{home}/.local/share/deepbox/builds/{project.name}.log"
    sentence = failed.err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"Error: The image build failed at step \d+/\d+ \(RUN mkdir -p /var/cache/deepbox-apt/partial .*\): "
        r"executor failed running .*: "
        rf"exit code: 100\. Fix that step's input \(see the log above; all of it is in {re.escape(log)}\) and run "
        r"`deepbox up` again\.",
        sentence,
    ), sentence
    assert "E: Unable to locate package deepbox-test-no-such-package-xyz" in failed.err
    assert "E: Unable to locate package deepbox-test-no-such-package-xyz" in Path(log).read_text()
    assert "Traceback" not in failed.err
