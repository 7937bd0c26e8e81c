"""A session's items, numbered: the index that gives every line, event and run notice its `seq`.

A session records four kinds of items in the reference's files: stdout lines and the RUN
START/END markers (its run notices) in stdout.log, stderr lines in stderr.log, codex events in
events.jsonl. The index beside them numbers them:

    items.idx    a 64-byte header: what the index covered when its last writer closed (the
                 record count and each file's size); then 16 bytes per item: record N, at
                 64 + (N - 1) * 16, is item N (kind, length, offset in its file)

- `seq` is per session, strictly increasing, and survives restarts: it is the record's place;
- reading "every item after N" is one read of the index from N on and one read of each file's
  span, whatever the session's size;
- the reference's files are unchanged: tools written for them still read them.

Writes (`IndexWriter`, one at a time per session: it holds an exclusive `flock` on the index
while a run writes): an item is appended to its file, then its record; both are flushed before
the event loop runs anything else (logs.RunLog), data first, so a record never points past what
was written, and whatever a reader was sent is on disk. A crash between the two leaves data
without records; a session written before the index existed has no index at all. Both are
found cheaply (the header disagrees with the files) and indexed by the next writer or reader
(`ensure_indexed`), file by file: nothing is lost, only the order across files is a guess.

A record whose item could not be written (a full disk) has kind LOST: readers skip it, and no
seq ever shifts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import struct
from collections.abc import Callable, Iterable
from enum import IntEnum
from pathlib import Path
from typing import Final

from gateway import regular_file
from gateway.sessions.feed import FeedItem
from gateway.sessions.files import EVENTS, STDERR, STDOUT

INDEX: Final = "items.idx"


class Kind(IntEnum):
    LOST = 0
    STDOUT = 1
    STDERR = 2
    EVENT = 3
    RUN_STARTED = 4
    RUN_FINISHED = 5


FILE_OF: Final = {
    Kind.STDOUT: STDOUT,
    Kind.STDERR: STDERR,
    Kind.EVENT: EVENTS,
    Kind.RUN_STARTED: STDOUT,
    Kind.RUN_FINISHED: STDOUT,
}
STREAM_OF: Final = {
    Kind.STDOUT: "stdout",
    Kind.STDERR: "stderr",
    Kind.EVENT: "events",
    Kind.RUN_STARTED: "notice",
    Kind.RUN_FINISHED: "notice",
}
NOTICE_OF: Final = {Kind.RUN_STARTED: "run_started", Kind.RUN_FINISHED: "run_finished"}
_RECORD = struct.Struct("<B3xIQ")  # kind, length, offset in its file
RECORD_BYTES: Final = _RECORD.size
_HEADER = struct.Struct("<8sQQQQ")  # magic, records, then stdout, stderr and events sizes
HEADER_BYTES: Final = 64
_MAGIC = b"cgitems1"
_SCAN_RECORDS = 4096  # records read at once when scanning the index backwards
CHUNK_ITEMS: Final = 512
CHUNK_BYTES: Final = 1024 * 1024
_START = re.compile(rb"===== RUN (\S+) START \S+ =====")
_END = re.compile(rb"===== RUN (\S+) END \S+ \[(\w+)\] =====")


def start_marker(run_id: str, stamp: str) -> bytes:
    """The line that opens a run in stdout.log (the reference's), without its newline."""
    return f"===== RUN {run_id} START {stamp} =====".encode()


def end_marker(run_id: str, stamp: str, status: str) -> bytes:
    return f"===== RUN {run_id} END {stamp} [{status}] =====".encode()


def last_seq(directory: Path) -> int:
    """The session's last item on disk (0: none). On the event loop this is also the last one
    published: the writer flushes before the loop runs anything else."""
    try:
        return _count((directory / INDEX).stat().st_size)
    except OSError:
        return 0


def _count(size: int) -> int:
    """The records an index of `size` bytes holds (a torn last one is not one)."""
    return max(0, size - HEADER_BYTES) // RECORD_BYTES


def _at(index: int) -> int:
    """Where the record of the item at 0-based `index` (seq `index + 1`) begins."""
    return HEADER_BYTES + index * RECORD_BYTES


# --- writing ------------------------------------------------------------------------------


class Unindexed(Exception):
    """The session's files hold items the index does not number yet: `ensure_indexed` first
    (in a worker thread: that reads what is unnumbered)."""


class IndexWriter:
    """The index of one session while a run writes it (whoever holds it writes alone).

    `sizes` are the data files' sizes as the run opened them (a new session's are all 0, and
    then nothing is read to know the index is complete); `repaired`: the caller has just run
    `ensure_indexed` while holding the session (a full disk may have kept it from recording
    that in the header)."""

    def __init__(self, directory: Path, sizes: dict[str, int], *, repaired: bool = False) -> None:
        self._fd = regular_file.open_for_update(f"{directory}/{INDEX}")
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # a reader indexing a crash's leftovers
            size = os.fstat(self._fd).st_size
            fresh = size == 0 and not any(sizes.values())
            if not (fresh or repaired or _consistent(directory, self._fd, sizes)):
                raise Unindexed(directory)
            if size < HEADER_BYTES:
                _write_header(self._fd, 0, dict.fromkeys(sizes, 0))
            self._next = _count(size) + 1
        except BaseException:
            os.close(self._fd)
            raise
        self._pending = bytearray()
        self._pending_from = self._next

    def add(self, kind: Kind, offset: int, length: int) -> int:
        """Number one item (its bytes already written at `offset`); its seq."""
        self._pending += _RECORD.pack(kind, length, offset)
        seq = self._next
        self._next += 1
        return seq

    def flush(self) -> None:
        """Write the pending records in place (an OSError is the caller's to count: the
        records stay missing, read as LOST, and later ones keep their places)."""
        if not self._pending:
            return
        data, at = bytes(self._pending), _at(self._pending_from - 1)
        self._pending.clear()
        self._pending_from = self._next
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, at)
            view, at = view[written:], at + written

    def close(self, ends: dict[str, int]) -> None:
        """Flush, record what the index covers (`ends`: each file's size), release the lock."""
        try:
            self.flush()
            _write_header(self._fd, self._next - 1, ends)
        finally:
            os.close(self._fd)  # the lock goes with it


