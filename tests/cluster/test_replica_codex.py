"""The real codex CLI through a non-home replica process: a thread homed on alpha (its rollout in
alpha's CODEX_HOME only) resumed through beta runs on alpha and remembers the first turn."""

from __future__ import annotations

from pathlib import Path

import grpc

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2
from tests.cluster.processes import running_cluster
from tests.fakes.model_server import ModelServer


async def test_a_codex_thread_homed_on_one_replica_resumes_through_another(
    tmp_path: Path, pg_dsn: str, model_server: ModelServer
) -> None:
    async with running_cluster(
        tmp_path, pg_dsn, ["alpha", "beta"], model_url=model_server.base_url
    ) as cluster:
        async with cluster["alpha"].client(timeout=60) as alpha:
            first = await alpha.post(
                "/completion", json={"prompt": "[[reply:the alpaca is called Bruno]] hi"}
            )
        assert first.status_code == 200, first.text
        session_id, thread = first.json()["session_id"], first.json()["codex_session_id"]
        rollouts = list((cluster["alpha"].root / "codex-home" / "sessions").rglob("*.jsonl"))
        assert rollouts, "alpha's CODEX_HOME has the thread's rollout"
        assert not (cluster["beta"].root / "codex-home" / "sessions").exists()

        # REST through beta: the thread as session_id.
        async with cluster["beta"].client(timeout=60) as beta:
            again = await beta.post(
                "/completion",
                json={"prompt": "[[scenario:echo_history]] recap", "session_id": thread},
            )
        assert again.status_code == 200, again.text
        assert again.json()["session_id"] == session_id
        assert "the alpaca is called Bruno" in again.json()["output"]

        # gRPC through beta: resume_session_id.
        async with grpc.aio.insecure_channel(cluster["beta"].target) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            resumed = await stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(
                        prompt="[[scenario:echo_history]] once more", resume_session_id=thread
                    )
                ),
                timeout=60,
            )
        assert resumed.result.codex_session_id == thread  # a new session on the same thread
        assert "the alpaca is called Bruno" in resumed.result.output

        # Every run ran on alpha: beta's codex never started a thread.
        assert not (cluster["beta"].root / "codex-home" / "sessions").exists()
        assert not list((cluster["beta"].root / "sessions").glob("session-*"))
        homed = {path.name for path in (cluster["alpha"].root / "sessions").glob("session-*")}
        assert homed == {f"session-{session_id}", f"session-{resumed.result.session_id}"}
