"""Load: a sample of bench/load.py's run. Several boxes brought up at once under one HOME all answer
through their own aliases on distinct ports, and `rm --volumes` leaves nothing; DEEPBOX_LOAD_BOXES=N
changes the count."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from conftest import BASE_IMAGE, CA_BUNDLE, PREFIX

_spec = importlib.util.spec_from_file_location("bench_load", Path(__file__).parents[2] / "bench" / "load.py")
assert _spec is not None and _spec.loader is not None
load = importlib.util.module_from_spec(_spec)
sys.modules["bench_load"] = load
_spec.loader.exec_module(load)


def test_concurrent_boxes_all_answer_on_their_own_ports_and_leave_nothing(docker_client):
    count = int(os.environ.get("DEEPBOX_LOAD_BOXES", "5"))
    figures = load.run(count, BASE_IMAGE, CA_BUNDLE, prefix=f"{PREFIX}-load")
    print(figures)
    assert figures["problems"] == []
    assert figures["boxes"] == count and figures["idle_memory_mib_max"] > 0
