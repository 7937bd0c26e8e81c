"""A session's tail: its last items (or every item after a cursor), then, following, new ones.

Items come from the session's numbered log (gateway/sessions/journal.py) and, once caught up,
from the live feed; `seq` stitches the two together, so a follower gets every item once, in order:

1. Where to start: after `after_seq` (a client resuming), or the last `lines` lines of each
   wanted file (stdout.log, and stderr.log and events.jsonl when asked). Those last lines are
   what the files hold: a run's START/END marker among them comes as the stdout line it is, as
   it always has; from then on (live, and after `after_seq`) run markers are run notices.
2. Catch up from disk, in chunks read in a worker thread, for as long as the log is far ahead
   (a client resuming after a long absence is paced by its own reading, never buffered).
3. Subscribe to the live feed, then read the log up to its end as it is at that moment: every
   item published from then on arrives through the feed, every earlier one is on disk
   (the writer flushes before the loop runs anything else). Live items already read are
   skipped by their seq.
4. Follow: a `following` marker, then each new item; a follower that falls behind its buffer
   is dropped with a `lagged` marker naming the seq to resume after.

The markers (`Control`) are the tail's own, not the session's items: they have no seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.errors import InvalidRequest
from gateway.sessions import journal
from gateway.sessions.feed import FeedItem, LiveFeed
from gateway.sessions.journal import Kind

LIVE_SLACK: Final = 4 * journal.CHUNK_ITEMS
"""Items a resuming tail may still have to read from disk once it subscribes to the feed."""
INLINE_ITEMS: Final = 64
"""So few items are read on the loop (page-cached, well under a millisecond): a client that
resumes after a short absence gets them without a worker thread's round trip."""


@dataclass(frozen=True, slots=True)
class TailRequest:
    lines: int
    follow: bool = False
    after_seq: int | None = None
    stderr: bool = False
    events: bool = False

    @property
    def streams(self) -> frozenset[str]:
        wanted = {"stdout", "notice"}
        if self.stderr:
            wanted.add("stderr")
        if self.events:
            wanted.add("events")
        return frozenset(wanted)

    @property
    def kinds(self) -> frozenset[Kind]:
        streams = self.streams
        return frozenset(k for k, stream in journal.STREAM_OF.items() if stream in streams)


@dataclass(frozen=True, slots=True)
class Control:
    """The tail's own marker: `following` (now live) or `lagged` (dropped; resume after
    `after_seq`)."""

    kind: str
    message: str
    after_seq: int | None = None


async def tail(
    session_id: str,
    directory: Callable[[], Path],
    feed: LiveFeed,
    request: TailRequest,
    *,
    budget: int,
) -> AsyncIterator[FeedItem | Control]:
    """The session's tail as the request asks (`directory()` is where its files are now: a new
    session's move from its staging directory does not disturb a tail)."""
    if not journal.indexed(directory()):
        await asyncio.to_thread(journal.ensure_indexed, directory())
    end = journal.last_seq(directory())
    kinds = request.kinds
    if request.after_seq is not None:
        if request.after_seq > end:
            raise InvalidRequest(
                f"after_seq {request.after_seq} is past the session's last item ({end})",
                field="after_seq",
            )
        starts = dict.fromkeys(kinds, 0)
        cursor = request.after_seq
    else:
        starts = await asyncio.to_thread(
            journal.tail_starts, directory(), end, request.lines, kinds, budget
        )
        cursor = min(starts.values(), default=end + 1) - 1
    backlog_end = end
    markers_as_lines = end if request.after_seq is None else 0

    def wanted(kind: Kind, seq: int) -> bool:
        return kind in kinds and (seq > backlog_end or seq >= starts[kind])

    reader = _Reader(directory, wanted, cursor, markers_as_lines)
    if not request.follow:
        async for item in reader.until(backlog_end):
            yield item
        return
    while journal.last_seq(directory()) - reader.cursor > LIVE_SLACK:
        async for item in reader.until(journal.last_seq(directory())):
            yield item
    with feed.subscribe(session_id) as follower:
        async for item in reader.until(journal.last_seq(directory())):
            yield item
        yield Control("following", "following new output")
        streams = request.streams
        for_sure = reader.cursor
        async for item in follower:
            if item.seq and item.seq <= for_sure:
                continue
            for_sure = max(for_sure, item.seq)
            if item.stream in streams:
                yield item
        if follower.lagged:
            yield Control(
                "lagged",
                "this follower fell too far behind and was dropped; "
                f"tail again with after_seq={for_sure} to resume",
                after_seq=for_sure,
            )


class _Reader:
    """Reads the log forward from a cursor, a chunk at a time, in a worker thread."""

    def __init__(
        self,
        directory: Callable[[], Path],
        wanted: Callable[[Kind, int], bool],
        cursor: int,
        markers_as_lines: int,
    ) -> None:
        self._directory = directory
        self._markers_as_lines = markers_as_lines
        self._wanted = wanted
        self.cursor = cursor
        self._runs: dict[str, str | None] | None = None

    async def until(self, end: int) -> AsyncIterator[FeedItem]:
        while self.cursor < end:
            if end - self.cursor <= INLINE_ITEMS:
                items, self.cursor = self._chunk(end)
            else:
                items, self.cursor = await asyncio.to_thread(self._chunk, end)
            for item in items:
                yield item

    def _chunk(self, end: int) -> tuple[list[FeedItem], int]:
        if self._runs is None:
            self._runs = journal.run_at(self._directory(), self.cursor)
        return journal.read_items(
            self._directory(), self.cursor, end, self._wanted, self._runs, self._markers_as_lines
        )
