"""An integer past a double's range is valid JSON, and an agent may print one: a protobuf Struct
(whose numbers are doubles) cannot hold it, which used to fail the message it was in — a tail,
a streamed completion, the run itself. It is now carried as its decimal text."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

from google.protobuf import json_format

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.api.views import to_struct
from gateway.config import Config
from gateway.sessions.files import EVENTS
from tests.fakes import AGENTS_DIR
from tests.harness import running_gateway

HUGE = "1" + "0" * 400  # valid JSON; as a float it overflows


def test_to_struct_carries_an_integer_no_double_holds_as_text() -> None:
    value = {"n": int(HUGE), "list": [1, int(HUGE), {"deep": -int(HUGE)}], "ok": 2**60, "b": True}
    assert json_format.MessageToDict(to_struct(value)) == {
        "n": HUGE,
        "list": [1.0, HUGE, {"deep": "-" + HUGE}],
        "ok": float(2**60),
        "b": True,
    }


async def test_a_tail_reads_an_event_with_such_an_integer(
    config_for: Callable[..., Config],
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
        with (Path(result.logs_path) / EVENTS).open("a") as log:  # as an older writer left it
            log.write('{"type": "item.completed", "n": ' + HUGE + "}\n")
        messages = [
            message
            async for message in gw.stub.TailSession(
                sessions_pb2.TailSessionRequest(
                    session_id=result.session_id, after_seq=result.last_seq, include_events=True
                )
            )
        ]
    (only,) = messages
    assert only.seq == result.last_seq + 1 and only.event.fields["n"].string_value == HUGE


async def test_a_run_whose_agent_prints_such_an_integer_completes(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    agent = tmp_path / "overflow_agent.py"
    agent.write_text(
        "#!/usr/bin/env python3\n"
        "import sys, uuid\n"
        "sys.stdin.buffer.read()\n"
        'print(\'{"type": "thread.started", "thread_id": "%s"}\' % uuid.uuid4(), flush=True)\n'
        'print(\'{"type": "turn.started", "n": ' + HUGE + "}', flush=True)\n"
        'print(\'{"type": "item.completed", "item": {"type": "agent_message", "text": "ok"}}\')\n'
        'print(\'{"type": "turn.completed", "usage": {"input_tokens": 1, "output_tokens": 1}}\')\n'
    )
    agent.chmod(agent.stat().st_mode | stat.S_IXUSR)
    config = config_for(codex_bin=agent)
    async with running_gateway(config) as gw:
        received = [
            message
            async for message in gw.stub.StreamCompletion(
                runs_pb2.StreamCompletionRequest(run=runs_pb2.RunInput(prompt="a"))
            )
        ]
    kinds = [m.WhichOneof("kind") for m in received]
    assert kinds[0] == "started" and kinds[-1] == "completed"
    assert received[-1].completed.status == "completed" and received[-1].completed.output == "ok"
    assert received[2].event.fields["n"].string_value == HUGE
