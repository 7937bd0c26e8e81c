"""Cursors over a session's log (gateway/sessions/journal.py and tailing.py): every item a
session records has a seq, and a tail that resumes after the last seq it saw gets every later item
exactly once, in order, whether they were written while it was away, before a restart, or
while it catches up.

These run the real writer (logs.RunLog) on real files, the real live feed and the real tail;
no gateway process (tests/e2e/test_resume.py does the same through both protocols).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.sessions import journal, tailing
from gateway.sessions.feed import FeedItem, LiveFeed
from gateway.sessions.files import EVENTS, STDERR, STDOUT, FileSessionStore
from gateway.sessions.logs import RunLog
from gateway.sessions.model import Session
from gateway.sessions.tailing import Control, TailRequest

BUDGET = 8 * 1024 * 1024
Seen = tuple[int, str, str]  # seq, stream, text (or the event's JSON, or notice kind:status)


def _store(root: Path) -> FileSessionStore:
    store = FileSessionStore([root / "sessions"], root / "secure")
    store.load()
    return store


def _session(root: Path) -> tuple[FileSessionStore, Session]:
    store = _store(root)
    return store, store.create(secure=False)


def _seen(item: FeedItem | Control) -> Seen | None:
    if isinstance(item, Control):
        return None
    if item.stream == "events":
        event = dict(item.event or {})
        event.pop("run_id", None)
        return item.seq, "events", json.dumps(event, sort_keys=True)
    if item.stream == "notice":
        return item.seq, "notice", f"{item.text}:{item.status}"
    return item.seq, item.stream, item.text


async def _read(session: Session, feed: LiveFeed, **fields: Any) -> list[FeedItem | Control]:
    request = TailRequest(lines=fields.pop("lines", 200), stderr=True, events=True, **fields)
    return [
        item
        async for item in tailing.tail(
            session.id, lambda: session.files_dir, feed, request, budget=BUDGET
        )
    ]


async def _everything(session: Session, feed: LiveFeed) -> list[Seen]:
    items = await _read(session, feed, after_seq=0)
    return [seen for item in items if (seen := _seen(item)) is not None]


class _Writer:
    """Writes runs into a session the way the runner does: RunLog, flushed before each turn."""

    def __init__(self, store: FileSessionStore, session: Session, feed: LiveFeed) -> None:
        self.store, self.session, self.feed = store, session, feed
        self.log: RunLog | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        try:
            self.log = RunLog(self.session, f"run-{self.runs}", self.feed)
        except journal.Unindexed:  # as the runner does: number the leftovers, then write
            journal.ensure_indexed(self.session.files_dir)
            self.log = RunLog(self.session, f"run-{self.runs}", self.feed, repaired=True)
        self.log.start()
        if self.session.staging is not None:
            self.store.save(self.session)  # the first save moves the session into place

    def write(self, kind: str, n: int) -> None:
        assert self.log is not None
        if kind == "stdout":
            self.log.stdout_line(f"line {n}")
        elif kind == "event":
            event = {"type": "item.completed", "n": n}
            self.log.stdout_line(json.dumps(event))
            self.log.event(event, json.dumps(event).encode())
        else:
            self.log.stderr(f"err {n}\npart".encode())  # a line and the start of the next
        self.log.flush()

    def end(self, status: str = "completed") -> None:
        assert self.log is not None
        self.log.end(status)
        self.log.close()
        self.log = None


def _check_whole(received: list[Seen], everything: list[Seen]) -> None:
    seqs = [seq for seq, _, _ in received]
    assert seqs == sorted(set(seqs)), "a duplicate or an item out of order"
    assert received == everything, "an item lost, or changed"


async def test_seqs_number_every_item_in_order_and_keep_rising_across_runs(
    tmp_path: Path,
) -> None:
    store, session = _session(tmp_path)
    feed = LiveFeed()
    writer = _Writer(store, session, feed)
    for _ in range(3):
        writer.start()
        for n in range(5):
            writer.write(("stdout", "event", "stderr")[n % 3], n)
        writer.end()
        assert journal.last_seq(session.dir) > 0
    # A restart: a new store reads the same directory, and its next run's seqs follow on.
    store.close()
    store = _store(tmp_path)
    session = store.resolve(session.id)
    everything = await _everything(session, feed)
    assert [seq for seq, _, _ in everything] == list(range(1, len(everything) + 1))
    before = len(everything)
    writer = _Writer(store, session, feed)
    writer.start()
    writer.write("stdout", 99)
    writer.end()
    after = await _everything(session, feed)
    assert after[:before] == everything
    assert [s for s, _, _ in after[before:]] == list(range(before + 1, before + 4))
    assert after[-2][1:] == ("stdout", "line 99")
    kinds = [stream for _, stream, _ in everything]
    assert kinds.count("notice") == 6 and kinds.count("stderr") == 6  # with each last "part"


def test_a_new_sessions_first_run_leaves_its_index_complete(tmp_path: Path) -> None:
    """The first run writes in the staging directory, renamed under it by the first save: what
    the index covers is still recorded, so the next run checks it without reading the files."""
    store, session = _session(tmp_path)
    writer = _Writer(store, session, LiveFeed())
    writer.start()
    assert session.staging is None  # moved into place while the run writes
    writer.write("stdout", 1)
    writer.end()
    assert journal.indexed(session.dir)
    RunLog(session, "next", LiveFeed()).close()  # no journal.Unindexed


async def test_the_files_stay_the_references(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    writer = _Writer(store, session, LiveFeed())
    writer.start()
    writer.write("stdout", 1)
    writer.write("stderr", 2)
    writer.end()
    stdout = (session.dir / STDOUT).read_text()
    assert stdout.startswith("\n\n===== RUN run-1 START ") and "\nline 1\n" in stdout
    assert stdout.rstrip("\n").endswith("[completed] =====")
    assert (session.dir / STDERR).read_bytes() == b"err 2\npart"


@settings(max_examples=40, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.sampled_from(["stdout", "event", "stderr", "run"]), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    ),
    cuts=st.lists(st.integers(0, 12), min_size=1, max_size=8),
)
def test_any_split_and_any_interleaving_loses_and_repeats_nothing(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[str, int]], cuts: list[int]
) -> None:
    """A writer and a client that drops after `cuts[i]` items each time and resumes after the
    last seq it saw, with every interleaving of writes and reconnects the plan draws (the
    integer: how many turns the writer leaves the client before its next write): what the
    client receives is the session's log, whole, in order, once."""
    asyncio.run(_interleave(tmp_path_factory.mktemp("cursors"), plan, cuts))


