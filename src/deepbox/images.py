"""Box images on the engine (`deepbox images`, `deepbox prune`): which image each box uses, which are
superseded by a newer spec or left behind by a removed box, and removing those.

`up` builds `deepbox/NAME:SPEC_HASH`; a changed spec builds a new tag and a removed box leaves its
image. Nothing a container (running or stopped) was made from is ever removed, and snapshots
(`deepbox snapshot TAG`) only when asked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from deepbox.box import Reporter, box_lock
from deepbox.engine.base import LABEL_BOX, LABEL_PROJECT, Container, Image
from deepbox.errors import DeepboxError
from deepbox.site import Site

LABEL_SNAPSHOT = "deepbox.snapshot-of"

IN_USE = "in use"
SUPERSEDED = "superseded"
UNUSED = "unused"
SNAPSHOT = "snapshot"


@dataclass(frozen=True)
class BoxImage:
    name: str  # the tag to remove: deepbox/NAME:HASH, a snapshot's TAG, or the id of an untagged image
    image_id: str
    box: str
    project: str
    size: int  # bytes that removing it frees (layers other images share stay)
    created: str
    state: str  # in use | superseded | unused | snapshot
    why: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify(images: list[Image], boxes: list[Container], in_use: set[str], sizes: dict[str, int]) -> list[BoxImage]:
    """One row per name of each box image, with its state; pure, so the rules are testable alone."""
    current = {box.labels[LABEL_BOX]: box.image for box in boxes if LABEL_BOX in box.labels}
    rows = []
    for image in images:
        box = image.labels.get(LABEL_BOX, "")
        snapshot_of = image.labels.get(LABEL_SNAPSHOT)
        if snapshot_of is not None:
            names = list(image.tags)
        else:  # a tag someone else gave a box image is theirs: only deepbox's own are listed
            names = [tag for tag in image.tags if tag.startswith(f"deepbox/{box}:")]
            if not image.tags:
                names = [image.id]  # untagged: a rebuild moved its tag away
        for name in names:
            if image.id in in_use:
                state = IN_USE
                why = f"box {box} uses it" if current.get(box) == name else "a container uses it"
            elif snapshot_of is not None:
                state, why = SNAPSHOT, f"snapshot of box {snapshot_of}"
            elif box in current:
                state, why = SUPERSEDED, f"box {box} uses {current[box]}"
            else:
                state, why = UNUSED, f"no box named {box}"
            size = sizes.get(image.id, image.size)
            project = image.labels.get(LABEL_PROJECT, "")
            rows.append(BoxImage(name, image.id, box, project, size, image.created, state, why))
    return sorted(rows, key=lambda row: (row.box, row.created, row.name))


def removable(rows: list[BoxImage], snapshots: bool = False) -> list[BoxImage]:
    """What `prune` removes: superseded and unused images, and unused snapshots when asked."""
    gone = {SUPERSEDED, UNUSED} | ({SNAPSHOT} if snapshots else set())
    return [row for row in rows if row.state in gone]


def freed(rows: list[BoxImage]) -> int:
    """Bytes removing these frees: each image counted once, however many names it has."""
    return sum({row.image_id: row.size for row in rows}.values())


def human_size(size: int) -> str:
    """Decimal units, as `docker images` prints them."""
    amount = float(size)
    for unit in ("B", "kB", "MB"):
        if amount < 1000:
            return f"{amount:.0f} {unit}"
        amount /= 1000
    return f"{amount:.1f} GB"


def box_images(site: Site, box: str | None = None) -> list[BoxImage]:
    """The engine's box images (box `box`'s alone when given), each with its state."""
    engine = site.engine()
    rows = classify(engine.images(LABEL_BOX), engine.boxes(), engine.images_in_use(), engine.own_sizes())
    return [row for row in rows if box is None or row.box == box]


def prune(site: Site, rows: list[BoxImage], reporter: Reporter) -> list[BoxImage]:
    """Remove these images; returns the ones removed. Each box's go while its lock is held, after a
    second look: an `up` of that box running meanwhile may have come to use one of them. One the
    engine refuses stays, and the error names it after the others are gone."""
    engine = site.engine()
    removed, refused = [], []
    for name in sorted({row.box for row in rows}):
        with box_lock(name, reporter):
            now = {row.name: row.state for row in box_images(site, name)}
            for row in rows:
                if row.box != name or now.get(row.name, IN_USE) == IN_USE:
                    continue
                try:
                    engine.remove_image(row.name)
                except DeepboxError as exc:
                    refused.append(exc.message)
                    continue
                removed.append(row)
    if refused:
        raise DeepboxError(f"Removed {len(removed)} of {len(rows)} images. {' '.join(refused)}")
    return removed
