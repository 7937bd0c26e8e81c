"""The tail relay's home side: `ClusterService.RelayTail`, a session's local tail in batches.

A replica serving a tail of a session homed elsewhere asks the home for it here (the forwarding
side is gateway/cluster/forwarding.py). The items are the ones `TailSession` gives a client of
this replica (the same code: gateway/sessions/tailing.py), and whatever is ready at once goes in
one message, bounded in items and bytes: one message per item would cost each hop tens of
microseconds per line, and a burst of lines would arrive late.

Served only in cluster mode, and only with the cluster token (gateway/server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from codex_gateway.v1 import cluster_pb2, cluster_pb2_grpc, sessions_pb2

MAX_BATCH_ITEMS: Final = 1024
MAX_BATCH_BYTES: Final = 1024 * 1024
# Items read ahead of the relay's stream; past it, the tail waits (and a live one lags, as
# any slow follower does).
READ_AHEAD_ITEMS: Final = 4 * MAX_BATCH_ITEMS

LocalTail = Callable[
    [sessions_pb2.TailSessionRequest, Any], AsyncIterator[sessions_pb2.TailSessionResponse]
]


class RelayServicer(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self, local_tail: LocalTail) -> None:
        self._local_tail = local_tail

    async def RelayTail(  # gRPC method names are the proto's
        self, request: cluster_pb2.RelayTailRequest, context: Any
    ) -> AsyncIterator[cluster_pb2.RelayTailResponse]:
        async for batch in batches(self._local_tail(request.tail, context)):
            yield cluster_pb2.RelayTailResponse(items=batch)


async def batches(
    items: AsyncIterator[sessions_pb2.TailSessionResponse],
) -> AsyncIterator[list[sessions_pb2.TailSessionResponse]]:
    """`items` in lists: each one everything that is ready when the previous one has gone,
    within MAX_BATCH_ITEMS and MAX_BATCH_BYTES. An error of `items` is raised after the items
    that came before it."""
    ready: asyncio.Queue[sessions_pb2.TailSessionResponse | None] = asyncio.Queue(READ_AHEAD_ITEMS)
    failure: list[BaseException] = []

    async def read() -> None:
        try:
            async for item in items:
                await ready.put(item)
        except Exception as exc:  # raised to the caller, after what came before
            failure.append(exc)
        await ready.put(None)

    reader = asyncio.ensure_future(read())
    try:
        ended = False
        while not ended:
            first = await ready.get()
            if first is None:
                break
            batch, size = [first], first.ByteSize()
            while len(batch) < MAX_BATCH_ITEMS and size < MAX_BATCH_BYTES and not ready.empty():
                item = ready.get_nowait()
                if item is None:
                    ended = True
                    break
                batch.append(item)
                size += item.ByteSize()
            yield batch
        if failure:
            raise failure[0]
    finally:
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
