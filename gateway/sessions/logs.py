"""Session log files: the writer a run appends through, and bounded tails read from the end.

A run's lines are written in arrival order and flushed line by line, then published on the live
feed with their end offset, so a follower that read the file first can skip what it already has.
Writes that fail (a full disk) are counted and reported, never allowed to kill the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gateway import regular_file
from gateway.clock import now_iso
from gateway.sessions import journal
from gateway.sessions.feed import FeedItem, LiveFeed
from gateway.sessions.files import EVENTS, STDERR, STDOUT, Session

log = logging.getLogger(__name__)
_BLOCK = 65_536
MAX_STDERR_LINE = 65_536  # bytes of a stderr line without end numbered as one item


class RunLog:
    """The append-only log files of one run, and the numbers (`seq`) of what it writes."""

    def __init__(
        self,
        session: Session,
        run_id: str,
        feed: LiveFeed | None = None,
        *,
        repaired: bool = False,
    ) -> None:
        """`repaired`: see journal.IndexWriter (raises journal.Unindexed without it when the
        files hold items the index does not number)."""
        self.run_id = run_id
        self._run_id_suffix = b',"run_id":' + json.dumps(run_id).encode() + b"}\n"
        self.write_errors = 0
        self._session_id = session.id
        self._feed = feed
        self._files: dict[str, BinaryIO] = {}
        self._offsets: dict[str, int] = {}
        self._index: journal.IndexWriter | None = None
        # stderr arrives in chunks: lines are numbered as they complete.
        self._stderr_line = bytearray()
        self._stderr_line_at = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        directory = session.files_dir
        try:
            for stream, name in (("stdout", STDOUT), ("stderr", STDERR), ("events", EVENTS)):
                handle = os.fdopen(regular_file.open_for_append(f"{directory}/{name}"), "ab")
                self._files[stream] = handle
                self._offsets[stream] = handle.seek(0, 2)
            self._stderr_line_at = self._offsets["stderr"]
            self._index = journal.IndexWriter(
                directory,
                {STDOUT: self._offsets["stdout"], STDERR: self._offsets["stderr"]}
                | {EVENTS: self._offsets["events"]},
                repaired=repaired,
            )
        except (OSError, journal.Unindexed):
            self.close()
            raise

    def _append(self, stream: str, data: bytes) -> int | None:
        """Buffered: the caller flushes before it next yields to the event loop, so a tail that
        reads the file (it can only run then) always finds every published item on disk. The
        offset the data starts at, or None when it could not be written."""
        handle = self._files[stream]
        try:
            handle.write(data)
        except OSError as exc:
            self._failed(stream, exc)
            return None
        start = self._offsets[stream]
        self._offsets[stream] += len(data)
        return start

    def _failed(self, what: str, exc: OSError) -> None:
        self.write_errors += 1
        if self.write_errors == 1:
            log.error("session %s: cannot write %s: %s", self._session_id, what, exc)

    def _number(self, kind: journal.Kind, start: int | None, length: int) -> int:
        if self._index is None:  # closed
            return 0
        seq = self._index.add(journal.Kind.LOST if start is None else kind, start or 0, length)
        self.last_seq = seq
        return seq

    def flush(self) -> None:
        """The data first, then its records: a record never points past what was written."""
        for stream, handle in self._files.items():
            try:
                handle.flush()
            except OSError as exc:
                self._failed(stream, exc)
        if self._index is not None:
            try:
                self._index.flush()
            except OSError as exc:
                self._failed(journal.INDEX, exc)

    def _publish(self, item: FeedItem) -> None:
        if self._feed is not None:
            self._feed.publish(self._session_id, item)

    def _followed(self) -> bool:
        """Whether anyone follows the session live: a line nobody follows is not made into a
        feed item at all (most lines of most runs; it is a good part of a line's cost)."""
        return self._feed is not None and self._feed.followers(self._session_id) > 0

    def start(self) -> int:
        """The run's START marker (its run_started notice); its seq."""
        marker = journal.start_marker(self.run_id, now_iso())
        start = self._append("stdout", b"\n\n" + marker + b"\n")
        seq = self._number(
            journal.Kind.RUN_STARTED, None if start is None else start + 2, len(marker)
        )
        self.first_seq = seq
        self.flush()
        self._publish(
            FeedItem("notice", "run_started", run_id=self.run_id, status="running", seq=seq)
        )
        return seq

    def stdout_line(self, text: str) -> None:
        data = text.encode() + b"\n"
        seq = self._number(journal.Kind.STDOUT, self._append("stdout", data), len(data) - 1)
        if self._followed():
            self._publish(FeedItem("stdout", text, run_id=self.run_id, seq=seq, size=len(text)))

    def event(self, event: dict[str, Any], raw: bytes | None = None) -> None:
        """`raw` is the event's own JSON line, when the caller has it: the run id is spliced in
        before its closing brace instead of encoding the event again."""
        raw = raw.strip() if raw is not None else b""
        if raw.endswith(b"}") and raw != b"{}":
            line = raw[:-1] + self._run_id_suffix
        else:
            line = json.dumps({**event, "run_id": self.run_id}).encode() + b"\n"
        seq = self._number(journal.Kind.EVENT, self._append("events", line), len(line) - 1)
        if self._followed():
            self._publish(
                # A parsed event weighs about twice its JSON; so does the Struct made from it.
                FeedItem("events", event=event, run_id=self.run_id, seq=seq, size=2 * len(line))
            )

    def stderr(self, chunk: bytes) -> None:
        """A chunk of codex's stderr, written as it came; each line it completes is an item."""
        start = self._append("stderr", chunk)
        if start is None:
            self._stderr_line.clear()
            self._stderr_line_at = self._offsets["stderr"]
        else:
            ended = 0
            while (newline := chunk.find(b"\n", ended)) >= 0:
                self._stderr_line += chunk[ended:newline]
                self._stderr_item()
                ended = newline + 1
                self._stderr_line_at = start + ended
            self._stderr_line += chunk[ended:]
            if len(self._stderr_line) >= MAX_STDERR_LINE:
                self._stderr_item()  # a line without end is numbered in pieces
                self._stderr_line_at = self._offsets["stderr"]
        self.flush()

    def _stderr_item(self) -> None:
        data = bytes(self._stderr_line)
        self._stderr_line.clear()
        if not data:
            return
        seq = self._number(journal.Kind.STDERR, self._stderr_line_at, len(data))
        if self._followed():
            text = data.decode(errors="replace")
            self._publish(FeedItem("stderr", text, run_id=self.run_id, seq=seq, size=len(data)))

    def end(self, status: str) -> int:
        """The run's END marker (its run_finished notice); its seq."""
        self._stderr_item()  # a last line without its newline
        marker = journal.end_marker(self.run_id, now_iso(), status)
        start = self._append("stdout", b"\n" + marker + b"\n")
        seq = self._number(
            journal.Kind.RUN_FINISHED, None if start is None else start + 1, len(marker)
        )
        self.flush()
        self._publish(
            FeedItem("notice", "run_finished", run_id=self.run_id, status=status, seq=seq)
        )
        return seq

    def close(self) -> None:
        self.flush()
        for handle in self._files.values():
            with contextlib.suppress(OSError):
                handle.close()
        if self._index is not None:
            ends = {STDOUT: self._offsets["stdout"], STDERR: self._offsets["stderr"]}
            ends[EVENTS] = self._offsets["events"]
            try:
                self._index.close(ends)
            except OSError as exc:
                self._failed(journal.INDEX, exc)
            self._index = None


def bounded_tail(path: Path, lines: int, *, max_bytes: int | None = None) -> tuple[list[str], bool]:
    """The last `lines` lines of the file, read backwards in blocks, and at most about
    `max_bytes` of them: the oldest lines that do not fit are left out (a last line longer than
    that alone is cut to its first `max_bytes`), so huge lines cost bounded memory; and whether
    lines (or a part of the last one) were left out for `max_bytes`."""
    if lines <= 0:
        return [], False
    try:
        handle = regular_file.open_for_reading(path)
    except OSError:  # missing, or not a regular file (NotRegularFile)
        return [], False
    with handle:
        stop = handle.seek(0, 2)
        start, cut = _tail_start(handle, lines, stop, max_bytes)
        handle.seek(start)
        if max_bytes is not None and stop - start > max_bytes:
            # Not one whole line fits: the first bytes of the last one.
            return [handle.read(max_bytes).decode(errors="ignore")], True
        data = handle.read(stop - start)
    return data.decode(errors="replace").splitlines()[-lines:], cut


def tail_start(handle: BinaryIO, lines: int, end: int) -> int:
    """The offset where the last `lines` lines before `end` begin (a final newline ends the
    last line, it does not start another). Only counts newlines: memory stays one block
    whatever the file holds."""
    return _tail_start(handle, lines, end, None)[0]


def _tail_start(handle: BinaryIO, lines: int, end: int, max_bytes: int | None) -> tuple[int, bool]:
    """`tail_start`; with `max_bytes`, the start of the oldest of those lines that still fits in
    so many bytes (that of the last line when none does), and whether any were left out."""
    position = end
    newlines = 0
    last_fitting = end  # a line start within max_bytes of the end
    while position > 0:
        size = min(_BLOCK, position)
        position -= size
        handle.seek(position)
        block = handle.read(size)
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) >= 0:
            at = position + index + 1
            if at == end:  # the newline that ends the last line
                continue
            newlines += 1
            if max_bytes is not None and end - at > max_bytes:
                return (last_fitting if last_fitting < end else at), True
            if newlines >= lines:
                return at, False
            last_fitting = at
    if max_bytes is not None and end > max_bytes:
        return (last_fitting if last_fitting < end else 0), True
    return 0, False