def indexed(directory: Path) -> bool:
    """Whether the index numbers everything in the session's files, or a run that did so is
    writing them (a few stats: cheap enough for the event loop)."""
    try:
        handle = regular_file.open_for_reading(directory / INDEX)
    except FileNotFoundError:
        return not any(_sizes(directory).values())
    except OSError:
        return False
    with handle:  # closing it releases the lock taken below
        if _consistent(directory, handle.fileno()):
            return True
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True  # a run is writing: it numbered everything when it started
        return False


def ensure_indexed(directory: Path) -> None:
    """Index what a crash or an older gateway left unnumbered, unless a writer holds the
    session (it did that when it opened). Blocking: call it in a worker thread."""
    try:
        fd = regular_file.open_for_update(directory / INDEX)
    except OSError:
        return  # no session directory (yet): nothing to number
    try:
        if _consistent(directory, fd):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a run is writing: it indexed everything when it started
        if not _consistent(directory, fd):
            _repair(directory, fd)
    finally:
        os.close(fd)


def _sizes(directory: Path) -> dict[str, int]:
    sizes = {}
    for name in (STDOUT, STDERR, EVENTS):
        try:
            sizes[name] = (directory / name).stat().st_size
        except OSError:
            sizes[name] = 0
    return sizes


def _consistent(directory: Path, fd: int, sizes: dict[str, int] | None = None) -> bool:
    """Whether the index numbers everything in the files: its header says so, and the files
    (of `sizes`, or as they are now) and the index have not grown since."""
    size = os.fstat(fd).st_size
    if size < HEADER_BYTES:
        current = _sizes(directory) if sizes is None else sizes
        return size == 0 and not any(current.values())
    if (size - HEADER_BYTES) % RECORD_BYTES:
        return False
    magic, records, *ends = _HEADER.unpack(os.pread(fd, _HEADER.size, 0))
    if magic != _MAGIC or records != _count(size):
        return False
    current = _sizes(directory) if sizes is None else sizes
    return [current[STDOUT], current[STDERR], current[EVENTS]] == ends


def _write_header(fd: int, records: int, ends: dict[str, int]) -> None:
    """In place: 64 bytes in the first sector, written whole or, after a crash, stale, and then
    the next reader checks the files against the records themselves (`_repair` only ever adds
    what is missing). An OSError (a full disk) leaves it stale the same way."""
    header = _HEADER.pack(_MAGIC, records, ends[STDOUT], ends[STDERR], ends[EVENTS])
    with contextlib.suppress(OSError):
        os.pwrite(fd, header.ljust(HEADER_BYTES, b"\0"), 0)


