"""This replica's place in the cluster: its database, its registration and its control signals.

Built by `Gateway.build` in cluster mode (no I/O there); `open` connects, migrates and registers
(StartupError, exit 2, when any of it fails); `run` keeps the lease and the signals going beside
the servers; `close` ends the lease and the pool. The cluster's implementations of the gateway's
parts (store, slots, triggers, outbox, forwarding) take the node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from codex_gateway.v1 import status_pb2 as pb
from gateway.cluster.database import Database
from gateway.cluster.replicas import Replicas
from gateway.cluster.signals import ControlSignals
from gateway.config import ClusterConfig
from gateway.supervisor import supervise

log = logging.getLogger(__name__)

SlotsReport = Callable[[], Awaitable[tuple[int, int]]]
"""The cluster-wide slots: (in use, maximum; 0 for no limit)."""
OpenHook = Callable[[], Awaitable[None]]
"""Called once the replica is registered (the schema is migrated): a part's own setup."""
Loop = Callable[[asyncio.Event], Awaitable[None]]
"""A part's background loop, run (supervised) beside the heartbeat until its stop event."""


class ClusterNode:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.database = Database(config.database_url)
        self.replicas = Replicas(self.database, config)
        self.signals = ControlSignals(config.database_url)
        self.slots_report: SlotsReport | None = None
        self._open_hooks: list[OpenHook] = []
        self._loops: list[tuple[str, Loop]] = []

    @property
    def replica_id(self) -> str:
        return self.config.replica_id

    def on_open(self, hook: OpenHook) -> None:
        self._open_hooks.append(hook)

    def loop(self, name: str, loop: Loop) -> None:
        self._loops.append((name, loop))

    async def open(self) -> None:
        await self.database.open()
        try:
            await self.replicas.register()
            for hook in self._open_hooks:
                await hook()
        except BaseException:
            await self.database.close()
            raise

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(supervise("replica heartbeat", self.replicas.run, stop))
            group.create_task(supervise("control signals", self.signals.run, stop))
            for name, loop in self._loops:
                group.create_task(supervise(name, loop, stop))

    async def close(self) -> None:
        await self.replicas.deregister()
        await self.database.close()

    async def status(self) -> pb.ClusterStatus:
        replicas = [replica for replica in await self.replicas.all() if replica.alive]
        in_use, maximum = await self.slots_report() if self.slots_report else (0, 0)
        return pb.ClusterStatus(
            replica_id=self.replica_id,
            replicas=[
                pb.ReplicaStatus(
                    replica_id=replica.replica_id,
                    grpc_addr=replica.grpc_addr,
                    epoch=replica.epoch,
                    lease_until=replica.lease_until.isoformat(),
                )
                for replica in replicas
            ],
            slots_in_use=in_use,
            slots_max=maximum,
            lease_ms=self.config.lease_ms,
            reaped=self.replicas.reaped_total,
        )
