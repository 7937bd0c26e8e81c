"""Rows a replica must give back to the cluster's database (a run slot, a key quota place) and
could not yet: kept, and retried every RELEASE_RETRY_S until each lands, so nothing leaks while
the replica lives (when it dies, the reaper frees what it held).

`release(name)` gives one back now, or keeps it for later when the database cannot be reached
(or the release was interrupted: whether the row went is then unknown); `keep(name)` keeps one
whose state is unknown (a claim interrupted mid-statement). `run` is the retry loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import psycopg

from gateway.errors import StorageUnavailable

log = logging.getLogger(__name__)
RELEASE_RETRY_S: Final = 0.5


class PendingReleases:
    def __init__(self, free: Callable[[str], Awaitable[None]], what: str) -> None:
        """`free(name)` gives one row back (raising when the database cannot be reached);
        `what` names the rows in log lines ("cluster slot", "key quota place")."""
        self._free = free
        self._what = what
        self.unreleased: set[str] = set()

    def keep(self, name: str) -> None:
        self.unreleased.add(name)

    async def release(self, name: str) -> None:
        try:
            await self._free(name)
        except (StorageUnavailable, psycopg.Error) as exc:
            self.unreleased.add(name)
            log.warning("%s %s will be given back later: %s", self._what, name, exc)
        except BaseException:
            self.unreleased.add(name)
            raise

    async def run(self, stop: asyncio.Event) -> None:
        """Retry the releases that could not reach the database, until `stop`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELEASE_RETRY_S):
                    await stop.wait()
            await self.release_pending()

    async def release_pending(self) -> None:
        for name in sorted(self.unreleased):
            try:
                await self._free(name)
            except (StorageUnavailable, psycopg.Error):
                return  # still down: the next round
            self.unreleased.discard(name)
            log.info("%s %s was given back once the database was back", self._what, name)