def lines_backwards(
    path: Path, *, max_line_bytes: int, block_bytes: int = _BLOCK
) -> Iterator[bytes]:
    """The file's lines, the last first, read from the end in blocks: the caller stops reading
    when it has what it needs, so the cost is what it takes, not the file's size. Empty lines
    and lines longer than `max_line_bytes` (never held whole) are skipped."""
    try:
        handle = regular_file.open_for_reading(path)
    except OSError:  # missing, or not a regular file (NotRegularFile)
        return
    with handle:
        position = handle.seek(0, 2)
        pending = b""  # the end of a line whose start is in an earlier block
        skipping = False  # that line is over the limit: dropped, up to its start
        while position > 0:
            size = min(block_bytes, position)
            position -= size
            handle.seek(position)
            parts = handle.read(size).split(b"\n")
            if len(parts) == 1:  # no line starts in this block
                if not skipping:
                    pending = parts[0] + pending
                    skipping = len(pending) > max_line_bytes
                    pending = b"" if skipping else pending
                continue
            line = b"" if skipping else parts[-1] + pending
            for candidate in (line, *reversed(parts[1:-1])):
                if candidate and len(candidate) <= max_line_bytes:
                    yield candidate
            pending = parts[0]
            skipping = len(pending) > max_line_bytes
            pending = b"" if skipping else pending
        if pending and not skipping:
            yield pending
