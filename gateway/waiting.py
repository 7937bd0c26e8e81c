"""Waiting on events: until the first of several is set (a loop's stop, its wake-up), or a
timeout."""

from __future__ import annotations

import asyncio


async def first_set(*events: asyncio.Event, timeout_s: float | None = None) -> None:
    """Until one of `events` is set, or `timeout_s` has passed; leaves no waiter behind."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
