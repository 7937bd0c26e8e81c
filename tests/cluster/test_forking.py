"""Forks in a cluster: a fork asked of a replica that is not the parent's home runs on the home,
where the parent's codex rollout is (beta's CODEX_HOME has none: forked there, codex would fail),
and the new session lives there too; every replica lists it with its origin."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx

from codex_gateway.v1 import runs_pb2, sessions_pb2
from tests.cluster.test_forwarding import WAIT_S, homed
from tests.fakes.model_server import ModelServer
from tests.harness import cluster_config, running_bridge, running_gateway


async def test_a_fork_asked_of_another_replica_runs_and_lives_on_the_parents_home(
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
        url = await stack.enter_async_context(running_bridge(beta.target))
        rest = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=WAIT_S))

        parent = (
            await alpha.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="[[reply:the alpaca is called Bruno]] hi")
                )
            )
        ).result
        await homed(pg_dsn, parent.session_id, "alpha")

        # gRPC, through beta: the fork continues the parent's history.
        forked = (
            await beta.stub.ForkSession(
                runs_pb2.ForkSessionRequest(
                    session_id=parent.session_id,
                    run=runs_pb2.RunInput(prompt="[[scenario:echo_history]] recap"),
                )
            )
        ).result
        assert "the alpaca is called Bruno" in forked.output
        assert forked.codex_session_id not in ("", parent.codex_session_id)
        await homed(pg_dsn, forked.session_id, "alpha")
        # REST, through beta's bridge, naming the parent by its thread: a fork without a turn.
        response = await rest.post(f"/sessions/{parent.codex_session_id}/fork", json={})
        assert response.status_code == 200, response.text
        quiet = response.json()
        assert quiet["output"] == "" and quiet["codex_session_id"] != parent.codex_session_id
        await homed(pg_dsn, quiet["session_id"], "alpha")

        # Every run was alpha's; beta lists the forks from the database with their origin.
        assert len(beta.gateway.store) == 0
        assert {forked.session_id, quiet["session_id"]} <= {s.id for s in alpha.gateway.store}
        origin = {
            "session_id": parent.session_id,
            "codex_session_id": parent.codex_session_id,
            "run_id": parent.run_id,
        }
        listed = {s["session_id"]: s for s in (await rest.get("/sessions")).json()}
        assert listed[forked.session_id]["forked_from"] == origin
        assert listed[quiet["session_id"]]["forked_from"] == origin
        assert listed[parent.session_id].get("forked_from") is None
        shown = (await rest.get(f"/sessions/{forked.session_id}")).json()
        assert shown["forked_from"] == origin
        # The quiet fork goes on from the parent's history, through beta again.
        onward = await rest.post(
            f"/sessions/{quiet['session_id']}/prompt",
            json={"prompt": "[[scenario:echo_history]] and now?"},
        )
        assert onward.status_code == 200, onward.text
        assert "the alpaca is called Bruno" in onward.json()["output"]
        parent_now = (
            await beta.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=parent.session_id))
        ).session
        assert parent_now.runs == 1  # untouched