async def _interleave(root: Path, plan: list[tuple[str, int]], cuts: list[int]) -> None:
    store, session = _session(root)
    feed = LiveFeed()
    writer = _Writer(store, session, feed)
    writer.start()
    done = asyncio.Event()

    async def write() -> None:
        for n, (kind, pause) in enumerate(plan):
            if kind == "run":
                writer.end()
                writer.start()
            else:
                writer.write(kind, n)
            for _ in range(pause):
                await asyncio.sleep(0)
        writer.end()
        done.set()

    received: list[Seen] = []

    def finished() -> bool:
        last = received[-1][0] if received else 0
        return done.is_set() and last == journal.last_seq(session.dir)

    async def read() -> None:
        attempt = 0
        while True:
            cut = cuts[attempt % len(cuts)]
            attempt += 1
            after = received[-1][0] if received else 0
            request = TailRequest(lines=0, follow=True, after_seq=after, stderr=True, events=True)
            stream = tailing.tail(
                session.id, lambda: session.files_dir, feed, request, budget=BUDGET
            )
            taken = 0
            try:
                async for item in stream:
                    seen = _seen(item)
                    if seen is not None:
                        received.append(seen)
                        taken += 1
                    if finished():
                        return
                    if taken > cut:
                        break  # the client drops here
            finally:
                await stream.aclose()

    await asyncio.wait_for(asyncio.gather(write(), read()), 30)
    _check_whole(received, await _everything(session, feed))
    store.close()


