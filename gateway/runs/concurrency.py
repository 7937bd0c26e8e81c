"""Run slots: one limit across every run source.

API runs take a slot now or fail with ConcurrencyLimitReached (429); background runs (triggers,
the file watcher) wait for one, first come first served. A slot is taken for a run id.

`Slots` is what the runner and the status report use; `RunSlots` is this process's own limit
(CODEX_GATEWAY_MAX_CONCURRENT). Cluster mode puts a cluster-wide limit behind it
(gateway/cluster/slots.py).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from gateway.errors import ConcurrencyLimitReached


class Slots(abc.ABC):
    """Run slots: `slot(run_id, wait=...)` holds one for the run while it lasts.

    `wait=False`: one now or ConcurrencyLimitReached; `wait=True`: wait for one, first come
    first served (cancelling the wait leaks nothing). The counters are this process's own, as
    GET /status reports them."""

    @abc.abstractmethod
    def slot(self, run_id: str, *, wait: bool) -> AbstractAsyncContextManager[None]: ...

    @property
    @abc.abstractmethod
    def maximum(self) -> int:
        """Runs at once on this process."""

    @property
    @abc.abstractmethod
    def active(self) -> int:
        """Runs holding their slot."""

    @property
    @abc.abstractmethod
    def available(self) -> int:
        """Slots free on this process."""

    @property
    @abc.abstractmethod
    def waiting(self) -> int:
        """Runs waiting for a slot."""


class RunSlots(Slots):
    """This process's limit, in memory."""

    def __init__(self, maximum: int, retry_after_s: int = 5) -> None:
        self._maximum = maximum
        self._active = 0
        self.retry_after_s = retry_after_s
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def maximum(self) -> int:
        return self._maximum

    @property
    def active(self) -> int:
        return self._active

    @property
    def available(self) -> int:
        return max(0, self._maximum - self._active)

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def try_acquire(self) -> None:
        if self._active >= self._maximum or self.waiting:
            raise ConcurrencyLimitReached(self._active, self._maximum, self.retry_after_s)
        self._active += 1

    async def acquire(self) -> None:
        if self._active < self._maximum and not self.waiting:
            self._active += 1
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
        self._active = max(0, self._active - 1)

    @contextlib.asynccontextmanager
    async def slot(self, run_id: str, *, wait: bool) -> AsyncIterator[None]:
        if wait:
            await self.acquire()
        else:
            self.try_acquire()
        try:
            yield
        finally:
            self.release()
