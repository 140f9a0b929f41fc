"""Faults: `up` and `rm` SIGKILLed at random moments (a sample of bench/faults.py's full run), a failing
build next to a running box, and a full disk under deepbox's own files.

The seed of the kill sample is printed (pytest -s shows it); DEEPBOX_FAULTS_SEED=N repeats a run and
DEEPBOX_FAULTS_TRIALS=N changes its size.
"""

from __future__ import annotations

import importlib.util
import os
import random
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BASE_IMAGE, CA_BUNDLE

_spec = importlib.util.spec_from_file_location("bench_faults", Path(__file__).parents[2] / "bench" / "faults.py")
assert _spec is not None and _spec.loader is not None
faults = importlib.util.module_from_spec(_spec)
sys.modules["bench_faults"] = faults  # dataclasses look their module up by name
_spec.loader.exec_module(faults)


def _box(project, home: Path) -> faults.Box:
    box = faults.Box(project.path, home, project.name, BASE_IMAGE, CA_BUNDLE)
    box.write_config()
    return box


def test_sigkilled_up_and_rm_leave_nothing_broken(make_project, home):
    seed = int(os.environ.get("DEEPBOX_FAULTS_SEED") or secrets.randbelow(2**31))
    print(f"faults seed {seed}")
    box = _box(make_project("kill"), home)
    schedule = random.Random(seed)  # noqa: S311 (a reproducible schedule, not a secret)
    trials = faults.run_trials(box, int(os.environ.get("DEEPBOX_FAULTS_TRIALS", "4")), schedule)
    failed = [f"{t.command} killed at {t.delay:.2f} s: {'; '.join(t.problems)}" for t in trials if t.problems]
    assert not failed, f"seed {seed}: {failed}"


def test_a_failing_build_leaves_the_old_box_running_and_reachable(make_project, home):
    box = _box(make_project("badbuild"), home)
    assert box.run("up").returncode == 0
    config = (box.project / "deepbox.toml").read_text()
    (box.project / "deepbox.toml").write_text(
        config.replace("frameworks = []", 'frameworks = []\napt = ["no-such-package"]')
    )
    failed = box.run("up")
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: The image build failed at step ") and last.endswith(
        ".log) and run `deepbox up` again."
    ), failed.stderr
    assert "Fix that step's input (see the log above; all of it is in " in last
    assert box.ssh("echo still-here").stdout.strip() == "still-here"


@pytest.fixture
def small_home(tmp_path) -> Path:
    """HOME on a 64 KiB tmpfs (root only): room for deepbox's files, then filled up by the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small-home"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_home_is_one_sentence_and_keeps_the_old_files(make_project, small_home, tmp_path):
    box = _box(make_project("fulldisk"), small_home)
    box.env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")  # the lock's resolver cache would fill 64 KiB alone
    first = box.run("up")
    assert first.returncode == 0, first.stderr
    subprocess.run(["ssh", "-F", str(small_home / ".ssh" / "config"), "-O", "exit", box.alias], capture_output=True)
    owned = small_home / ".local" / "share" / "deepbox" / "ssh_config"
    before = {path: path.read_bytes() for path in small_home.rglob("*") if path.is_file()}
    with (small_home / "filler").open("wb", buffering=0) as filler, pytest.raises(OSError):  # every free block
        while True:
            filler.write(b"\0" * 4096)
    again = box.run("up")
    assert again.returncode == 1
    assert again.stderr.replace("\n", "") == (
        f"Error: The disk that holds {owned} is full; free some space there and run the command again (the file "
        "deepbox was writing is unchanged)."
    )
    after = {path: path.read_bytes() for path in small_home.rglob("*") if path.is_file() and path.name != "filler"}
    assert after == before  # nothing half-written, no temp file left
    (small_home / "filler").unlink()
    assert box.ssh().returncode == 0
    subprocess.run(["ssh", "-F", str(small_home / ".ssh" / "config"), "-O", "exit", box.alias], capture_output=True)
