"""The local run slots (CODEX_GATEWAY_MAX_CONCURRENT) through the `Slots` interface."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.errors import ConcurrencyLimitReached
from gateway.runs.concurrency import RunSlots, Slots


async def test_a_try_with_every_slot_taken_is_refused_with_the_numbers() -> None:
    slots: Slots = RunSlots(1)
    async with slots.slot("run-1", wait=False):
        with pytest.raises(ConcurrencyLimitReached) as refused:
            async with slots.slot("run-2", wait=False):
                pytest.fail("a second slot was handed out")
        assert (refused.value.active, refused.value.maximum) == (1, 1)
        assert refused.value.details()["retry_after"] == "5"
    assert (slots.active, slots.available) == (0, 1)


async def test_waiters_get_the_slot_first_come_first_served() -> None:
    slots: Slots = RunSlots(1)
    order: list[str] = []
    held = asyncio.Event()

    async def run(run_id: str) -> None:
        async with slots.slot(run_id, wait=True):
            order.append(run_id)
            await held.wait()

    first = asyncio.create_task(run("a"))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(run(name)) for name in ("b", "c", "d")]
    for _ in range(10):
        await asyncio.sleep(0)
    assert (order, slots.waiting) == (["a"], 3)
    with pytest.raises(ConcurrencyLimitReached):  # an API run does not overtake the waiters
        async with slots.slot("e", wait=False):
            pass
    held.set()
    await asyncio.gather(first, *waiters)
    assert order == ["a", "b", "c", "d"]
    assert (slots.active, slots.waiting) == (0, 0)


async def test_cancelling_a_waiter_leaks_nothing() -> None:
    slots: Slots = RunSlots(1)
    async with slots.slot("holder", wait=False):
        waiter = asyncio.create_task(_hold(slots, "waiter"))
        await asyncio.sleep(0.01)
        assert slots.waiting == 1
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    assert (slots.active, slots.waiting, slots.available) == (0, 0, 1)


async def _hold(slots: Slots, run_id: str) -> None:
    async with slots.slot(run_id, wait=True):
        await asyncio.sleep(3600)
