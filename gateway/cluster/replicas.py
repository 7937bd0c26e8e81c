"""Replicas: registration, the heartbeat that renews a replica's lease, and the reaper.

A replica registers under its id with a new epoch (its fencing token) and renews its lease every
`heartbeat_s`. A second live replica with the same id is refused at startup (exit 2 naming it).

Reaping: a replica whose lease has been expired for another lease length is declared dead by
whichever live replica gets there first (one at a time, under a transaction-level advisory
lock), in one transaction: its row gets a new epoch and `reaped`, and every component's reap hook
frees what the dead replica held (its runs become `interrupted`, its slots and sessions are
freed, its running fires are marked). A replica reaps only once its own lease has been renewing
for a whole lease length, so after a database outage (when every lease expired at once) nobody
reaps the others before they had a chance to renew.

A reaped replica that comes back finds its epoch gone at its next heartbeat: it stops its agents
(the `on_fenced` hooks) and registers again with a new epoch; its writes are fenced by the
epoch (`FENCE`), so nothing it writes in between overwrites newer state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import TupleRow

from gateway.cluster.database import Database
from gateway.config import ClusterConfig, StartupError
from gateway.errors import StorageUnavailable

log = logging.getLogger(__name__)

# pg_try_advisory_xact_lock key of the reaper ("cgw" "rea").
REAP_LOCK = 0x636777_726561
# A fenced write's condition: this replica still holds its epoch. Parameters `replica`, `epoch`.
FENCE = (
    "EXISTS (SELECT 1 FROM replicas WHERE replica_id = %(replica)s"
    " AND epoch = %(epoch)s AND state = 'alive')"
)
MAX_HEARTBEAT_S = 5.0

Connection = psycopg.AsyncConnection[TupleRow]
ReapHook = Callable[[Connection, str], Awaitable[None]]
"""Frees what a dead replica held, inside the reaper's transaction: (connection, replica id).
Also called for this replica's own id when it registers, for what an earlier incarnation left:
a hook frees only rows whose epoch is older than the replica's current one (`epoch` column
< the replicas row's), so a registration never frees its own new state."""


@dataclass(frozen=True)
class Replica:
    replica_id: str
    grpc_addr: str
    epoch: int
    alive: bool
    lease_until: datetime
    state: str


