"""The engine's build cache a bench run adds, and removing it at the end.

Build-cache records carry no labels, so a bench remembers the records there before it builds and
removes those that appeared since: layers built with `no_cache` or keyed on a run id are never reused,
and several runs of them would fill the disk (about 5 GB for a full build_compare run).
"""

from __future__ import annotations

from typing import Any

from deepbox.engine.docker import DockerEngine  # the benches build on Docker only

CHUNK = 64  # ids in one prune call's filter, which the engine takes as one regular expression


def record_ids(engine: DockerEngine) -> set[str]:
    api: Any = engine.client.api
    return {record["ID"] for record in api.df().get("BuildCache") or []}


def remove_new(engine: DockerEngine, before: set[str]) -> float:
    """Remove the unused build-cache records that are not in `before`; the GB freed. A parent record
    goes once its children have, so the calls repeat while they make progress."""
    api: Any = engine.client.api
    freed = 0
    left = sorted(record_ids(engine) - before)
    while left:
        for at in range(0, len(left), CHUNK):
            pattern = "^(" + "|".join(left[at : at + CHUNK]) + ")$"
            freed += api.prune_builds(filters={"id": pattern}).get("SpaceReclaimed") or 0
        still = sorted(record_ids(engine) - before)
        if len(still) == len(left):
            break  # in use (another build) or kept by the engine: leave them
        left = still
    return freed / 1e9
