"""Per-key quotas across the cluster: a key's `max_concurrent` and `runs_per_minute` count its
runs on every replica (the embedded `KeyQuotas` counts this process's only).

A run of a key with quotas takes a place: a row of `key_runs` (place id, key name, replica,
epoch). The admission is one statement, `take_key_place` (migration 0007), so one round trip and
its own transaction: serialised per key by an advisory lock on a hash of the key name, it checks
the fence (this replica still holds its epoch), counts the key's rows against `max_concurrent`,
spends a token of the key's bucket (`key_buckets`, under FOR UPDATE, on the database's clock)
and inserts the row; a refusal changes nothing. Refused: ConcurrencyLimitReached with the key's
cluster-wide active and max, or RateLimited with the seconds until the next token; the database
unreachable: StorageUnavailable (503), nothing taken.

A place is given back when its run ends (its row deleted); when the database cannot be reached
then (or an admission was interrupted after it may have inserted), the delete is retried in the
background until it lands, so a place never leaks while this replica lives; when it dies, the
reaper deletes the rows of its older epochs (the reap hook, also run at this replica's own
registration for what an earlier incarnation held), as gateway/cluster/slots.py does for slots.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable

from gateway.auth.keys import ApiKey
from gateway.auth.quotas import Release
from gateway.cluster.node import ClusterNode
from gateway.cluster.releases import PendingReleases
from gateway.cluster.replicas import Connection
from gateway.errors import ConcurrencyLimitReached, RateLimited, StorageUnavailable

log = logging.getLogger(__name__)


_TAKE = (
    "SELECT outcome, active, retry_after_s FROM take_key_place("
    "%(place)s, %(key)s, %(max)s, %(per_minute)s, %(replica)s, %(epoch)s)"
)
_FREE = "DELETE FROM key_runs WHERE place_id = %s"
# A dead replica's places: those of an epoch older than its row's (its current incarnation's
# stay: the hook also runs at this replica's own registration).
_FREE_DEAD = (
    "DELETE FROM key_runs WHERE replica_id = %(replica)s AND replica_epoch <"
    " (SELECT epoch FROM replicas WHERE replica_id = %(replica)s)"
)
_RUNNING = "SELECT count(*) FROM key_runs WHERE key_name = %s"


class ClusterKeyQuotas:
    """`Quotas` (gateway/auth/quotas.py) counted in the cluster's database."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        # Places whose row may still be there: their delete is retried until it lands.
        self._pending = PendingReleases(self._free, "key quota place")
        self._freeing: set[asyncio.Task[None]] = set()
        node.replicas.on_reap(self._free_dead)
        node.loop("key quota releases", self.run)

    async def take(self, key: ApiKey) -> Release | None:
        if key.max_concurrent is None and key.runs_per_minute is None:
            return None
        place = str(uuid.uuid4())
        try:
            async with self._node.database.connection() as conn:
                cursor = await conn.execute(
                    _TAKE,
                    {
                        "place": place,
                        "key": key.name,
                        "max": key.max_concurrent,
                        "per_minute": key.runs_per_minute,
                        **self._node.replicas.fence(),
                    },
                )
                row = await cursor.fetchone()
        except BaseException:
            # The database gone or the caller cancelled mid-statement: the row may be there.
            self._pending.keep(place)
            raise
        outcome, active, retry_after_s = row if row is not None else ("", 0, None)
        if outcome == "taken":
            return self._release_of(place)
        if outcome == "concurrency" and key.max_concurrent is not None:
            raise ConcurrencyLimitReached(min(active, key.max_concurrent), key.max_concurrent)
        if outcome == "rate" and key.runs_per_minute is not None:
            raise RateLimited(key.name, key.runs_per_minute, int(retry_after_s))
        raise StorageUnavailable(
            "this replica is joining the cluster again: retry, or use another replica"
        )

    async def running(self, key: ApiKey) -> int:
        """The key's runs running in the cluster."""
        async with self._node.database.connection() as conn:
            cursor = await conn.execute(_RUNNING, (key.name,))
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    def _release_of(self, place: str) -> Release:
        freeing: asyncio.Task[None] | None = None

        def release() -> Awaitable[None]:
            nonlocal freeing
            if freeing is None:  # the first call starts the delete; every call may await it
                freeing = asyncio.get_running_loop().create_task(self._pending.release(place))
                self._freeing.add(freeing)
                freeing.add_done_callback(self._freeing.discard)
            return asyncio.shield(freeing)

        return release

    @property
    def unreleased(self) -> set[str]:
        """Places whose row may still be there (their delete is retried until it lands)."""
        return self._pending.unreleased

    async def run(self, stop: asyncio.Event) -> None:
        """Retry the releases that could not reach the database, until `stop`."""
        await self._pending.run(stop)

    async def _free(self, place: str) -> None:
        async with self._node.database.connection() as conn:
            await conn.execute(_FREE, (place,))

    async def _free_dead(self, conn: Connection, replica_id: str) -> None:
        cursor = await conn.execute(_FREE_DEAD, {"replica": replica_id})
        if cursor.rowcount > 0:
            log.warning(
                "replica %s: %d key quota place(s) it held were given back",
                replica_id,
                cursor.rowcount,
            )
