"""Live tails: the last lines, then every new line as the running session writes it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import grpc

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, sessions_pb2
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_gateway


def line_numbers(texts: list[str]) -> list[int]:
    numbers = []
    for text in texts:
        if text.startswith("{"):
            event = json.loads(text)
            item = event.get("item", {})
            if item.get("type") == "agent_message" and item["text"].startswith("line "):
                numbers.append(int(item["text"].split()[1]))
    return numbers


async def follow_until_finished(
    stub, session_id: str, **fields
) -> list[sessions_pb2.TailSessionResponse]:  # type: ignore[no-untyped-def]
    received = []
    call = stub.TailSession(
        sessions_pb2.TailSessionRequest(session_id=session_id, follow=True, **fields)
    )
    async for message in call:
        received.append(message)
        if message.WhichOneof("kind") == "notice" and message.notice.kind in (
            "run_finished",
            "lagged",
        ):
            call.cancel()
            break
    return received


async def test_a_follower_gets_every_line_of_a_run_in_order(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py")
    async with running_gateway(config) as gw:
        first = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="a", env={"FAKE_AGENT_LINES": "3"})
                )
            )
        ).result
        followers = [
            asyncio.ensure_future(follow_until_finished(gw.stub, first.session_id, tail_lines=1))
            for _ in range(3)
        ]
        await asyncio.sleep(0.3)
        second = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(
                        prompt="b", session_id=first.session_id, env={"FAKE_AGENT_LINES": "3000"}
                    )
                )
            )
        ).result
        assert second.status == "completed"
        for received in await asyncio.gather(*followers):
            texts = [m.line.text for m in received if m.WhichOneof("kind") == "line"]
            assert line_numbers(texts[1:]) == list(range(3000))
            assert (
                received[-1].notice.kind == "run_finished"
                and received[-1].notice.status == "completed"
            )


async def test_tail_without_follow_returns_the_last_lines(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py")
    async with running_gateway(config) as gw:
        result = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="a", env={"FAKE_AGENT_LINES": "50"})
                )
            )
        ).result
        messages = [
            m
            async for m in gw.stub.TailSession(
                sessions_pb2.TailSessionRequest(
                    session_id=result.session_id, tail_lines=5, include_events=True
                )
            )
        ]
        lines = [m.line.text for m in messages if m.WhichOneof("kind") == "line"]
        events = [m.event for m in messages if m.WhichOneof("kind") == "event"]
        assert len(lines) == 5 and "END" in lines[-1]
        assert len(events) == 5 and events[-1]["type"] == "turn.completed"


async def test_a_stalled_follower_neither_delays_the_run_nor_stays_subscribed(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py")
    async with running_gateway(config) as gw:
        env = {"FAKE_AGENT_LINES": "20000"}
        first = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="a", env=env))
            )
        ).result
        started = time.perf_counter()
        await gw.stub.Complete(
            runs_pb2.CompleteRequest(
                run=runs_pb2.RunInput(prompt="a", session_id=first.session_id, env=env)
            )
        )
        alone = time.perf_counter() - started
        # A client on a channel whose receive window does not grow (no BDP probing), like one
        # on a slow link: gRPC holds back what it has not read, so the run's 20,000 lines pile
        # up in the gateway, past the follower's buffer. (With a growing window the transport
        # can absorb them all, and on a slow machine it did: the follower was never behind.)
        async with grpc.aio.insecure_channel(
            gw.target, options=[("grpc.http2.bdp_probe", 0)]
        ) as narrow:
            stalled = gateway_pb2_grpc.GatewayServiceStub(narrow).TailSession(
                sessions_pb2.TailSessionRequest(
                    session_id=first.session_id, follow=True, tail_lines=1
                )
            )
            await stalled.read()  # subscribed; now it stops reading
            started = time.perf_counter()
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="a", session_id=first.session_id, env=env)
                )
            )
            with_stalled = time.perf_counter() - started
            assert with_stalled < alone * 3 + 1, (alone, with_stalled)
            assert gw.gateway.feed.followers(first.session_id) == 0
            kinds = []
            while (message := await stalled.read()) is not grpc.aio.EOF:
                kinds.append(message.WhichOneof("kind"))
            assert kinds[-1] == "notice"


async def test_a_follower_sees_a_real_codex_run(gateway: RunningGateway) -> None:
    first = (
        await gateway.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi")))
    ).result
    follower = asyncio.ensure_future(
        follow_until_finished(gateway.stub, first.session_id, tail_lines=1, include_events=True)
    )
    await asyncio.sleep(0.2)
    await gateway.stub.Complete(
        runs_pb2.CompleteRequest(
            run=runs_pb2.RunInput(
                prompt="[[scenario:tool]] [[cmd:echo tailed]]", session_id=first.session_id
            )
        )
    )
    received = await follower
    events = [m.event["type"] for m in received if m.WhichOneof("kind") == "event"]
    # the first is the tail of the earlier run; the live ones follow
    assert events[1] == "thread.started" and events[-1] == "turn.completed"
    texts = [m.line.text for m in received if m.WhichOneof("kind") == "line"]
    assert any("tailed" in t for t in texts)
