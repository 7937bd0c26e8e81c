"""Run semantics: streaming, surviving the client, sticky model, system prompt, one at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from codex_gateway.v1 import runs_pb2
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_gateway


def run_input(prompt: str = "hi", **fields: Any) -> runs_pb2.RunInput:
    return runs_pb2.RunInput(prompt=prompt, **fields)


async def test_stream_sends_started_then_events_as_they_happen_then_the_result(
    gateway: RunningGateway,
) -> None:
    kinds: list[str] = []
    events: list[str] = []
    final = None
    request = runs_pb2.StreamCompletionRequest(run=run_input("[[scenario:tool]] [[cmd:echo hi]]"))
    async for message in gateway.stub.StreamCompletion(request):
        kind = message.WhichOneof("kind")
        kinds.append(kind)
        if kind == "event":
            events.append(message.event["type"])
        if kind == "completed":
            final = message.completed
    assert kinds[0] == "started" and kinds[-1] == "completed"
    assert events[0] == "thread.started" and events[-1] == "turn.completed"
    assert "item.started" in events
    assert final is not None and final.status == "completed" and "hi" in final.output


async def test_stream_of_a_failing_request_ends_with_its_status(gateway: RunningGateway) -> None:
    request = runs_pb2.StreamCompletionRequest(run=run_input(session_id="missing"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in gateway.stub.StreamCompletion(request):
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_run_survives_its_client_going_away(config_for: Callable[..., Config]) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "slow_agent.py")
    async with running_gateway(config) as gw:
        call = gw.stub.Complete(
            runs_pb2.CompleteRequest(run=run_input(env={"FAKE_AGENT_SECONDS": "1"}))
        )
        await asyncio.sleep(0.3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        (session_dir,) = config.session_dirs[0].glob("session-*")
        for _ in range(100):
            meta = json.loads((session_dir / "meta.json").read_text())
            if meta["status"] != "running":
                break
            await asyncio.sleep(0.1)
        assert meta["status"] == "completed"


async def test_the_session_remembers_its_model(config_for: Callable[..., Config]) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", default_model="gpt-5.5")
    async with running_gateway(config) as gw:
        first = (
            await gw.stub.Complete(runs_pb2.CompleteRequest(run=run_input(model="gpt-6-sol")))
        ).result
        second = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(run=run_input(session_id=first.session_id))
            )
        ).result
        argv = json.loads(second.output)["argv"]
        assert argv[argv.index("--model") + 1] == "gpt-6-sol"
        assert second.model == "gpt-6-sol"
        resume = argv.index("resume")
        assert argv[resume:] == ["resume", "--", first.codex_session_id, "-"]
        fresh = (await gw.stub.Complete(runs_pb2.CompleteRequest(run=run_input()))).result
        assert fresh.model == "gpt-5.5"


async def test_the_global_system_prompt_comes_once_before_the_request_one(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    prompt_file = tmp_path / "GLOBAL.md"
    prompt_file.write_text("GLOBAL RULES\n")
    config = config_for(
        codex_bin=AGENTS_DIR / "echo_agent.py",
        system_prompt_file=prompt_file,
        system_prompt_disabled=False,
    )
    async with running_gateway(config) as gw:
        result = (
            await gw.stub.Complete(runs_pb2.CompleteRequest(run=run_input(system_prompt="MINE")))
        ).result
    sent = json.loads(result.output)["prompt"]
    assert sent == "System:\nGLOBAL RULES\n\nMINE\n\nUser:\nhi\n\nAssistant:\n"


async def test_messages_win_over_prompt_and_metadata_is_echoed(
    config_for: Callable[..., Config],
) -> None:
    async with running_gateway(config_for(codex_bin=AGENTS_DIR / "echo_agent.py")) as gw:
        request = runs_pb2.CompleteRequest(
            run=runs_pb2.RunInput(
                prompt="ignored",
                messages=[runs_pb2.ChatMessage(role="user", content="from messages")],
            )
        )
        request.run.metadata.update({"source": "api", "n": 1})
        result = (await gw.stub.Complete(request)).result
    assert "from messages" in json.loads(result.output)["prompt"]
    assert "ignored" not in json.loads(result.output)["prompt"]
    assert dict(result.metadata) == {"source": "api", "n": 1}


async def test_one_run_at_a_time_per_session(config_for: Callable[..., Config]) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "slow_agent.py", max_concurrent=4)
    async with running_gateway(config) as gw:
        stream = gw.stub.StreamCompletion(
            runs_pb2.StreamCompletionRequest(run=run_input(env={"FAKE_AGENT_SECONDS": "1"}))
        )
        started = await stream.read()
        session_id = started.started.session_id
        with pytest.raises(grpc.aio.AioRpcError) as busy:
            await gw.stub.Complete(runs_pb2.CompleteRequest(run=run_input(session_id=session_id)))
        assert busy.value.code() == grpc.StatusCode.ABORTED
        assert "already running" in (busy.value.details() or "")
        while (message := await stream.read()) is not grpc.aio.EOF:
            last = message
        assert last.completed.status == "completed"
