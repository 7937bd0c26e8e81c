"""Detail: what `GET /sessions/:id` shows of a session's files, each part within a byte share.

An answer has a byte budget (CODEX_GATEWAY_MAX_ANSWER_BYTES); each part of the detail gets a
quarter of it (`share`): a tail of huge lines keeps its newest lines that fit, and says so (read
the rest with a tail or a search); the run history, the store's, its newest runs that fit in the
share (gateway/sessions/history.py). The files are read in a worker thread, which never reads the
session's meta (the loop changes it during a run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.sessions.files import EVENTS, STDERR, STDOUT, Session
from gateway.sessions.logs import bounded_tail


@dataclass(frozen=True)
class FilesDetail:
    """A session's files as its detail shows them."""

    lines: int
    """The tail length that was asked for."""
    share: int
    """The bytes each part may take of the answer."""
    stdout: str
    """The last lines of stdout.log as one text, with a marker when some were left out."""
    stderr: str | None
    """The same of stderr.log, when asked for."""
    events: list[dict[str, Any]] | None
    """The last events of events.jsonl that fit in the share of the log, when asked for."""
    events_omitted: int
    """How many of the events asked for were left out for size (at most; 0 when none was)."""


async def read_files(
    session: Session, *, lines: int, max_bytes: int, stderr: bool, events: bool
) -> FilesDetail:
    """The detail of `session`'s files for an answer of at most about `max_bytes`."""
    share = max_bytes // 4
    files = _Files(
        directory=session.files_dir,
        lines=lines,
        share=share,
        stderr=stderr,
        events=events,
    )
    return await asyncio.to_thread(files.read)


@dataclass(frozen=True)
class _Files:
    """What is read from a session's files, described on the loop (nothing in it is shared
    with the session), read in a worker thread."""

    directory: Path
    lines: int
    share: int
    stderr: bool
    events: bool

    def read(self) -> FilesDetail:
        share, lines = self.share, self.lines
        stdout = _bounded_tail(self.directory / STDOUT, lines, share)
        stderr = _bounded_tail(self.directory / STDERR, lines, share) if self.stderr else None
        events: list[dict[str, Any]] | None = None
        omitted = 0
        if self.events:
            events, omitted = _events_within(self.directory / EVENTS, lines, share)
        return FilesDetail(
            lines=lines,
            share=share,
            stdout=stdout,
            stderr=stderr,
            events=events,
            events_omitted=omitted,
        )


def _bounded_tail(path: Path, lines: int, max_bytes: int) -> str:
    """The last lines as one text, at most `max_bytes` of them, with a marker when lines that
    were asked for were left out for size."""
    kept, cut = bounded_tail(path, lines, max_bytes=max_bytes)
    if cut:
        note = f"[gateway: older lines omitted to keep this answer under {max_bytes} bytes; "
        kept = [note + "read them with GET /sessions/:id/tail or a search]", *kept]
    return "\n".join(kept)


def _events_within(path: Path, lines: int, max_bytes: int) -> tuple[list[dict[str, Any]], int]:
    """The last events that fit in `max_bytes` of the log, and how many of those asked for
    were left out for size (at most; 0 when none was)."""
    kept, cut = bounded_tail(path, lines, max_bytes=max_bytes)
    return parse_events(kept), (lines - len(kept) if cut else 0)


def parse_events(lines: list[str]) -> list[dict[str, Any]]:
    """The lines of events.jsonl that are JSON objects (a line torn by a crash is skipped)."""
    events = []
    for line in lines:
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                events.append(value)
    return events
