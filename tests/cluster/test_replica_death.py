"""Runs across replica processes: a run on one replica is listed through every other, and a
replica SIGKILLed mid-run has its run `interrupted` in the others' listings within two leases
(plus a few seconds of scanning), its session still listed; reads of a dead replica's session
through another answer 503 naming it, and work again once it is back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest

from codex_gateway.v1 import gateway_pb2_grpc, sessions_pb2
from tests.cluster.processes import LEASE_MS, ReplicaCluster, eventually, running_cluster
from tests.faults.spawned import agents_of, kill_pids

THREE = ("alpha", "beta", "gamma")
INTERRUPTED_WITHIN_S = 2 * LEASE_MS / 1000 + 5


async def listed(cluster: ReplicaCluster, through: str) -> dict[str, dict[str, Any]]:
    """GET /sessions through `through`: session id -> its summary."""
    async with cluster[through].client(timeout=10) as client:
        answer = await client.get("/sessions", params={"limit": "100"})
    answer.raise_for_status()
    return {summary["session_id"]: summary for summary in answer.json()}


async def test_a_run_on_one_replica_is_listed_through_the_others(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with running_cluster(tmp_path, pg_dsn, THREE) as cluster:
        async with cluster["alpha"].client() as client:
            done = await client.post("/completion", json={"prompt": "on alpha"})
        assert done.status_code == 200, done.text
        session_id = done.json()["session_id"]
        for through in THREE:
            sessions = await listed(cluster, through)
            assert set(sessions) == {session_id}, (through, sessions)
            assert sessions[session_id]["status"] == "completed"
            assert sessions[session_id]["runs"] == 1


@pytest.mark.timeout(120)
async def test_a_replica_killed_mid_run_has_its_run_interrupted_within_two_leases(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with running_cluster(tmp_path, pg_dsn, THREE, agent="slow_agent.py") as cluster:
        alpha = cluster["alpha"]
        agents: set[int] = set()
        try:
            async with alpha.client() as client:
                call = asyncio.ensure_future(
                    client.post(
                        "/completion",
                        json={"prompt": "long", "env": {"FAKE_AGENT_SECONDS": "60"}},
                    )
                )

                async def running_everywhere() -> str | None:
                    for through in ("beta", "gamma"):
                        sessions = await listed(cluster, through)
                        if [s["status"] for s in sessions.values()] != ["running"]:
                            return None
                    return next(iter(sessions))

                session_id = await eventually(running_everywhere, 20, "the run listed running")
                agents = agents_of(alpha.pid, "slow_agent")
                killed_at = time.monotonic()
                alpha.kill()
                with contextlib.suppress(httpx.HTTPError):
                    await call  # its connection dies with alpha
            kill_pids(agents)  # the agent outlives a SIGKILLed gateway: ours to end

            async def interrupted_in_both() -> bool:
                listings = [await listed(cluster, through) for through in ("beta", "gamma")]
                return all(
                    session_id in sessions and sessions[session_id]["status"] == "interrupted"
                    for sessions in listings
                )

            await eventually(interrupted_in_both, INTERRUPTED_WITHIN_S + 5, "the run interrupted")
            elapsed = time.monotonic() - killed_at
            assert elapsed <= INTERRUPTED_WITHIN_S, (elapsed, cluster.logs())
            with psycopg.connect(pg_dsn) as conn:
                runs = conn.execute("SELECT status, replica_id FROM runs").fetchall()
                active = conn.execute("SELECT active_run_id FROM sessions").fetchall()
                kinds = conn.execute("SELECT record->'failure'->>'kind' FROM runs").fetchall()
            assert runs == [("interrupted", "alpha")]
            assert kinds == [("interrupted",)]  # the reaper's record says why
            assert active == [(None,)]  # the session is free for a run elsewhere
        finally:
            kill_pids(agents)


async def test_a_dead_replicas_sessions_answer_503_naming_it_until_it_returns(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with running_cluster(tmp_path, pg_dsn, ["alpha", "beta"]) as cluster:
        async with cluster["alpha"].client() as client:
            done = await client.post("/completion", json={"prompt": "homed on alpha"})
        assert done.status_code == 200, done.text
        session_id = done.json()["session_id"]
        request = sessions_pb2.GetSessionRequest(session_id=session_id)
        async with cluster["beta"].client() as beta:
            assert (await beta.get(f"/sessions/{session_id}")).status_code == 200
            cluster["alpha"].kill()

            async def unavailable() -> bool:
                answer = await beta.get(f"/sessions/{session_id}")
                return answer.status_code == 503

            # At once while its lease runs (nobody answers at its address), and after the reap.
            await eventually(unavailable, 10, "503 through beta")
            for _ in range(2):
                answer = await beta.get(f"/sessions/{session_id}")
                assert answer.status_code == 503, answer.text
                assert answer.json()["reason"] == "REPLICA_UNAVAILABLE"
                assert answer.json()["replica_id"] == "alpha"
                async with grpc.aio.insecure_channel(cluster["beta"].target) as channel:
                    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await stub.GetSession(request, timeout=10)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "alpha" in (caught.value.details() or "")
                # Still listed, from the database.
                assert session_id in await listed(cluster, "beta")
                await eventually(
                    lambda: _reaped(pg_dsn, "alpha"), INTERRUPTED_WITHIN_S, "alpha reaped"
                )

            await cluster["alpha"].start()

            async def readable() -> bool:
                return (await beta.get(f"/sessions/{session_id}")).status_code == 200

            await eventually(readable, 20, "the session readable through beta again")
            body = (await beta.get(f"/sessions/{session_id}")).json()
            assert body["session_id"] == session_id and body["status"] == "completed"


async def _reaped(dsn: str, replica_id: str) -> bool:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT state FROM replicas WHERE replica_id = %s", (replica_id,)
        )
        row = await cursor.fetchone()
    return row is not None and row[0] == "reaped"
