"""The cluster's session store (gateway/cluster/store.py): every replica's sessions and run records
in PostgreSQL, one run per session across the cluster, a dead replica's runs interrupted."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psycopg

from codex_gateway.v1 import runs_pb2, sessions_pb2
from tests.fakes.model_server import ModelServer
from tests.harness import cluster_config, running_gateway


def run(prompt: str = "hi", session_id: str | None = None) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=prompt, session_id=session_id))


async def test_a_completion_on_one_replica_is_listed_by_another_with_its_run(
    tmp_path: Path, pg_dsn: str, model_server: ModelServer
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        alpha = await stack.enter_async_context(
            running_gateway(
                cluster_config(tmp_path, pg_dsn, "alpha", model_url=model_server.base_url),
                background=True,
            )
        )
        beta = await stack.enter_async_context(
            running_gateway(
                cluster_config(tmp_path, pg_dsn, "beta", model_url=model_server.base_url),
                background=True,
            )
        )
        result = (await alpha.stub.Complete(run())).result
        listed = await beta.stub.ListSessions(sessions_pb2.ListSessionsRequest())
        (summary,) = listed.sessions
        assert summary.session_id == result.session_id
        assert summary.status == "completed" and summary.runs == 1
        assert summary.dir.endswith(f"session-{result.session_id}")
        assert summary.codex_session_id == result.codex_session_id
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute(
                "SELECT run_id, session_id, replica_id, status, record->>'status' FROM runs"
            ).fetchall()
            home, active = conn.execute(
                "SELECT home_replica, active_run_id FROM sessions"
            ).fetchone() or (None, None)
        assert rows == [(result.run_id, result.session_id, "alpha", "completed", "completed")]
        assert (home, active) == ("alpha", None)
