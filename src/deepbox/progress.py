"""A build's progress for a person: one live display on a terminal (the steps running, each one's last
output line and elapsed time, cache hits, download sizes), one line a step otherwise (--plain, or
output that is not a terminal), and the whole log in a file.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from deepbox.model import BuildEvent

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

INTERNAL = "[internal]"  # BuildKit's own bookkeeping steps: in the log file, not on the screen


def size(count: int) -> str:
    """Bytes as a person reads them: 850 B, 12.3 MB, 1.4 GB."""
    value = float(count)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


@dataclass
class _Step:
    name: str
    started: float
    last_line: str = ""
    downloads: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (current, total)

    def downloaded(self) -> int:
        return sum(
            max(current, total) if total and current >= total else current for current, total in self.downloads.values()
        )


class BuildState:
    """What the events so far say: the steps running, and counts of the finished and cached ones."""

    def __init__(self) -> None:
        self.started = time.time()
        self.running: dict[str, _Step] = {}
        self.done = 0
        self.cached = 0
        self.downloaded = 0

    def apply(self, event: BuildEvent) -> str | None:
        """Take one event; the line to print for it, when it finishes a step."""
        if event.step.startswith(INTERNAL):
            return None
        if event.kind == "start":
            self.running[event.step] = _Step(event.step, event.at)
        elif event.kind == "output":
            self._step(event).last_line = event.text.strip()
        elif event.kind == "download":
            self._step(event).downloads[event.text] = (event.current, event.total)
        elif event.kind == "cached":
            self.running.pop(event.step, None)
            self.cached += 1
            return f"CACHED  {event.step}"
        elif event.kind in ("done", "error"):
            step = self.running.pop(event.step, None) or _Step(event.step, event.at)
            got = step.downloaded()
            self.downloaded += got
            fetched = f", {size(got)} downloaded" if got else ""
            if event.kind == "error":
                return f"FAILED  {event.step} ({event.at - step.started:.1f}s)"
            self.done += 1
            return f"DONE    {event.step} ({event.at - step.started:.1f}s{fetched})"
        return None

    def _step(self, event: BuildEvent) -> _Step:
        return self.running.setdefault(event.step, _Step(event.step, event.at))

    def summary(self, now: float) -> str:
        downloading = self.downloaded + sum(step.downloaded() for step in self.running.values())
        parts = [f"{now - self.started:.0f}s", f"{self.done} done", f"{self.cached} cached"]
        if downloading:
            parts.append(f"{size(downloading)} downloaded")
        return ", ".join(parts)


def plain(write: Callable[[str], None]) -> Callable[[BuildEvent], None]:
    """One line a step, when it ends (done, cached or failed)."""
    state = BuildState()

    def on_event(event: BuildEvent) -> None:
        line = state.apply(event)
        if line is not None:
            write(line)

    return on_event


@contextlib.contextmanager
def live(console: Console) -> Iterator[Callable[[BuildEvent], None]]:
    """The finished steps' lines above a live block of the running ones: each with its elapsed time and
    the last line it printed, and a footer with the build's time, counts and downloads."""
    from rich.live import Live
    from rich.spinner import Spinner
    from rich.table import Table
    from rich.text import Text

    state = BuildState()
    width = max(console.width - 4, 40)

    def view() -> RenderableType:
        now = time.time()
        table = Table.grid(padding=(0, 1))
        for step in list(state.running.values()):
            table.add_row(
                Spinner("dots"), Text(f"{step.name}"[: width - 12], style="bold"), Text(f"{now - step.started:.0f}s")
            )
            if step.last_line:
                table.add_row("", Text(step.last_line[: width - 4], style="dim"), "")
        table.add_row("", Text(state.summary(now), style="cyan"), "")
        return table

    with Live(get_renderable=view, console=console, refresh_per_second=8, transient=True) as display:

        def on_event(event: BuildEvent) -> None:
            line = state.apply(event)
            if line is not None:
                display.console.print(Text(f"  {line}", style="dim" if line.startswith("CACHED") else ""))

        yield on_event
    console.print(Text(f"  Built in {state.summary(time.time())}", style="dim"))


def log_writer(out: IO[str]) -> Callable[[BuildEvent], None]:
    """Every event as a line of the log file: the steps, all their output, the downloads' sizes."""

    def on_event(event: BuildEvent) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
        if event.kind == "output":
            out.write(f"{stamp} {event.step} | {event.text}\n")
        elif event.kind == "download":
            if event.total and event.current >= event.total:
                out.write(f"{stamp} {event.step} | downloaded {event.text} ({size(event.total)})\n")
        else:
            out.write(f"{stamp} {event.step} [{event.kind}]{f' {event.text}' if event.text else ''}\n")

    return on_event


@contextlib.contextmanager
def logged(path: Path, show: Callable[[BuildEvent], None]) -> Iterator[Callable[[BuildEvent], None]]:
    """`show` each event and write it to the log file at `path` (replaced: the last build's log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        write = log_writer(out)

        def on_event(event: BuildEvent) -> None:
            write(event)
            show(event)

        yield on_event
