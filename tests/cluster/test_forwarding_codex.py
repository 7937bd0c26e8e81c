"""The real codex CLI through a non-home replica: a thread homed on alpha, resumed through beta,
runs on alpha with its rollout (beta's CODEX_HOME has none: run there, the resume would fail)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx

from codex_gateway.v1 import runs_pb2
from tests.cluster.test_forwarding import WAIT_S, homed
from tests.fakes.model_server import ModelServer
from tests.harness import cluster_config, running_bridge, running_gateway


async def test_a_codex_thread_homed_elsewhere_is_resumed_on_its_home(
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

        first = (
            await alpha.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="[[reply:the alpaca is called Bruno]] hi")
                )
            )
        ).result
        thread = first.codex_session_id
        assert thread
        await homed(pg_dsn, first.session_id, "alpha")

        # gRPC: resume_session_id, the thread in upper case.
        resumed = (
            await beta.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(
                        prompt="[[scenario:echo_history]] recap",
                        resume_session_id=thread.upper(),
                    )
                )
            )
        ).result
        assert "the alpaca is called Bruno" in resumed.output
        assert resumed.codex_session_id == thread
        # REST: the thread as session_id, through beta's bridge.
        response = await rest.post(
            "/completion",
            json={"prompt": "[[scenario:echo_history]] again", "session_id": thread},
        )
        assert response.status_code == 200, response.text
        assert response.json()["session_id"] == first.session_id
        assert "the alpaca is called Bruno" in response.json()["output"]
        # Every run was alpha's.
        assert len(beta.gateway.store) == 0
        assert resumed.session_id in {session.id for session in alpha.gateway.store}


async def test_structured_output_and_its_mismatch_are_forwarded_with_their_details(
    tmp_path: Path, pg_dsn: str, model_server: ModelServer
) -> None:
    """A session homed on alpha, prompted with an output_schema through beta: the structured
    answer comes back, and a mismatch keeps its rich details (422 with schema_errors)."""
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
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
        first = (
            await alpha.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="[[reply:hi]] hi"))
            )
        ).result
        await homed(pg_dsn, first.session_id, "alpha")

        shaped = await rest.post(
            f"/sessions/{first.session_id}/prompt",
            json={"prompt": '[[reply:{"n": 7}]] count', "output_schema": schema},
        )
        assert shaped.status_code == 200, shaped.text
        assert shaped.json()["structured"] == {"n": 7}
        wrong = await rest.post(
            f"/sessions/{first.session_id}/prompt",
            json={"prompt": '[[reply:{"n": "seven"}]] count', "output_schema": schema},
        )
        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["schema_errors"] == [
            {"path": "/n", "message": '"seven" is not of type "integer"'}
        ]
        assert wrong.json()["session_id"] == first.session_id
        assert len(beta.gateway.store) == 0
