"""Shared tails: the followers of one session on this replica share one relayed live stream.

A following tail of a session homed elsewhere is, for each follower, its own backlog (a relayed
tail without `follow`, with the follower's own `tail_lines` or `after_seq`, filters and
credentials: the home checks each follower) and then the live items of one upstream per session
and credentials: a `RelayTail` with `follow` and `tail_lines=0` for every stream, fanned out here.
`seq` stitches the two as gateway/sessions/tailing.py does on the home: the follower joins the
upstream first and waits until it is live, then reads its backlog; every item published since
is in its buffer, and those its backlog already gave are skipped by their seq.

A follower that falls behind its buffer is dropped with a `lagged` notice naming the seq to
resume after; the upstream lagging on the home drops every follower the same way. The upstream
ends when its last follower leaves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Final

from codex_gateway.v1 import sessions_pb2
from gateway.sessions.access import TOKEN_KEYS
from gateway.sessions.tailing import TailRequest

MAX_FOLLOWER_ITEMS: Final = 10_000

Item = sessions_pb2.TailSessionResponse
Relay = Callable[[sessions_pb2.TailSessionRequest], AsyncIterator[Item]]
# The home, the session, the secure tokens offered, and the streams asked for (stderr, events).
Key = tuple[str, str, tuple[str, ...], bool, bool]


class _Ended:
    """How an upstream ended: normally, lagged on the home, or with an error to raise."""

    def __init__(self, *, lagged: bool = False, error: BaseException | None = None) -> None:
        self.lagged = lagged
        self.error = error


class _Follower:
    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._items: collections.deque[Item] = collections.deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.lagged = False
        self.ended: _Ended | None = None

    def offer(self, item: Item) -> None:
        if self.lagged or self.ended is not None:
            return
        size = item.ByteSize()
        if len(self._items) >= MAX_FOLLOWER_ITEMS or (
            self._items and self._bytes + size > self._budget
        ):
            self.lagged = True  # dropped: its stream ends with a lagged notice
        else:
            self._items.append(item)
            self._bytes += size
        self._ready.set()

    def end(self, ended: _Ended) -> None:
        if self.ended is None:
            self.ended = ended
        self._ready.set()

    async def items(self) -> AsyncIterator[Item]:
        """The live items, until this follower lags or the upstream ends (its error raised)."""
        while True:
            while self._items:
                item = self._items.popleft()
                self._bytes -= item.ByteSize()
                yield item
            if self.lagged:
                return
            if self.ended is not None:
                if self.ended.lagged:
                    self.lagged = True
                if self.ended.error is not None:
                    raise self.ended.error
                return
            self._ready.clear()
            await self._ready.wait()


class _Upstream:
    """One relayed live stream and its followers."""

    def __init__(
        self,
        relay: Relay,
        session_id: str,
        on_idle: Callable[[_Upstream], None],
        *,
        stderr: bool,
        events: bool,
    ) -> None:
        self._on_idle = on_idle
        self.followers: set[_Follower] = set()
        self.live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        request = sessions_pb2.TailSessionRequest(
            session_id=session_id,
            follow=True,
            tail_lines=0,
            include_events=events,  # only the streams its followers asked for: a line-only
            include_stderr=stderr,  # follower's upstream does not carry every codex event
        )
        self._task = asyncio.ensure_future(self._pump(relay(request)))

    async def _pump(self, stream: AsyncIterator[Item]) -> None:
        ended = _Ended()
        try:
            async for item in stream:
                if item.HasField("seq"):
                    for follower in self.followers:
                        follower.offer(item)
                elif item.notice.kind == "following":
                    if not self.live.done():
                        self.live.set_result(None)
                elif item.notice.kind == "lagged":
                    ended = _Ended(lagged=True)
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the home's answer, or the home gone: every follower's
            ended = _Ended(error=exc)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        self._finish(ended)

    def _finish(self, ended: _Ended) -> None:
        self.closed = True
        if not self.live.done():
            if ended.error is not None:
                self.live.set_exception(ended.error)
                self.live.exception()  # retrieved: each follower raises it from its own wait
            else:
                self.live.set_result(None)
        for follower in self.followers:
            follower.end(ended)
        self._on_idle(self)

    def join(self, budget_bytes: int) -> _Follower:
        follower = _Follower(budget_bytes)
        self.followers.add(follower)
        return follower

    def leave(self, follower: _Follower) -> None:
        self.followers.discard(follower)
        if not self.followers and not self.closed:
            self.closed = True
            self._task.cancel()
            self._on_idle(self)

    async def wait_live(self) -> None:
        await asyncio.wait({self.live})  # never cancels the shared future
        if self.live.exception() is not None:
            raise self.live.exception()  # type: ignore[misc]  # checked just above


class SharedTails:
    """The live streams this replica relays, one per session and credentials."""

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._upstreams: dict[Key, _Upstream] = {}

    def upstreams(self) -> int:
        return len(self._upstreams)

    async def follow(
        self,
        key: tuple[str, str],
        request: sessions_pb2.TailSessionRequest,
        caller: tuple[tuple[str, str | bytes], ...],
        relay: Relay,
    ) -> AsyncIterator[Item]:
        """A following tail as `request` asks (`relay` calls the home's RelayTail with this
        follower's credentials), its live part shared by every follower of `key` (the home
        replica and session id) offering the same secure tokens and asking the same streams."""
        tokens = tuple(str(value) for name, value in caller if name in TOKEN_KEYS)
        stderr, events = request.include_stderr, request.include_events
        full_key: Key = (*key, tokens, stderr, events)
        upstream = self._upstreams.get(full_key)
        if upstream is None or upstream.closed:
            upstream = _Upstream(
                relay,
                key[1],
                lambda done: self._forget(full_key, done),
                stderr=stderr,
                events=events,
            )
            self._upstreams[full_key] = upstream
        follower = upstream.join(self._budget)
        try:
            await upstream.wait_live()
            last = request.after_seq if request.HasField("after_seq") else 0
            async for item in _backlog(request, relay):
                if item.HasField("seq"):
                    last = max(last, item.seq)
                yield item
            yield Item(
                notice=sessions_pb2.TailNotice(kind="following", message="following new output")
            )
            streams = _streams(request)
            async for item in follower.items():
                if item.seq <= last:
                    continue
                last = item.seq
                if _stream(item) in streams:
                    yield item
            if follower.lagged:
                yield Item(
                    notice=sessions_pb2.TailNotice(
                        kind="lagged",
                        message="this follower fell too far behind and was dropped; "
                        f"tail again with after_seq={last} to resume",
                    )
                )
        finally:
            upstream.leave(follower)

    def _forget(self, key: Key, upstream: _Upstream) -> None:
        if self._upstreams.get(key) is upstream:
            del self._upstreams[key]

    async def close(self) -> None:
        for upstream in list(self._upstreams.values()):
            for follower in list(upstream.followers):
                upstream.leave(follower)


async def _backlog(request: sessions_pb2.TailSessionRequest, relay: Relay) -> AsyncIterator[Item]:
    """What the follower gets before the live items: its own tail without `follow` (the home
    checks its credentials and its request). `tail_lines=0` alone asks for none (the shared
    stream, which carries the same secure tokens, has passed the home's check)."""
    backlog = sessions_pb2.TailSessionRequest()
    backlog.CopyFrom(request)
    backlog.follow = False
    if backlog.HasField("after_seq"):
        backlog.ClearField("tail_lines")  # ignored with after_seq; 0 is refused without follow
    elif backlog.HasField("tail_lines") and backlog.tail_lines == 0:
        return
    async for item in relay(backlog):
        yield item


def _streams(request: sessions_pb2.TailSessionRequest) -> frozenset[str]:
    return TailRequest(0, stderr=request.include_stderr, events=request.include_events).streams


def _stream(item: Item) -> str:
    kind = item.WhichOneof("kind")
    if kind == "line":
        return item.line.stream
    if kind == "event":
        return "events"
    return "notice"
