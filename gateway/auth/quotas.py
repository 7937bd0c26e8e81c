"""Per-key quotas: runs running at once (`max_concurrent`) and runs started per minute
(`runs_per_minute`, a token bucket), checked before the gateway-wide limit (which still applies).

Counted by key name, so a reload that changes a key's limits keeps what it is using. Everything
runs on the event loop: no locks. A refusal takes nothing: a run refused for its rate does not
hold a concurrency place, and one refused for concurrency spends no token.

`Quotas` is what the runner uses: `await take(key)` and, when the run ends, `await release()`.
`KeyQuotas` counts this process's runs (embedded mode); gateway/cluster/keyquotas.py's
`ClusterKeyQuotas` counts the cluster's, in its database.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from gateway.auth.keys import ApiKey
from gateway.errors import ConcurrencyLimitReached, RateLimited

T = TypeVar("T")

Release = Callable[[], Awaitable[None]]
"""Gives a run's place back: idempotent, and it starts at the call (awaiting it waits until the
place is given back, or handed on to be given back later), so a done-callback may call it
without awaiting."""


class Quotas(Protocol):
    async def take(self, key: ApiKey) -> Release | None:
        """A place for one run of `key` (its release), None for a key without quotas;
        ConcurrencyLimitReached or RateLimited when refused, nothing taken."""


async def releasing(work: Callable[[], Awaitable[T]], release: Release) -> T:
    """`work()`, its place given back when it ends, whatever way (before its caller hears)."""
    try:
        return await work()
    finally:
        await release()


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class KeyQuotas:
    clock: Callable[[], float] = time.monotonic
    _running: dict[str, int] = field(default_factory=dict)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def running(self, key: ApiKey) -> int:
        return self._running.get(key.name, 0)

    async def take(self, key: ApiKey) -> Release | None:
        """`admit` for a key with quotas; None (nothing to give back) for one without."""
        if key.max_concurrent is None and key.runs_per_minute is None:
            return None
        give_back = self.admit(key)

        def release() -> Awaitable[None]:
            give_back()
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        return release

    def admit(self, key: ApiKey) -> Callable[[], None]:
        """Take a place for one run of `key`; the returned release gives it back (once).
        ConcurrencyLimitReached (the key's active and max) or RateLimited when refused."""
        active = self._running.get(key.name, 0)
        if key.max_concurrent is not None and active >= key.max_concurrent:
            raise ConcurrencyLimitReached(active, key.max_concurrent)
        if key.runs_per_minute is not None:
            self._spend(key, key.runs_per_minute)
        self._running[key.name] = active + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._running.get(key.name, 1) - 1
            if left > 0:
                self._running[key.name] = left
            else:
                self._running.pop(key.name, None)

        return release

    def _spend(self, key: ApiKey, per_minute: int) -> None:
        now = self.clock()
        rate = per_minute / 60.0  # tokens a second; the bucket holds a minute's worth
        bucket = self._buckets.get(key.name)
        if bucket is None:
            bucket = self._buckets[key.name] = _Bucket(float(per_minute), now)
        bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            raise RateLimited(key.name, per_minute, max(1, math.ceil((1.0 - bucket.tokens) / rate)))
        bucket.tokens -= 1.0
