"""Run slots across the cluster (CODEX_GATEWAY_CLUSTER_MAX_CONCURRENT) on top of each replica's own.

A run takes this replica's slot first (`RunSlots`, CODEX_GATEWAY_MAX_CONCURRENT), then a row of
`run_slots`: one row per run that may run at once in the cluster, claimed with
`FOR UPDATE SKIP LOCKED` and marked with the run's id and this replica's epoch. An API run that
finds none free gets ConcurrencyLimitReached (429) with the cluster's numbers; a background run
waits, first come first served among this replica's waiters, for a `slot_freed` signal or the next
poll (NOTIFY is a hint: a listener that reconnects has missed some). The database unreachable at
the claim: StorageUnavailable (503) at once, the local slot given back.

A row is freed by its run (`WHERE run_id = ...`, with the signal, in one transaction); when the
database cannot be reached then, the release is retried in the background until it can, so a
slot never leaks while this replica lives; when it dies, the reaper frees the rows of its older
epochs (the reap hook, also run at this replica's own registration for what an earlier
incarnation held).

The size of the table: every replica with a cluster-wide limit sets it at startup (rows added, or
free rows above it removed; held ones go when they are freed), so when replicas disagree, the one
that started last wins (logged). A replica with no cluster-wide limit (0) leaves the table alone
and takes no row: its runs are not counted, and cost no database round-trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, NoReturn

from gateway.cluster.node import ClusterNode
from gateway.cluster.releases import PendingReleases
from gateway.cluster.replicas import FENCE, Connection
from gateway.cluster.signals import notify
from gateway.errors import ConcurrencyLimitReached, StorageUnavailable
from gateway.runs.concurrency import RunSlots, Slots

log = logging.getLogger(__name__)

SLOT_FREED = "slot_freed"
# How often a waiter looks at the table when no signal came.
POLL_S = 0.3
# Claims an API run makes when slots were freed between its claim and the count of the refusal.
TRY_ATTEMPTS = 3
# pg_advisory_xact_lock key of the table's sizing ("cgw" "slt").
SIZE_LOCK = 0x636777_736C74

_CLAIM = (
    "UPDATE run_slots SET run_id = %(run)s, replica_id = %(replica)s,"  # noqa: S608  # constants
    " replica_epoch = %(epoch)s, claimed_at = now()"
    " WHERE slot = (SELECT slot FROM run_slots WHERE run_id IS NULL"
    "  ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED)"
    f" AND {FENCE} RETURNING slot"
)
_IN_USE = (
    "SELECT count(*) FILTER (WHERE run_id IS NOT NULL),"
    " coalesce((SELECT maximum FROM run_slots_size), 0)"
    " FROM run_slots"
)
_IN_USE_FENCED = (
    "SELECT count(*) FILTER (WHERE run_id IS NOT NULL),"  # noqa: S608  # constants
    f" coalesce((SELECT maximum FROM run_slots_size), 0), {FENCE}"
    " FROM run_slots"
)
_FREE = "run_id = NULL, replica_id = NULL, replica_epoch = NULL, claimed_at = NULL"
# A freed row above the table's size goes (the size shrank while it was held).
_SURPLUS = "slot > coalesce((SELECT maximum FROM run_slots_size), 0)"
_OF_RUN = "run_id = %(run)s"
# A dead replica's rows: those of an epoch older than its row's (its current incarnation's
# rows stay: the hook also runs at this replica's own registration).
_OF_DEAD = (
    "replica_id = %(replica)s AND run_id IS NOT NULL AND replica_epoch <"
    " (SELECT epoch FROM replicas WHERE replica_id = %(replica)s)"
)


class ClusterSlots(Slots):
    """This replica's slot, then a cluster slot; the counters are this replica's."""

    def __init__(self, node: ClusterNode, local: RunSlots, *, poll_s: float = POLL_S) -> None:
        self._node = node
        self._local = local
        self._poll_s = poll_s
        self._cluster_max = node.config.max_concurrent
        # Held by the waiter whose turn it is to claim (asyncio.Lock is first come first served).
        self._turn = asyncio.Lock()
        self._freed = asyncio.Event()
        self._cluster_waiting = 0
        # Runs whose row may still be held: their release is retried until it lands.
        self._pending = PendingReleases(self._free, "the cluster slot of run")
        node.replicas.on_reap(self._free_dead)
        node.signals.on(SLOT_FREED, self._on_signal)
        node.on_open(self._size)
        node.loop("slot releases", self.run)
        node.slots_report = self.report

    @property
    def maximum(self) -> int:
        return self._local.maximum

    @property
    def active(self) -> int:
        return self._local.active - self._cluster_waiting

    @property
    def available(self) -> int:
        return self._local.available

    @property
    def waiting(self) -> int:
        return self._local.waiting + self._cluster_waiting

    def slot(self, run_id: str, *, wait: bool) -> AbstractAsyncContextManager[None]:
        return self._slot(run_id, wait=wait)

    @contextlib.asynccontextmanager
    async def _slot(self, run_id: str, *, wait: bool) -> AsyncIterator[None]:
        async with self._local.slot(run_id, wait=wait):
            if self._cluster_max == 0:
                yield
                return
            if wait:
                await self._wait_for(run_id)
            else:
                await self._try(run_id)
            try:
                yield
            finally:
                await self._pending.release(run_id)

    async def report(self) -> tuple[int, int]:
        """The cluster's slots: (in use, maximum); (0, 0) on a replica with no cluster limit."""
        if self._cluster_max == 0:
            return 0, 0
        async with self._node.database.connection() as conn:
            cursor = await conn.execute(_IN_USE)
            row = await cursor.fetchone()
        return (int(row[0]), int(row[1])) if row is not None else (0, 0)

    @property
    def unreleased(self) -> set[str]:
        """Runs whose row may still be held (their release is retried until it lands)."""
        return self._pending.unreleased

    async def run(self, stop: asyncio.Event) -> None:
        """Retry the releases that could not reach the database, until `stop`."""
        await self._pending.run(stop)

    async def _try(self, run_id: str) -> None:
        if self._turn.locked():  # this replica's waiters come first, as with the local slots
            self._refused(*await self._in_use())
        for _ in range(TRY_ATTEMPTS):
            if await self._claim(run_id):
                return
            in_use, maximum = await self._in_use()
            if in_use >= maximum:
                break  # full: refused with the numbers; else one was freed meanwhile: again
        self._refused(in_use, maximum)

    def _refused(self, in_use: int, maximum: int) -> NoReturn:
        raise ConcurrencyLimitReached(min(in_use, maximum), maximum, self._local.retry_after_s)

    async def _in_use(self) -> tuple[int, int]:
        """The cluster's (slots in use, maximum); StorageUnavailable while this replica, found
        dead by the cluster, is joining it again (no claim can succeed until it has)."""
        async with self._node.database.connection() as conn:
            cursor = await conn.execute(_IN_USE_FENCED, self._node.replicas.fence())
            row = await cursor.fetchone()
        if row is None or not row[2]:
            raise StorageUnavailable(
                "this replica is joining the cluster again: retry, or use another replica"
            )
        return int(row[0]), int(row[1])

    async def _wait_for(self, run_id: str) -> None:
        self._cluster_waiting += 1
        try:
            async with self._turn:
                while True:
                    self._freed.clear()
                    if await self._claim(run_id):
                        return
                    # asyncio.timeout, not wait_for: 3.11's wait_for can lose a cancellation
                    # that comes as the wait ends, and the cancelled run would go on
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll_s):
                            await self._freed.wait()
        finally:
            self._cluster_waiting -= 1

    async def _claim(self, run_id: str) -> bool:
        """Claim a free row for `run_id`; False when none is free (or this replica is fenced).
        Whatever interrupts the claim (the database gone, a cancellation), the row may have been
        taken: its release is then retried until it lands."""
        try:
            async with self._node.database.connection() as conn:
                cursor = await conn.execute(_CLAIM, {"run": run_id, **self._node.replicas.fence()})
                return await cursor.fetchone() is not None
        except BaseException:
            self._pending.keep(run_id)
            raise

    async def _free(self, run_id: str) -> None:
        async with self._node.database.connection() as conn, conn.transaction():
            await _free_rows(conn, _OF_RUN, {"run": run_id})

    async def _free_dead(self, conn: Connection, replica_id: str) -> None:
        freed = await _free_rows(conn, _OF_DEAD, {"replica": replica_id})
        if freed:
            log.warning("replica %s: %d cluster slot(s) it held were freed", replica_id, freed)

    def _on_signal(self, message: Mapping[str, Any] | None) -> None:
        self._freed.set()

    async def _size(self) -> None:
        """Size the table to this replica's limit (the last replica to start wins)."""
        if self._cluster_max == 0:
            return
        async with self._node.database.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SIZE_LOCK,))
            cursor = await conn.execute("SELECT maximum, set_by FROM run_slots_size")
            before = await cursor.fetchone()
            await conn.execute(
                "INSERT INTO run_slots_size (maximum, set_by) VALUES (%(max)s, %(by)s)"
                " ON CONFLICT (singleton) DO UPDATE SET maximum = EXCLUDED.maximum,"
                " set_by = EXCLUDED.set_by, set_at = now()",
                {"max": self._cluster_max, "by": self._node.replica_id},
            )
            cursor = await conn.execute(
                "INSERT INTO run_slots (slot) SELECT generate_series(1, %s)"
                " ON CONFLICT (slot) DO NOTHING",
                (self._cluster_max,),
            )
            added = cursor.rowcount
            await conn.execute(
                "DELETE FROM run_slots WHERE slot > %s AND run_id IS NULL", (self._cluster_max,)
            )
            if added > 0:
                await notify(conn, SLOT_FREED, count=added)
        if before is not None and int(before[0]) != self._cluster_max:
            log.warning(
                "CODEX_GATEWAY_CLUSTER_MAX_CONCURRENT: replica %s set the cluster's run slots to "
                "%d (replica %s had set %d): the replica that starts last wins; give every "
                "replica the same value",
                self._node.replica_id,
                self._cluster_max,
                before[1],
                before[0],
            )


async def _free_rows(conn: Connection, condition: str, params: Mapping[str, Any]) -> int:
    """Free the rows held under `condition` (removing those above the table's size) and signal
    it, in the caller's transaction; how many were freed."""
    await conn.execute(f"DELETE FROM run_slots WHERE {condition} AND {_SURPLUS}", params)  # noqa: S608  # constants only
    cursor = await conn.execute(f"UPDATE run_slots SET {_FREE} WHERE {condition}", params)  # noqa: S608  # constants only
    freed = cursor.rowcount
    if freed > 0:
        await notify(conn, SLOT_FREED, count=freed)
    return freed
