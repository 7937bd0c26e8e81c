"""Event-loop lag, sampled continuously: how late a timer set for INTERVAL_S later fires. A
background loop in the gateway's TaskGroup that stops on its event."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from prometheus_client import Gauge

INTERVAL_S: Final = 0.5


async def sample_lag(gauge: Gauge, stop: asyncio.Event, interval_s: float = INTERVAL_S) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + interval_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(due):
                await stop.wait()
        gauge.set(max(0.0, loop.time() - due))
