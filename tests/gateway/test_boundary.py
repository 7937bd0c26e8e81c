"""The guard (gateway/boundary.py) around the servicer's real streaming methods: a failure after
the first message reaches the client as INTERNAL "Internal error", without the exception's text,
and is logged. The failures are real ones, not injected mocks: an event whose number no protobuf
Struct can hold (a JSON integer past a double's range) in a session's events.jsonl, or in what
the agent prints."""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.config import Config
from gateway.sessions import EVENTS
from tests.fakes import AGENTS_DIR
from tests.harness import running_gateway

HUGE = "1" + "0" * 400  # valid JSON; as a float it overflows


def _boundary_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.boundary"]


async def test_a_tail_that_fails_after_its_first_lines_is_internal(
    config_for: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py")
    async with running_gateway(config) as gw:
        result = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="a", env={"FAKE_AGENT_LINES": "5"})
                )
            )
        ).result
        events = Path(result.logs_path) / EVENTS
        with events.open("a") as log:
            log.write('{"type": "item.completed", "n": ' + HUGE + "}\n")
        received = []
        with (
            caplog.at_level(logging.ERROR, logger="gateway.boundary"),
            pytest.raises(grpc.aio.AioRpcError) as raised,
        ):
            async for message in gw.stub.TailSession(
                sessions_pb2.TailSessionRequest(
                    session_id=result.session_id, tail_lines=3, include_events=True
                )
            ):
                received.append(message)
    assert [m.WhichOneof("kind") for m in received] == ["line"] * 3 + ["event"] * 2
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "Internal error"
    (record,) = _boundary_records(caplog)
    assert record.getMessage() == "TailSession failed with OverflowError"


async def test_a_stream_completion_that_fails_after_it_started_is_internal(
    config_for: Callable[..., Config], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    agent = tmp_path / "overflow_agent.py"
    agent.write_text(
        "#!/usr/bin/env python3\n"
        "import sys, uuid\n"
        "sys.stdin.buffer.read()\n"
        'print(\'{"type": "thread.started", "thread_id": "%s"}\' % uuid.uuid4(), flush=True)\n'
        'print(\'{"type": "turn.started", "n": ' + HUGE + "}', flush=True)\n"
    )
    agent.chmod(agent.stat().st_mode | stat.S_IXUSR)
    config = config_for(codex_bin=agent)
    async with running_gateway(config) as gw:
        received = []
        with (
            caplog.at_level(logging.ERROR, logger="gateway.boundary"),
            pytest.raises(grpc.aio.AioRpcError) as raised,
        ):
            async for message in gw.stub.StreamCompletion(
                runs_pb2.StreamCompletionRequest(run=runs_pb2.RunInput(prompt="a"))
            ):
                received.append(message)
        # The run is over (recorded as failed), not left running.
        session_id = received[0].started.session_id
        after = await gw.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id))
    assert [m.WhichOneof("kind") for m in received] == ["started", "event"]
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "Internal error"
    (record,) = _boundary_records(caplog)
    assert record.getMessage() == "StreamCompletion failed with OverflowError"
    assert after.session.status != "running"
