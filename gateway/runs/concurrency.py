"""Run slots: one limit across every run source.

API runs take a slot now or fail with ConcurrencyLimitReached (429); background runs (triggers,
the file watcher) wait for one, first come first served.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from gateway.errors import ConcurrencyLimitReached


class RunSlots:
    def __init__(self, maximum: int, retry_after_s: int = 5) -> None:
        self.maximum = maximum
        self.active = 0
        self._retry_after_s = retry_after_s
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def available(self) -> int:
        return max(0, self.maximum - self.active)

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def try_acquire(self) -> None:
        if self.active >= self.maximum or self.waiting:
            raise ConcurrencyLimitReached(self.active, self.maximum, self._retry_after_s)
        self.active += 1

    async def acquire(self) -> None:
        if self.active < self.maximum and not self.waiting:
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # release() hands its slot over: `active` already counts us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as we were cancelled: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active = max(0, self.active - 1)

    @contextlib.asynccontextmanager
    async def slot(self, *, wait: bool) -> AsyncIterator[None]:
        if wait:
            await self.acquire()
        else:
            self.try_acquire()
        try:
            yield
        finally:
            self.release()
