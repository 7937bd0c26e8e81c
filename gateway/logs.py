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
from gateway.feed import FeedItem, LiveFeed
from gateway.sessions import EVENTS, STDERR, STDOUT, Session, now_iso

log = logging.getLogger(__name__)
_BLOCK = 65_536


class RunLog:
    """The append-only log files of one run."""

    def __init__(self, session: Session, run_id: str, feed: LiveFeed | None = None) -> None:
        self.run_id = run_id
        self._run_id_suffix = b',"run_id":' + json.dumps(run_id).encode() + b"}\n"
        self.write_errors = 0
        self._session_id = session.id
        self._feed = feed
        self._files: dict[str, BinaryIO] = {}
        self._offsets: dict[str, int] = {}
        try:
            for stream, name in (("stdout", STDOUT), ("stderr", STDERR), ("events", EVENTS)):
                handle = os.fdopen(regular_file.open_for_append(session.files_dir / name), "ab")
                self._files[stream] = handle
                self._offsets[stream] = handle.seek(0, 2)
        except OSError:
            self.close()
            raise

    def _append(self, stream: str, data: bytes) -> int:
        """Buffered: the caller flushes before it next yields to the event loop, so a tail that
        reads the file (it can only run then) always finds every published item on disk."""
        handle = self._files[stream]
        try:
            handle.write(data)
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1:
                log.error("session %s: cannot write %s: %s", self._session_id, stream, exc)
            return self._offsets[stream]
        self._offsets[stream] += len(data)
        return self._offsets[stream]

    def flush(self) -> None:
        for stream, handle in self._files.items():
            try:
                handle.flush()
            except OSError as exc:
                self.write_errors += 1
                if self.write_errors == 1:
                    log.error("session %s: cannot write %s: %s", self._session_id, stream, exc)

    def _publish(self, item: FeedItem) -> None:
        if self._feed is not None:
            self._feed.publish(self._session_id, item)

    def start(self) -> None:
        self._append("stdout", f"\n\n===== RUN {self.run_id} START {now_iso()} =====\n".encode())
        self.flush()
        self._publish(FeedItem("notice", "run_started", run_id=self.run_id, status="running"))

    def stdout_line(self, text: str) -> None:
        offset = self._append("stdout", text.encode() + b"\n")
        self._publish(FeedItem("stdout", text, run_id=self.run_id, offset=offset, size=len(text)))

    def event(self, event: dict[str, Any], raw: bytes | None = None) -> None:
        """`raw` is the event's own JSON line, when the caller has it: the run id is spliced in
        before its closing brace instead of encoding the event again."""
        raw = raw.strip() if raw is not None else b""
        if raw.endswith(b"}") and raw != b"{}":
            line = raw[:-1] + self._run_id_suffix
        else:
            line = json.dumps({**event, "run_id": self.run_id}).encode() + b"\n"
        offset = self._append("events", line)
        self._publish(
            # A parsed event weighs about twice its JSON; so does the Struct made from it.
            FeedItem("events", event=event, run_id=self.run_id, offset=offset, size=2 * len(line))
        )

    def stderr(self, chunk: bytes) -> None:
        offset = self._append("stderr", chunk)
        self.flush()
        text = chunk.decode(errors="replace")
        self._publish(FeedItem("stderr", text, run_id=self.run_id, offset=offset))

    def end(self, status: str) -> None:
        self._append(
            "stdout", f"\n===== RUN {self.run_id} END {now_iso()} [{status}] =====\n".encode()
        )
        self._publish(FeedItem("notice", "run_finished", run_id=self.run_id, status=status))

    def close(self) -> None:
        for handle in self._files.values():
            with contextlib.suppress(OSError):
                handle.close()


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def tail(
    path: Path, lines: int, *, end: int | None = None, max_bytes: int | None = None
) -> list[str]:
    """The last `lines` lines of the file (up to byte `end`), read backwards in blocks, and at
    most about `max_bytes` of them: the oldest lines that do not fit are left out (a last line
    longer than that alone is cut to its first `max_bytes`), so huge lines cost bounded memory."""
    return bounded_tail(path, lines, end=end, max_bytes=max_bytes)[0]


def bounded_tail(
    path: Path, lines: int, *, end: int | None = None, max_bytes: int | None = None
) -> tuple[list[str], bool]:
    """`tail`, and whether lines (or a part of the last one) were left out for `max_bytes`."""
    if lines <= 0:
        return [], False
    try:
        handle = regular_file.open_for_reading(path)
    except OSError:  # missing, or not a regular file (NotRegularFile)
        return [], False
    with handle:
        stop = handle.seek(0, 2) if end is None else min(end, handle.seek(0, 2))
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
