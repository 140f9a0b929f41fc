"""Which box images `deepbox images` calls in use, superseded, unused or snapshots, and what prune takes."""

from __future__ import annotations

from deepbox.engine.base import Container, Image
from deepbox.images import IN_USE, SNAPSHOT, SUPERSEDED, UNUSED, BoxImage, classify, freed, human_size, removable


def box_image(image_id: str, *tags: str, box: str = "demo", created: str = "2026-01-01", **labels: str) -> Image:
    return Image(image_id, tags=tags, size=1000, labels={"deepbox.box": box, **labels}, created=created)


def box(name: str, image: str) -> Container:
    return Container(f"c-{name}", f"deepbox-{name}", "exited", {"deepbox.box": name}, image)


def states(rows: list[BoxImage]) -> dict[str, tuple[str, str]]:
    return {row.name: (row.state, row.why) for row in rows}


def test_the_image_a_box_uses_is_in_use_and_its_older_tags_are_superseded() -> None:
    images = [
        box_image("sha:old", "deepbox/demo:aaa", created="2026-01-01"),
        box_image("sha:new", "deepbox/demo:bbb", created="2026-01-02"),
    ]
    rows = classify(images, [box("demo", "deepbox/demo:bbb")], {"sha:new"}, {})
    assert states(rows) == {
        "deepbox/demo:aaa": (SUPERSEDED, "box demo uses deepbox/demo:bbb"),
        "deepbox/demo:bbb": (IN_USE, "box demo uses it"),
    }
    assert [row.name for row in removable(rows)] == ["deepbox/demo:aaa"]


def test_an_image_any_container_uses_stays_even_when_its_box_is_gone() -> None:
    images = [box_image("sha:1", "deepbox/gone:aaa", box="gone"), box_image("sha:2", "deepbox/gone:bbb", box="gone")]
    rows = classify(images, [], {"sha:1"}, {})
    assert states(rows) == {
        "deepbox/gone:aaa": (IN_USE, "a container uses it"),
        "deepbox/gone:bbb": (UNUSED, "no box named gone"),
    }
    assert [row.name for row in removable(rows)] == ["deepbox/gone:bbb"]


def test_snapshots_go_only_when_asked_and_never_while_used() -> None:
    images = [
        box_image("sha:s1", "team/demo:v1", **{"deepbox.snapshot-of": "demo"}),
        box_image("sha:s2", "team/demo:v2", **{"deepbox.snapshot-of": "demo"}),
    ]
    rows = classify(images, [], {"sha:s2"}, {})
    assert states(rows) == {
        "team/demo:v1": (SNAPSHOT, "snapshot of box demo"),
        "team/demo:v2": (IN_USE, "a container uses it"),
    }
    assert removable(rows) == []
    assert [row.name for row in removable(rows, snapshots=True)] == ["team/demo:v1"]


def test_a_tag_someone_else_gave_a_box_image_is_not_ours_and_an_untagged_one_goes_by_id() -> None:
    images = [box_image("sha:1", "deepbox/demo:aaa", "mine:keep"), box_image("sha:2")]
    rows = classify(images, [], set(), {})
    assert states(rows) == {"deepbox/demo:aaa": (UNUSED, "no box named demo"), "sha:2": (UNUSED, "no box named demo")}


def test_sizes_are_what_removing_frees_each_image_counted_once() -> None:
    images = [box_image("sha:1", "team/a:1", "team/a:2", **{"deepbox.snapshot-of": "demo"}), box_image("sha:2")]
    rows = classify(images, [], set(), {"sha:1": 300, "sha:2": 50})
    assert [row.size for row in rows] == [50, 300, 300]
    assert freed(removable(rows, snapshots=True)) == 350


def test_human_size_uses_decimal_units_as_docker_does() -> None:
    assert [human_size(n) for n in (999, 1500, 2_400_000, 1_560_000_000)] == ["999 B", "2 kB", "2 MB", "1.6 GB"]