async def test_tail_lines_zero_with_follow_is_only_what_comes_next(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    feed = LiveFeed()
    writer = _Writer(store, session, feed)
    writer.start()
    writer.write("stdout", 1)
    stream = tailing.tail(
        session.id,
        lambda: session.files_dir,
        feed,
        TailRequest(lines=0, follow=True),
        budget=BUDGET,
    )
    assert isinstance(await anext(stream), Control)  # following, and nothing before it
    writer.write("stdout", 2)
    item = await asyncio.wait_for(anext(stream), 5)
    assert isinstance(item, FeedItem) and item.text == "line 2" and item.seq == 3
    await stream.aclose()
    writer.end()


async def test_after_seq_past_the_last_item_is_refused(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    writer = _Writer(store, session, LiveFeed())
    writer.start()
    writer.end()
    with pytest.raises(InvalidRequest, match="after_seq 3 is past the session's last item"):
        await _read(session, LiveFeed(), after_seq=3)
    assert len(await _read(session, LiveFeed(), after_seq=2)) == 0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda idx: idx.write_bytes(idx.read_bytes()[: -3 * 16]), id="records-lost"),
        pytest.param(
            lambda idx: idx.write_bytes(bytes(64) + idx.read_bytes()[64:]), id="header-lost"
        ),
        pytest.param(lambda idx: idx.write_bytes(idx.read_bytes()[:-5]), id="record-torn"),
        pytest.param(lambda idx: idx.unlink(), id="no-index"),
    ],
)
@pytest.mark.parametrize("write_first", [False, True], ids=["read-first", "write-first"])
async def test_a_crash_or_an_older_gateway_leaves_nothing_unnumbered(
    tmp_path: Path, damage: Callable[[Path], None], write_first: bool
) -> None:
    """Data on disk without its records (a crash between the two writes, or a session written
    before the index existed) is numbered by the next reader, and the next run follows on."""
    store, session = _session(tmp_path)
    feed = LiveFeed()
    writer = _Writer(store, session, feed)
    writer.start()
    for n in range(4):
        writer.write("stdout", n)
    writer.write("event", 4)
    writer.end()
    whole = await _everything(session, feed)
    damage(session.dir / journal.INDEX)
    if write_first:  # the next run finds the damage before any reader
        with pytest.raises(journal.Unindexed):
            RunLog(session, "refused", feed)
        journal.ensure_indexed(session.dir)
    repaired = await _everything(session, feed)
    texts = sorted(text for _, _, text in repaired)
    assert texts == sorted(text for _, _, text in whole)
    assert [seq for seq, _, _ in repaired] == list(range(1, len(repaired) + 1))
    writer.start()
    writer.write("stdout", 9)
    writer.end()
    again = await _everything(session, feed)
    assert again[: len(repaired)] == repaired and again[-2][2] == "line 9"


async def test_a_write_that_failed_is_skipped_and_shifts_no_seq(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    feed = LiveFeed()
    writer = _Writer(store, session, feed)
    writer.start()
    writer.write("stdout", 1)
    writer.end()
    index = session.dir / journal.INDEX
    data = bytearray(index.read_bytes())
    at = journal.HEADER_BYTES + journal.RECORD_BYTES  # the record of "line 1" (seq 2)
    data[at : at + journal.RECORD_BYTES] = bytes(journal.RECORD_BYTES)  # as a failed write
    index.write_bytes(bytes(data))
    seqs = [seq for seq, _, _ in await _everything(session, feed)]
    assert seqs == [1, 3]


async def test_a_follower_that_lags_is_told_where_to_resume(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    feed = LiveFeed(buffer=4)
    writer = _Writer(store, session, feed)
    writer.start()
    stream = tailing.tail(
        session.id,
        lambda: session.files_dir,
        feed,
        TailRequest(lines=0, follow=True),
        budget=BUDGET,
    )
    assert isinstance(await anext(stream), Control)
    for n in range(10):
        writer.write("stdout", n)
    items = [item async for item in stream]
    lagged = items[-1]
    assert isinstance(lagged, Control) and lagged.kind == "lagged"
    delivered = [item for item in items if isinstance(item, FeedItem)]
    assert lagged.after_seq == delivered[-1].seq
    assert f"after_seq={lagged.after_seq}" in lagged.message
    rest = await _read(session, LiveFeed(), after_seq=lagged.after_seq)
    assert [i.text for i in delivered + rest if isinstance(i, FeedItem)] == [
        f"line {n}" for n in range(10)
    ]
    writer.end()


def test_the_index_is_private(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    writer = _Writer(store, session, LiveFeed())
    writer.start()
    writer.end()
    assert (session.dir / journal.INDEX).stat().st_mode & 0o077 == 0
    assert (session.dir / EVENTS).exists()
