"""GetSessionChanges in a cluster: asked of any replica, answered by the session's home (the only
one that holds its workspace snapshots), on both protocols, while the run runs and after it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import httpx
import pytest

from codex_gateway.v1 import runs_pb2, sessions_pb2
from tests.cluster.test_forwarding import WAIT_S, homed
from tests.fakes import AGENTS_DIR
from tests.gitrepos import make_repo
from tests.harness import cluster_config, running_bridge, running_gateway


async def test_the_changes_of_a_session_are_answered_by_its_home_from_any_replica(
    tmp_path: Path, pg_dsn: str
) -> None:
    slow = AGENTS_DIR / "slow_agent.py"
    alpha_config = cluster_config(tmp_path, pg_dsn, "alpha", codex_bin=slow, max_concurrent=4)
    beta_config = cluster_config(tmp_path, pg_dsn, "beta", codex_bin=slow, max_concurrent=4)
    repo = make_repo(alpha_config.default_workspace)
    async with (
        running_gateway(alpha_config, background=True) as alpha,
        running_gateway(beta_config, background=True) as beta,
        running_bridge(beta.target) as url,
        httpx.AsyncClient(base_url=url, timeout=WAIT_S, trust_env=False) as rest,
    ):
        run = asyncio.ensure_future(
            alpha.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="wait", env={"FAKE_AGENT_SECONDS": "3"})
                )
            )
        )
        session_id = ""
        while not session_id:
            listing = await alpha.stub.ListSessions(sessions_pb2.ListSessionsRequest())
            session_id = listing.sessions[0].session_id if listing.sessions else ""
            await asyncio.sleep(0.05)
        await homed(pg_dsn, session_id, "alpha")
        request = sessions_pb2.GetSessionChangesRequest(session_id=session_id)
        during = await beta.stub.GetSessionChanges(request)
        while during.source != "git":  # until the base snapshot is taken
            assert during.running
            await asyncio.sleep(0.05)
            during = await beta.stub.GetSessionChanges(request)
        (repo / "made.txt").write_text("one\ntwo\n")  # the "agent's" edit, while it runs
        during = await beta.stub.GetSessionChanges(request)
        assert during.running and [f.path for f in during.files] == ["made.txt"]
        result = (await run).result
        assert result.status == "completed", result.error
        assert result.changes == runs_pb2.ChangesSummary(source="git", files=1, additions=2)

        on_alpha = await alpha.stub.GetSessionChanges(request)
        on_beta = await beta.stub.GetSessionChanges(request)
        assert on_beta == on_alpha
        assert [(f.path, f.status) for f in on_beta.files] == [("made.txt", "added")]
        assert not on_beta.running
        response = await rest.get(f"/sessions/{session_id}/changes", params={"diff": "true"})
        assert response.status_code == 200, response.text
        assert "+two" in response.json()["diff"]
        missing = await rest.get(f"/sessions/{session_id}/changes", params={"run_id": "nope"})
        assert missing.status_code == 404
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await beta.stub.GetSessionChanges(
                sessions_pb2.GetSessionChangesRequest(session_id=session_id, run_id="nope")
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