class Replicas:
    """This replica's registration and lease, and what it knows of the others."""

    def __init__(self, database: Database, config: ClusterConfig) -> None:
        self._db = database
        self._config = config
        self.replica_id = config.replica_id
        self.epoch = 0
        self._reap_hooks: list[ReapHook] = []
        self._fenced_hooks: list[Callable[[], Awaitable[None]]] = []
        self._renewing_since: float | None = None
        self.reaped_total = 0

    @property
    def lease_s(self) -> float:
        return self._config.lease_ms / 1000

    @property
    def heartbeat_s(self) -> float:
        return min(self.lease_s / 3, MAX_HEARTBEAT_S)

    def fence(self) -> dict[str, object]:
        """The parameters of `FENCE`."""
        return {"replica": self.replica_id, "epoch": self.epoch}

    def on_reap(self, hook: ReapHook) -> None:
        self._reap_hooks.append(hook)

    def on_fenced(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Called when this replica finds it was reaped, before it registers again."""
        self._fenced_hooks.append(hook)

    async def register(self) -> None:
        """Take this replica's id with a new epoch; StartupError if a live replica has it.

        A row of our id with a current lease at our own advertised address is a predecessor
        that died without ending its lease: we hold that address now (the gRPC port is bound
        before registering), so it cannot be serving. What any earlier incarnation held is
        freed by the reap hooks in the same transaction: its runs become `interrupted`."""
        async with self._db.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT grpc_addr, pid, state = 'alive' AND lease_until > now() FROM replicas"
                " WHERE replica_id = %s FOR UPDATE",
                (self.replica_id,),
            )
            row = await cursor.fetchone()
            if row is not None and row[2] and row[0] != self._config.advertise_addr:
                raise StartupError(
                    f"CODEX_GATEWAY_REPLICA_ID: replica {self.replica_id!r} is already running "
                    f"(at {row[0]}, pid {row[1]}); give this one another id"
                )
            cursor = await conn.execute(
                "INSERT INTO replicas AS r"
                " (replica_id, epoch, grpc_addr, pid, lease_until, lease_ms, state)"
                " VALUES (%(id)s, nextval('replica_epochs'), %(addr)s, %(pid)s,"
                "         now() + %(lease)s * interval '1 millisecond', %(lease)s, 'alive')"
                " ON CONFLICT (replica_id) DO UPDATE SET epoch = EXCLUDED.epoch,"
                "  grpc_addr = EXCLUDED.grpc_addr, pid = EXCLUDED.pid, started_at = now(),"
                "  heartbeat_at = now(), lease_until = EXCLUDED.lease_until,"
                "  lease_ms = EXCLUDED.lease_ms, state = 'alive'"
                " RETURNING epoch",
                {
                    "id": self.replica_id,
                    "addr": self._config.advertise_addr,
                    "pid": os.getpid(),
                    "lease": self._config.lease_ms,
                },
            )
            row = await cursor.fetchone()
            if row is None:  # an upsert's RETURNING always has its row
                raise StorageUnavailable("the replica's registration returned nothing")
            self.epoch = int(row[0])
            for hook in self._reap_hooks:
                await hook(conn, self.replica_id)
        self._renewing_since = time.monotonic()
        log.info("replica %s registered (epoch %d)", self.replica_id, self.epoch)

    async def deregister(self) -> None:
        """A clean stop: this replica's lease ends now (its sessions read as unavailable until
        it returns; nothing of it is reaped)."""
        with contextlib.suppress(StorageUnavailable, psycopg.Error):
            async with self._db.connection() as conn:
                await conn.execute(
                    "UPDATE replicas SET state = 'stopped', lease_until = now()"
                    " WHERE replica_id = %(replica)s AND epoch = %(epoch)s",
                    self.fence(),
                )

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat and reap until `stop`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)
            if stop.is_set():
                return
            await self.beat()

    async def beat(self) -> None:
        """Renew the lease (register again if this replica was reaped), then reap."""
        try:
            renewed = await self._renew()
        except (StorageUnavailable, psycopg.Error) as exc:
            self._renewing_since = None
            log.warning("replica %s: cannot renew its lease: %s", self.replica_id, exc)
            return
        if not renewed:
            log.error(
                "replica %s was declared dead by the cluster (epoch %d is gone): stopping its "
                "agents and registering again",
                self.replica_id,
                self.epoch,
            )
            for hook in self._fenced_hooks:
                try:
                    await hook()
                except Exception:
                    log.exception("a fenced hook failed")
            try:
                await self.register()
            except StartupError as exc:  # another process took the id meanwhile
                log.error("%s", exc)
            return
        if self._renewing_since is None:
            self._renewing_since = time.monotonic()
        if time.monotonic() - self._renewing_since >= self.lease_s:
            try:
                await self.reap()
            except (StorageUnavailable, psycopg.Error):
                log.exception("replica %s: reaping failed", self.replica_id)

    async def _renew(self) -> bool:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "UPDATE replicas SET heartbeat_at = now(),"
                " lease_until = now() + lease_ms * interval '1 millisecond'"
                " WHERE replica_id = %(replica)s AND epoch = %(epoch)s AND state = 'alive'",
                self.fence(),
            )
            return cursor.rowcount == 1

    async def reap(self) -> list[str]:
        """Declare dead the replicas whose lease has been expired for another lease length;
        their ids (empty when another replica is reaping now)."""
        async with self._db.connection() as conn, conn.transaction():
            cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (REAP_LOCK,))
            row = await cursor.fetchone()
            if row is None or not row[0]:
                return []
            cursor = await conn.execute(
                "SELECT replica_id FROM replicas WHERE state = 'alive'"
                " AND lease_until + lease_ms * interval '1 millisecond' < now()"
                " AND replica_id <> %s FOR UPDATE",
                (self.replica_id,),
            )
            dead = [str(found[0]) for found in await cursor.fetchall()]
            for replica_id in dead:
                await conn.execute(
                    "UPDATE replicas SET state = 'reaped', epoch = nextval('replica_epochs')"
                    " WHERE replica_id = %s",
                    (replica_id,),
                )
                for hook in self._reap_hooks:
                    await hook(conn, replica_id)
        for replica_id in dead:
            self.reaped_total += 1
            log.warning("replica %s: lease expired, reaped by %s", replica_id, self.replica_id)
        return dead

    async def lookup(self, replica_id: str) -> Replica | None:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                f"{_SELECT} WHERE replica_id = %s",
                (replica_id,),
            )
            row = await cursor.fetchone()
        return _replica(row) if row is not None else None

    async def all(self) -> list[Replica]:
        async with self._db.connection() as conn:
            cursor = await conn.execute(f"{_SELECT} ORDER BY replica_id")
            return [_replica(row) for row in await cursor.fetchall()]


_SELECT = (
    "SELECT replica_id, grpc_addr, epoch, state = 'alive' AND lease_until > now(),"
    " lease_until, state FROM replicas"
)


def _replica(row: tuple[object, ...]) -> Replica:
    replica_id, addr, epoch, alive, lease_until, state = row
    if not isinstance(lease_until, datetime):
        raise TypeError("replicas.lease_until is a timestamptz")
    return Replica(
        str(replica_id), str(addr), int(str(epoch)), bool(alive), lease_until, str(state)
    )