def _repair(directory: Path, fd: int) -> None:
    """Number every item past the last one each file has a record for (the caller holds the
    index's lock). A torn last record (a crash inside a record's write) is dropped first."""
    count = _count(os.fstat(fd).st_size)
    os.ftruncate(fd, _at(count))  # a torn record, or a header never written, made whole
    sizes = _sizes(directory)
    indexed = _indexed_ends(fd, count, {n for n, s in sizes.items() if s})
    records = bytearray()
    for name in (STDOUT, STDERR, EVENTS):
        for kind, offset, length in _unnumbered(directory / name, name, indexed.get(name, 0)):
            records += _RECORD.pack(kind, length, offset)
    if records:
        os.pwrite(fd, bytes(records), _at(count))
    _write_header(fd, count + len(records) // RECORD_BYTES, sizes)


def _indexed_ends(fd: int, count: int, files: set[str]) -> dict[str, int]:
    """Where each file's last numbered item ends, scanning the index from its end."""
    ends: dict[str, int] = {}
    position = count
    while position > 0 and len(ends) < len(files):
        take = min(_SCAN_RECORDS, position)
        position -= take
        data = os.pread(fd, take * RECORD_BYTES, _at(position))
        for kind, length, offset in reversed(list(_RECORD.iter_unpack(data))):
            if kind in FILE_OF:
                ends.setdefault(FILE_OF[Kind(kind)], offset + length)
    return ends


def _unnumbered(path: Path, name: str, start: int) -> Iterable[tuple[Kind, int, int]]:
    """The items of a file from byte `start` on: one per non-empty line."""
    try:
        handle = regular_file.open_for_reading(path)
    except OSError:
        return
    with handle:
        handle.seek(start)
        offset = start
        for line in handle:
            length = len(line) - (1 if line.endswith(b"\n") else 0)
            if length:
                yield _kind_of(name, line[:length]), offset, length
            offset += len(line)


def _kind_of(name: str, line: bytes) -> Kind:
    if name == STDERR:
        return Kind.STDERR
    if name == EVENTS:
        return Kind.EVENT
    if _START.fullmatch(line):
        return Kind.RUN_STARTED
    if _END.fullmatch(line):
        return Kind.RUN_FINISHED
    return Kind.STDOUT


# --- reading ------------------------------------------------------------------------------


def tail_starts(
    directory: Path, until: int, lines: int, kinds: Iterable[Kind], budget: int
) -> dict[Kind, int]:
    """Where a tail of the last `lines` lines of each file begins, among items up to `until`
    (of the wanted `kinds`): per kind, the seq of its file's oldest line taken; at most about
    `budget` bytes of each file (the newest lines that fit; one always does). A file with
    none: `until + 1`."""
    wanted = set(kinds)
    files = {FILE_OF[kind] for kind in wanted}
    first = dict.fromkeys(files, until + 1)
    if lines > 0 and wanted:
        _scan_tail(directory, until, lines, wanted, files, first, budget)
    return {kind: first[FILE_OF[kind]] for kind in wanted}


def _scan_tail(
    directory: Path,
    until: int,
    lines: int,
    wanted: set[Kind],
    files: set[str],
    first: dict[str, int],
    budget: int,
) -> None:
    counts = dict.fromkeys(files, 0)
    sizes = dict.fromkeys(files, 0)
    try:
        handle = regular_file.open_for_reading(directory / INDEX)
    except OSError:
        return
    with handle:
        fd = handle.fileno()
        position = min(until, _count(os.fstat(fd).st_size))
        while position > 0 and files:
            take = min(_SCAN_RECORDS, position)
            position -= take
            data = os.pread(fd, take * RECORD_BYTES, _at(position))
            records = list(_RECORD.iter_unpack(data))
            for index in range(len(records) - 1, -1, -1):
                kind, length, _ = records[index]
                if kind not in wanted:
                    continue
                name = FILE_OF[Kind(kind)]
                if name not in files:
                    continue
                if counts[name] >= lines or (counts[name] and sizes[name] + length > budget):
                    files.discard(name)
                    continue
                counts[name] += 1
                sizes[name] += length
                first[name] = position + index + 1


def read_items(
    directory: Path,
    after: int,
    until: int,
    wanted: Callable[[Kind, int], bool],
    run_ids: dict[str, str | None],
    markers_as_lines_until: int = 0,
) -> tuple[list[FeedItem], int]:
    """The wanted items among seq `after + 1` to `until`, at most CHUNK_ITEMS of them or about
    CHUNK_BYTES, and the last seq looked at (the next call's `after`). `run_ids` carries the
    run a file's last item belonged to from one call to the next (stdout and stderr lines
    belong to the run whose START marker came last). Run markers up to seq
    `markers_as_lines_until` come as the stdout lines they are in stdout.log (a tail's last
    lines, as the file has them), later ones as run notices."""
    count = min(until - after, CHUNK_ITEMS)
    if count <= 0:
        return [], max(after, until)
    try:
        handle = regular_file.open_for_reading(directory / INDEX)
    except OSError:
        return [], until
    with handle:
        data = os.pread(handle.fileno(), count * RECORD_BYTES, _at(after))
    records = list(_RECORD.iter_unpack(data[: len(data) - len(data) % RECORD_BYTES]))
    if not records:
        return [], until
    chosen: list[tuple[int, Kind, int, int]] = []
    total = 0
    looked = after
    for index, (kind, length, offset) in enumerate(records):
        seq = after + index + 1
        looked = seq
        if kind == Kind.RUN_STARTED or (kind in FILE_OF and wanted(Kind(kind), seq)):
            # A run's START is read even when not wanted: it names the run of the lines after.
            chosen.append((seq, Kind(kind), length, offset))
            total += length
            if total >= CHUNK_BYTES:
                break
    spans = _read_spans(directory, chosen)
    items = []
    for seq, kind, length, offset in chosen:
        name = FILE_OF[kind]
        raw = spans.get(name, _EMPTY).take(offset, length)
        if raw is None:
            continue  # not (or no longer) on disk
        item = _item(seq, kind, raw, run_ids, as_line=seq <= markers_as_lines_until)
        if item is not None and wanted(kind, seq):
            items.append(item)
    return items, looked


class _Span:
    def __init__(self, start: int, data: bytes) -> None:
        self.start = start
        self.data = data

    def take(self, offset: int, length: int) -> bytes | None:
        begin = offset - self.start
        if begin < 0 or begin + length > len(self.data):
            return None
        return self.data[begin : begin + length]


_EMPTY = _Span(0, b"")


def _read_spans(directory: Path, chosen: list[tuple[int, Kind, int, int]]) -> dict[str, _Span]:
    """Per file, one read of the bytes from its first chosen item to the end of its last."""
    bounds: dict[str, tuple[int, int]] = {}
    for _, kind, length, offset in chosen:
        name = FILE_OF[kind]
        low, high = bounds.get(name, (offset, offset + length))
        bounds[name] = (min(low, offset), max(high, offset + length))
    spans = {}
    for name, (low, high) in bounds.items():
        try:
            handle = regular_file.open_for_reading(directory / name)
        except OSError:
            continue
        with handle:
            # Lines of one file follow each other: the span is about the items' own bytes.
            spans[name] = _Span(low, os.pread(handle.fileno(), high - low, low))
    return spans


def _item(
    seq: int, kind: Kind, raw: bytes, run_ids: dict[str, str | None], *, as_line: bool
) -> FeedItem | None:
    if kind == Kind.EVENT:
        try:
            event = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        run_id = event.get("run_id")
        run_id = run_id if isinstance(run_id, str) else None
        return FeedItem("events", event=event, run_id=run_id, seq=seq, size=len(raw))
    if kind in NOTICE_OF:
        match = (_START if kind == Kind.RUN_STARTED else _END).fullmatch(raw)
        if match is None:
            return None
        run_id = match.group(1).decode(errors="replace")
        status = match.group(2).decode() if kind == Kind.RUN_FINISHED else "running"
        run_ids["run"] = run_id if kind == Kind.RUN_STARTED else None
        if as_line:
            text = raw.decode(errors="replace")
            return FeedItem("stdout", text, run_id=run_id, seq=seq, size=len(raw))
        return FeedItem("notice", NOTICE_OF[kind], run_id=run_id, status=status, seq=seq)
    text = raw.decode(errors="replace")
    return FeedItem(STREAM_OF[kind], text, run_id=run_ids.get("run"), seq=seq, size=len(raw))


def run_at(directory: Path, seq: int, *, within: int = 16 * _SCAN_RECORDS) -> dict[str, str | None]:
    """The run that item `seq` belongs to, found by its START marker among the `within` items
    before it (the `run_ids` of a `read_items` that starts after `seq`); None between runs."""
    try:
        handle = regular_file.open_for_reading(directory / INDEX)
    except OSError:
        return {"run": None}
    with handle:
        fd = handle.fileno()
        position = min(seq, _count(os.fstat(fd).st_size))
        floor = max(0, position - within)
        while position > floor:
            take = min(_SCAN_RECORDS, position - floor)
            position -= take
            data = os.pread(fd, take * RECORD_BYTES, _at(position))
            for kind, length, offset in reversed(list(_RECORD.iter_unpack(data))):
                if kind == Kind.RUN_FINISHED:
                    return {"run": None}
                if kind == Kind.RUN_STARTED:
                    marker = _read_at(directory / STDOUT, offset, length)
                    match = _START.fullmatch(marker or b"")
                    return {"run": match.group(1).decode(errors="replace") if match else None}
    return {"run": None}


def _read_at(path: Path, offset: int, length: int) -> bytes | None:
    try:
        handle = regular_file.open_for_reading(path)
    except OSError:
        return None
    with handle:
        return os.pread(handle.fileno(), length, offset)
