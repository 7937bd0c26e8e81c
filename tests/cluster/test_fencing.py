"""A replica that finds it was reaped while its agents ran: it stops them, and what it records
agrees with what the cluster already did."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import psycopg
import pytest

from codex_gateway.v1 import runs_pb2
from tests.cluster.test_store import row, wait_for_row
from tests.fakes import AGENTS_DIR
from tests.harness import cluster_config, running_gateway
from tests.processes import alive


async def test_a_reaped_replica_stops_its_agents_and_records_them_as_the_cluster_did(
    tmp_path: Path, pg_dsn: str
) -> None:
    slow = AGENTS_DIR / "slow_agent.py"
    async with contextlib.AsyncExitStack() as stack:
        alpha = await stack.enter_async_context(
            running_gateway(
                cluster_config(tmp_path, pg_dsn, "alpha", codex_bin=slow), background=True
            )
        )
        beta = await stack.enter_async_context(
            running_gateway(
                cluster_config(tmp_path, pg_dsn, "beta", codex_bin=slow), background=True
            )
        )
        request = runs_pb2.CompleteRequest(
            run=runs_pb2.RunInput(prompt="hi", env={"FAKE_AGENT_SECONDS": "120"})
        )
        call = asyncio.ensure_future(alpha.stub.Complete(request))
        pid = await wait_for_row(
            pg_dsn, "SELECT agent_pid FROM runs WHERE status = 'running' AND agent_pid IS NOT NULL"
        )
        # alpha paused past its lease, as far as the cluster can tell: beta reaps it
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await conn.execute(
                "UPDATE replicas SET lease_until = now() - interval '1 hour'"
                " WHERE replica_id = 'alpha'"
            )
        assert beta.gateway.node is not None
        assert await beta.gateway.node.replicas.reap() == ["alpha"]
        # alpha's next heartbeat finds its epoch gone: its agent is stopped, its run interrupted
        with pytest.raises(grpc.aio.AioRpcError) as stopped:
            await asyncio.wait_for(call, 30)
        assert stopped.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "replica alpha was lost during this run" in (stopped.value.details() or "")
        assert not alive(int(pid))
        # registered again, alpha's own record agrees with the reaper's
        await wait_for_row(
            pg_dsn, "SELECT 1 FROM replicas WHERE replica_id = 'alpha' AND state = 'alive'"
        )
        assert await row(pg_dsn, "SELECT status, record->>'error' FROM runs") == (
            "interrupted",
            "replica alpha was lost during this run",
        )
