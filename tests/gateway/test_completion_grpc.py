"""Complete over gRPC with the real codex CLI against the scripted model server."""

from __future__ import annotations

import json

import grpc
import pytest

from codex_gateway.v1 import runs_pb2
from tests.fakes.model_server import ModelServer
from tests.harness import RunningGateway


def completion(prompt: str, **fields: object) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=prompt, **fields))  # type: ignore[arg-type]


async def test_plain_answer_returns_the_agent_message_and_thread_id(
    gateway: RunningGateway,
) -> None:
    response = await gateway.stub.Complete(completion("say hello"))
    result = response.result
    assert result.status == "completed"
    assert result.output == "Hello from the fake model."
    assert result.content == result.output
    assert result.codex_session_id  # the thread id of thread.started
    assert result.session_id == result.gateway_session_id
    assert result.usage.input_tokens == 100 and result.usage.total_tokens == 110
    assert [m.role for m in result.messages] == ["user", "assistant"]
    meta = json.loads(
        (
            gateway.gateway.config.session_dirs[0] / f"session-{result.session_id}" / "meta.json"
        ).read_text()
    )
    assert meta["status"] == "completed" and meta["codex_session_id"] == result.codex_session_id


async def test_shell_tool_runs_in_the_workspace(gateway: RunningGateway) -> None:
    response = await gateway.stub.Complete(
        completion("[[scenario:tool]] [[cmd:echo made-by-codex > made.txt && cat made.txt]]")
    )
    workspace = gateway.gateway.config.default_workspace
    assert (workspace / "made.txt").read_text().strip() == "made-by-codex"
    assert "made-by-codex" in response.result.output
    assert any(call["type"] == "command_execution" for call in response.result.tool_calls)


async def test_follow_up_resumes_the_same_thread_with_per_run_usage(
    gateway: RunningGateway, model_server: ModelServer
) -> None:
    first = (await gateway.stub.Complete(completion("[[scenario:message]] remember 42"))).result
    second = (
        await gateway.stub.Complete(
            completion("[[scenario:echo_history]] what did I say?", session_id=first.session_id)
        )
    ).result
    assert second.session_id == first.session_id
    assert second.codex_session_id == first.codex_session_id
    assert "remember 42" in second.output
    # codex reports cumulative thread usage; the gateway reports this run's share.
    assert second.usage.input_tokens == 100


async def test_model_failure_is_internal_with_codex_message(gateway: RunningGateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.Complete(completion("[[scenario:http500]] fail please"))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details()


async def test_unknown_session_is_not_found(gateway: RunningGateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.Complete(completion("hi", session_id="no-such-session"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
