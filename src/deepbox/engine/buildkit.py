"""BuildKit's progress stream, read without a protobuf library.

The engine's /build with version=2 reports progress as `moby.buildkit.trace` messages: base64 of a
protobuf StatusResponse (github.com/moby/buildkit, api/services/control/control.proto). Only the few
fields a progress display needs are read; the wire format is small enough to read by hand.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

TRACE_ID = "moby.buildkit.trace"


@dataclass(frozen=True)
class Vertex:
    """A build step: its digest, name ("[3/9] RUN ..."), and whether it was cached, started, completed or failed."""

    digest: str
    name: str = ""
    cached: bool = False
    started: float | None = None
    completed: float | None = None
    error: str = ""


@dataclass(frozen=True)
class VertexStatus:
    """Progress inside a step: a download or an extraction, in bytes when total is known."""

    id: str
    vertex: str
    name: str = ""
    current: int = 0
    total: int = 0
    completed: float | None = None


@dataclass(frozen=True)
class VertexLog:
    vertex: str
    data: bytes


@dataclass(frozen=True)
class Status:
    vertexes: list[Vertex]
    statuses: list[VertexStatus]
    logs: list[VertexLog]


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field: an int for varints, bytes for length-delimited ones;
    fixed-width fields (none of the ones read here) are skipped."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            length, at = _varint(data, at)
            yield number, data[at : at + length]
            at += length
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _text(value: int | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else ""


def _timestamp(value: int | bytes) -> float | None:
    """A google.protobuf.Timestamp: seconds (1) and nanos (2)."""
    if not isinstance(value, bytes):
        return None
    parts = {number: item for number, item in _fields(value) if isinstance(item, int)}
    return parts.get(1, 0) + parts.get(2, 0) / 1e9


def _vertex(data: bytes) -> Vertex:
    found: dict[str, object] = {}
    for number, value in _fields(data):
        if number == 1:
            found["digest"] = _text(value)
        elif number == 3:
            found["name"] = _text(value)
        elif number == 4:
            found["cached"] = bool(value)
        elif number == 5:
            found["started"] = _timestamp(value)
        elif number == 6:
            found["completed"] = _timestamp(value)
        elif number == 7:
            found["error"] = _text(value)
    return Vertex(**found)  # type: ignore[arg-type]


def _vertex_status(data: bytes) -> VertexStatus:
    found: dict[str, object] = {"id": "", "vertex": ""}
    for number, value in _fields(data):
        if number == 1:
            found["id"] = _text(value)
        elif number == 2:
            found["vertex"] = _text(value)
        elif number == 3:
            found["name"] = _text(value)
        elif number == 4 and isinstance(value, int):
            found["current"] = value
        elif number == 5 and isinstance(value, int):
            found["total"] = value
        elif number == 8:
            found["completed"] = _timestamp(value)
    return VertexStatus(**found)  # type: ignore[arg-type]


def _vertex_log(data: bytes) -> VertexLog:
    vertex, message = "", b""
    for number, value in _fields(data):
        if number == 1:
            vertex = _text(value)
        elif number == 4 and isinstance(value, bytes):
            message = value
    return VertexLog(vertex, message)


def decode(aux: str) -> Status:
    """One trace message (the aux field, base64) as its vertexes, statuses and logs."""
    status = Status([], [], [])
    for number, value in _fields(base64.b64decode(aux)):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            status.vertexes.append(_vertex(value))
        elif number == 2:
            status.statuses.append(_vertex_status(value))
        elif number == 3:
            status.logs.append(_vertex_log(value))
    return status
