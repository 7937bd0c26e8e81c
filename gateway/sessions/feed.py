"""Live fan-out of what running sessions write, to any number of followers.

The runner publishes every log line, event and run notice as it writes it; each follower has a
buffer of its own, bounded in bytes (CODEX_GATEWAY_FOLLOWER_BUFFER_BYTES) and in items.
Publishing never waits: a follower whose buffer is full is cut off and told so (a `lagged`
notice), so a slow follower can slow neither the run nor the other followers, and a follower that
never reads holds at most its budget, however large the lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

DEFAULT_BUFFER = 8192
DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024
# What an item costs beyond its text: the object itself and the message built from it.
ITEM_OVERHEAD_BYTES = 256


@dataclass(frozen=True)
class FeedItem:
    """One thing a session wrote: a stdout or stderr line, a codex event, or a run notice. `seq`
    numbers it in the session's log (gateway/sessions/journal.py), so a follower that also read
    the log skips what it already has."""

    stream: str  # stdout | stderr | events | notice
    text: str = ""
    event: dict[str, Any] | None = None
    run_id: str | None = None
    seq: int = 0
    status: str | None = None
    size: int = 0  # bytes of the line or event as written; the text's length when not given

    @property
    def cost(self) -> int:
        return ITEM_OVERHEAD_BYTES + (self.size or len(self.text))


class Subscription:
    def __init__(self, feed: LiveFeed, session_id: str, buffer: int, buffer_bytes: int) -> None:
        self._feed = feed
        self._session_id = session_id
        self._buffer = buffer
        self._buffer_bytes = buffer_bytes
        self._queued_bytes = 0
        self._items: deque[FeedItem] = deque()
        self._wakeup = asyncio.Event()
        self.lagged = False

    def offer(self, item: FeedItem) -> bool:
        """Queue an item; False (and the subscription ends) when the buffer is full, in items
        or in bytes (one item alone always fits)."""
        cost = item.cost
        if len(self._items) >= self._buffer or (
            self._items and self._queued_bytes + cost > self._buffer_bytes
        ):
            self.lagged = True
            self._wakeup.set()
            return False
        self._items.append(item)
        self._queued_bytes += cost
        self._wakeup.set()
        return True

    def __aiter__(self) -> AsyncIterator[FeedItem]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[FeedItem]:
        while True:
            while self._items:
                item = self._items.popleft()
                self._queued_bytes -= item.cost
                yield item
            if self.lagged:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        self._feed.unsubscribe(self._session_id, self)


class LiveFeed:
    def __init__(
        self, buffer: int = DEFAULT_BUFFER, buffer_bytes: int = DEFAULT_BUFFER_BYTES
    ) -> None:
        self._buffer = buffer
        self._buffer_bytes = buffer_bytes
        self._followers: dict[str, set[Subscription]] = {}
        self.delivered = 0  # items queued to followers (metrics)
        self.dropped = 0  # followers dropped for lagging (metrics)

    def followers(self, session_id: str) -> int:
        return len(self._followers.get(session_id, ()))

    @property
    def following(self) -> int:
        """Followers now, of every session."""
        return sum(map(len, self._followers.values()))

    def publish(self, session_id: str, item: FeedItem) -> None:
        followers = self._followers.get(session_id)
        if not followers:
            return
        for follower in list(followers):
            if follower.offer(item):
                self.delivered += 1
            else:
                followers.discard(follower)
                self.dropped += 1

    @contextlib.contextmanager
    def subscribe(self, session_id: str, buffer: int | None = None) -> Iterator[Subscription]:
        subscription = Subscription(self, session_id, buffer or self._buffer, self._buffer_bytes)
        self._followers.setdefault(session_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscription.close()

    def unsubscribe(self, session_id: str, subscription: Subscription) -> None:
        followers = self._followers.get(session_id)
        if followers is not None:
            followers.discard(subscription)
            if not followers:
                del self._followers[session_id]
