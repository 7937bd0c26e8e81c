"""A session's run history for an answer: its newest run records within a byte budget.

The older records are in runs.jsonl (gateway/sessions/files.py), which grows with every run: 5,000
runs with 20 KB of metadata each are 100 MB, and reading it whole for `GET /sessions/:id` froze
the event loop for half a second and cost 194 MB per request. So the answer is built in two
steps:

- `take` runs on the event loop: it converts the records still in meta.json (a few; the loop
  changes them during a run) newest first while they fit, and notes what is left of the budget
  and whether runs.jsonl is to be read.
- `read` runs in a worker thread on that snapshot only (nothing the loop changes): it reads
  runs.jsonl backwards, block by block, until the budget is filled, so its cost is the answer's
  size, not the file's.

A record in both files (a crash between the append and meta.json's write) is meta.json's; one in
runs.jsonl twice (moved again after such a crash) is listed once, as its last line has it.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from codex_gateway.v1 import sessions_pb2
from gateway.api.views import run_record
from gateway.sessions.codec import decode_run
from gateway.sessions.files import RUNS
from gateway.sessions.logs import lines_backwards
from gateway.sessions.model import Session

RECORD_OVERHEAD = 8
"""Bytes counted per record beyond its own: its tag and length in the answer, with room."""


@dataclass(frozen=True)
class Snapshot:
    """What `read` needs, taken on the loop: nothing in it is shared with the session."""

    newest: list[sessions_pb2.RunRecord]
    """meta.json's records that fit, oldest first."""
    ids: frozenset[str]
    """Run ids of meta.json's records: runs.jsonl's copies of them are not listed."""
    archive: Path | None
    """runs.jsonl, when there is one and room is left for its records."""
    room: int


def take(session: Session, max_bytes: int) -> Snapshot:
    """On the event loop: meta.json's records (newest first while they fit) and what is left."""
    records = session.runs
    ids = frozenset(r.run_id for r in records if r.run_id)
    chosen: list[sessions_pb2.RunRecord] = []
    used = 0
    for record in reversed(records):
        message = run_record(record)
        size = message.ByteSize() + RECORD_OVERHEAD
        if used + size > max_bytes:
            return Snapshot(chosen[::-1], ids, None, 0)
        chosen.append(message)
        used += size
    archived = session.error is None and bool(session.runs_archived)
    archive = session.files_dir / RUNS if archived else None
    return Snapshot(chosen[::-1], ids, archive, max_bytes - used)


def read(snapshot: Snapshot) -> list[sessions_pb2.RunRecord]:
    """In a worker thread: the newest records of the session that fit, oldest first."""
    if snapshot.archive is None:
        return snapshot.newest
    older: list[sessions_pb2.RunRecord] = []
    seen = set(snapshot.ids)
    used = 0
    for line in lines_backwards(snapshot.archive, max_line_bytes=snapshot.room):
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
        message = run_record(record)
        used += message.ByteSize() + RECORD_OVERHEAD
        if used > snapshot.room:
            break
        older.append(message)
    return [*older[::-1], *snapshot.newest]
