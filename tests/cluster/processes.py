"""Replicas of a cluster as real processes (`python -m gateway serve`) on loopback, sharing one
database: each with its own folder (sessions, secure sessions, workspace, state, CODEX_HOME), its
own REST and gRPC ports, and its own id; SIGKILLed, restarted with the same id, ports and folders,
stopped by pid at the end.

The processes are tests/faults/spawned.py's (`spawn`, `Spawned`): logs in files whose tails
explain a failure, SIGTERM then SIGKILL on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from codex_gateway.v1 import gateway_pb2_grpc, status_pb2
from tests.fakes import CODEX_BIN
from tests.faults.spawned import Spawned, gateway_env, spawn, until_serving
from tests.harness import CLUSTER_TOKEN, free_port

LEASE_MS = 2000
START_TIMEOUT_S = 30.0


@dataclass
class ReplicaProcess:
    """One replica: its id, folder, ports and environment stay the same across restarts."""

    replica_id: str
    root: Path
    env: dict[str, str]
    grpc_port: int
    rest_port: int
    spawned: Spawned | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int:
        if self.spawned is None:
            raise RuntimeError(f"replica {self.replica_id} was never started")
        return self.spawned.pid

    @property
    def log_path(self) -> Path:
        return self.root / "gateway.log"

    def running(self) -> bool:
        return self.spawned is not None and self.spawned.running()

    def spawn(self) -> Spawned:
        """Start the process (not waiting for it to serve)."""
        if self.running():
            raise RuntimeError(f"replica {self.replica_id} is running already")
        self.starts += 1
        self.spawned = spawn(
            self.env, self.log_path, grpc_port=self.grpc_port, rest_port=self.rest_port
        )
        return self.spawned

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start it and wait until its REST /health answers."""
        spawned = self.spawn()
        try:
            await until_serving(spawned, timeout_s)
        except BaseException:
            await asyncio.to_thread(spawned.stop)
            raise

    def kill(self) -> None:
        """SIGKILL, as a crash would: its lease is left to expire."""
        if self.spawned is not None:
            self.spawned.kill()

    async def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after a while); the exit code."""
        if self.spawned is None:
            return None
        return await asyncio.to_thread(self.spawned.stop)

    def log_tail(self, lines: int = 40) -> str:
        return self.spawned.log_tail(lines) if self.spawned else "(never started)"

    def client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, timeout=options.pop("timeout", 30), trust_env=False, **options
        )

    async def status(self) -> dict[str, Any]:
        """GET /status over REST."""
        async with self.client(timeout=5) as client:
            answer = await client.get("/status")
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    async def grpc_status(self) -> status_pb2.GetStatusResponse:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            answer: status_pb2.GetStatusResponse = await stub.GetStatus(
                status_pb2.GetStatusRequest(), timeout=5
            )
            return answer


def replica_env(
    root: Path,
    dsn: str,
    replica_id: str,
    grpc_port: int,
    *,
    agent: str = "echo_agent.py",
    model_url: str | None = None,
    lease_ms: int = LEASE_MS,
    **variables: str,
) -> dict[str, str]:
    """A replica's environment: tests/faults/spawned.py's `gateway_env` under `root` (a fault
    agent), or the real codex against the scripted model server at `model_url`, plus the
    cluster's variables."""
    env = gateway_env(root, agent)
    if model_url is not None:
        from tests.fakes.model_server import write_codex_home

        codex_env = write_codex_home(root / "codex-home", model_url)
        env |= {
            **codex_env,
            "CODEX_GATEWAY_CODEX_BIN": str(CODEX_BIN),
            "CODEX_GATEWAY_CODEX_HOME": codex_env["CODEX_HOME"],
            "CODEX_GATEWAY_CHILD_ENV": "FAKE_API_KEY,NO_PROXY",
        }
    return env | {
        "CODEX_GATEWAY_DATABASE_URL": dsn,
        "CODEX_GATEWAY_REPLICA_ID": replica_id,
        "CODEX_GATEWAY_ADVERTISE_ADDR": f"127.0.0.1:{grpc_port}",
        "CODEX_GATEWAY_CLUSTER_TOKEN": CLUSTER_TOKEN,
        "CODEX_GATEWAY_REPLICA_LEASE_MS": str(lease_ms),
        **variables,
    }


@dataclass
class ReplicaCluster:
    """Replicas on one database; `add` them, `start` them, and every one is stopped at the end
    of `running_cluster`."""

    tmp: Path
    dsn: str
    options: dict[str, Any] = field(default_factory=dict)
    replicas: dict[str, ReplicaProcess] = field(default_factory=dict)

    def __getitem__(self, replica_id: str) -> ReplicaProcess:
        return self.replicas[replica_id]

    def add(self, replica_id: str, **variables: str) -> ReplicaProcess:
        """A replica (not started) in its own folder `tmp/<id>` with its own ports."""
        root = self.tmp / replica_id
        grpc_port = free_port()
        env = replica_env(root, self.dsn, replica_id, grpc_port, **{**self.options, **variables})
        replica = ReplicaProcess(replica_id, root, env, grpc_port, free_port())
        self.replicas[replica_id] = replica
        return replica

    async def start(self, replica_ids: Iterable[str]) -> None:
        """Start these replicas together and wait until each serves."""
        replicas = [self.replicas[replica_id] for replica_id in replica_ids]
        for replica in replicas:
            replica.spawn()
        for replica in replicas:
            assert replica.spawned is not None
            await until_serving(replica.spawned, START_TIMEOUT_S)

    async def stop_all(self) -> None:
        for replica in self.replicas.values():
            if replica.running():
                await replica.stop()

    async def alive_ids(self, through: str) -> list[str]:
        """The replicas alive as `through`'s GET /status lists them."""
        cluster = (await self[through].status())["cluster"]
        return [replica["replica_id"] for replica in cluster.get("replicas", [])]

    def logs(self) -> str:
        """Every replica's log tail, for a failure message."""
        return "\n".join(
            f"--- {replica.replica_id} ---\n{replica.log_tail()}"
            for replica in self.replicas.values()
        )


@contextlib.asynccontextmanager
async def running_cluster(
    tmp: Path, dsn: str, replica_ids: Iterable[str] = (), **options: Any
) -> AsyncIterator[ReplicaCluster]:
    """A cluster of these replicas, started and serving (`options` for `replica_env`: agent,
    model_url, lease_ms); every replica process stopped by pid when the block ends."""
    cluster = ReplicaCluster(tmp, dsn, options)
    try:
        ids = list(replica_ids)
        for replica_id in ids:
            cluster.add(replica_id)
        await cluster.start(ids)
        yield cluster
    finally:
        await cluster.stop_all()


async def eventually(
    condition: Any, timeout_s: float, what: str, *, interval_s: float = 0.1
) -> Any:
    """Await `condition()` (a coroutine function) until it returns something truthy; its value.
    AssertionError naming `what` after `timeout_s`; an exception it raises counts as not yet."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            last = await condition()
            if last:
                return last
        except (httpx.HTTPError, grpc.aio.AioRpcError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what} (last: {last!r})"
            )
        await asyncio.sleep(interval_s)
