"""Control signals between replicas: small messages on one LISTEN/NOTIFY channel.

One dedicated connection per replica listens on `gw_control` (psycopg's `notifies()` holds its
connection). A message is a JSON object with a `kind` (cancel, slot freed, fire queued, webhook
queued, ...) and a few fields; each kind has one handler on a replica. NOTIFY is a hint, never
the truth: a listener that reconnects has missed what was sent meanwhile, so after every
(re)connection each handler is called with None, meaning "look at the tables yourself", and
every consumer polls on its own as well. Log lines never go through here (every NOTIFY commit
takes a database-wide lock, and payloads stop at 8000 bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from gateway.cluster.database import CONNECT_TIMEOUT_S

log = logging.getLogger(__name__)

CHANNEL = "gw_control"
RECONNECT_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0)
Handler = Callable[[Mapping[str, Any] | None], None]
"""Called on the event loop with a message of its kind, or None after a (re)connection."""


async def notify(
    conn: psycopg.AsyncConnection[TupleRow], kind: str, **fields: str | int | None
) -> None:
    """Send a signal (within `conn`'s transaction, if it is in one: sent at its commit)."""
    payload = json.dumps({"kind": kind, **fields}, separators=(",", ":"))
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


class ControlSignals:
    """This replica's listener: dispatches each message to the handler of its kind."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._handlers: dict[str, Handler] = {}
        self.connected = asyncio.Event()
        self.received = 0

    def on(self, kind: str, handler: Handler) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for {kind!r} signals is already registered")
        self._handlers[kind] = handler

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`, reconnecting with a short backoff."""
        failures = 0
        while not stop.is_set():
            try:
                await self._listen(stop)
                failures = 0
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                delay = RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S) - 1)]
                failures += 1
                log.warning("control signals: connection lost (%s); again in %.2fs", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _listen(self, stop: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            self._dispatch_all(None)
            stopping = asyncio.ensure_future(stop.wait())
            try:
                notifies = conn.notifies()
                while True:
                    following = asyncio.ensure_future(anext(notifies))
                    done, _ = await asyncio.wait(
                        {following, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if following not in done:
                        following.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                            await following
                        return
                    self._dispatch(following.result().payload)
            finally:
                stopping.cancel()
                self.connected.clear()

    def _dispatch(self, payload: str) -> None:
        self.received += 1
        try:
            message = json.loads(payload)
            kind = message["kind"]
        except (ValueError, KeyError, TypeError):
            log.warning("control signals: an unreadable message was ignored")
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            self._call(handler, message)

    def _dispatch_all(self, message: Mapping[str, Any] | None) -> None:
        for handler in list(self._handlers.values()):
            self._call(handler, message)

    @staticmethod
    def _call(handler: Handler, message: Mapping[str, Any] | None) -> None:
        try:
            handler(message)
        except Exception:  # one consumer's bug must not stop the others' signals
            log.exception("control signals: a handler failed")
