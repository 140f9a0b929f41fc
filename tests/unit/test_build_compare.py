"""bench/build_compare.py: each run's Dockerfiles are its own, so no rebuild reuses an earlier run's layers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "bench"))  # as `python bench/build_compare.py` has it, for its sibling modules
_spec = importlib.util.spec_from_file_location("build_compare", ROOT / "bench" / "build_compare.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

BASE = "deepbox/debian:bookworm"


def test_both_dockerfiles_carry_the_run_right_after_from(tmp_path):
    ours = bench.deepbox_context(BASE, ["scikit-learn"], [], tmp_path, None)
    deepo = bench.deepo_context(BASE, "", tmp_path, None)
    run_line = f"ENV DEEPBOX_BENCH_RUN={bench.RUN}"
    for text in (ours.dockerfile, ours.plain_dockerfile, deepo.dockerfile):
        lines = text.splitlines()
        assert lines.count(run_line) == 1
        assert lines[lines.index(run_line) - 1] == f"FROM {BASE}"
    assert ours.buildkit and "--mount=type=cache" in ours.dockerfile, "the cache mounts stay as a user has them"


def test_deepbox_itself_never_writes_the_run_line(tmp_path):
    rendered = bench.render(bench.resolve(bench.BoxConfig(name="bench", frameworks=["scikit-learn"]), tmp_path, None))
    assert "DEEPBOX_BENCH_RUN" not in rendered.dockerfile
