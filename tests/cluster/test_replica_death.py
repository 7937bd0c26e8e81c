"""Runs across replica processes: a run on one replica is listed through every other, and a
replica SIGKILLed mid-run has its run `interrupted` in the others' listings within two leases
(plus a few seconds of scanning), its session still listed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

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
            assert runs == [("interrupted", "alpha")]
            assert active == [(None,)]  # the session is free for a run elsewhere
        finally:
            kill_pids(agents)
