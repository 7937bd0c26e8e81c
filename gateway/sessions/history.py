"""A session's run history for an answer: its newest run records within a byte budget.

The older records are archived (runs.jsonl in the files store), and the archive grows with every
run: 5,000 runs with 20 KB of metadata each are 100 MB, and reading it whole for
`GET /sessions/:id` froze the event loop for half a second and cost 194 MB per request. So a
store answers `run_history(session, max_bytes=...)` in two steps:

- `take` runs on the event loop: it measures the records the session holds (a few; the loop
  changes them during a run) newest first while they fit, and notes what is left of the budget
  and whether the archive is to be read.
- `read` runs in a worker thread on that snapshot only (nothing the loop changes) and on the
  archive's lines, newest first, as the store reads them (backwards, block by block): it stops
  once the budget is filled, so its cost is the answer's size, not the archive's.

A record counts as its JSON text (as stored) plus RECORD_OVERHEAD; whoever converts the records
to another form bounds that form again (gateway/api/views.py). A record both held and archived
(a crash between the archive's append and meta.json's write) is the held one's; one archived
twice (moved again after such a crash) is listed once, as its last line has it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.sessions.codec import decode_run, encoded_size
from gateway.sessions.model import RunRecord

RECORD_OVERHEAD = 8
"""Bytes counted per record beyond its own: its tag and length in an answer, with room."""


@dataclass(frozen=True)
class Snapshot:
    """What `read` needs, taken on the loop: nothing in it is read by the worker thread but
    `ids`, `archive` and `room`."""

    newest: list[RunRecord]
    """The held records that fit, oldest first."""
    ids: frozenset[str]
    """Run ids of the held records: the archive's copies of them are not listed."""
    archive: Path | None
    """The archive, when there is one and room is left for its records."""
    room: int


def take(records: list[RunRecord], max_bytes: int, archive: Path | None) -> Snapshot:
    """On the event loop: the held records (newest first while they fit) and what is left."""
    ids = frozenset(r.run_id for r in records if r.run_id)
    chosen: list[RunRecord] = []
    used = 0
    for record in reversed(records):
        size = encoded_size(record) + RECORD_OVERHEAD
        if used + size > max_bytes:
            return Snapshot(chosen[::-1], ids, None, 0)
        chosen.append(record)
        used += size
    return Snapshot(chosen[::-1], ids, archive, max_bytes - used)


def read(snapshot: Snapshot, lines: Iterable[bytes]) -> list[RunRecord]:
    """In a worker thread: the newest records that fit, oldest first; `lines` are the archive's,
    the last first (none longer than `snapshot.room`)."""
    older: list[RunRecord] = []
    seen = set(snapshot.ids)
    used = 0
    for line in lines:
        document = None
        with contextlib.suppress(ValueError):  # a line torn by a crash costs only itself
            document = json.loads(line)
        if not isinstance(document, dict):
            continue
        record = decode_run(document)
        if record.run_id:
            if record.run_id in seen:
                continue
            seen.add(record.run_id)
        used += len(line) + RECORD_OVERHEAD
        if used > snapshot.room:
            break
        older.append(record)
    return [*older[::-1], *snapshot.newest]
