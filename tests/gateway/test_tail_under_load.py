"""A live tail while agents print as fast as they can: a follower that reads keeps up and sees
every item exactly once, in order; one that cannot is told it lagged (and where to resume);
none is ever left with a silent gap. Over gRPC and REST.

The load is the stress benchmark's (bench/responsiveness.py): chatty fake agents that flood
stdout and stderr until their deadline; the output budget (gateway/agent/budget.py) paces them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import httpx
import pytest

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, sessions_pb2
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_bridge, running_gateway

AGENTS = 4
RUN_MS = 2500
TAIL = {"follow": "true", "include_events": "true", "include_stderr": "true"}


async def _chatty_runs(gw: RunningGateway) -> tuple[list[tuple[str, int]], list[asyncio.Task[Any]]]:
    """`AGENTS` streamed runs of the chatty agent: each one's session and the seq of its
    run_started notice, and the tasks reading the streams to their end."""
    opened: list[asyncio.Future[tuple[str, int]]] = []
    readers = []

    async def read(started: asyncio.Future[tuple[str, int]]) -> None:
        request = runs_pb2.StreamCompletionRequest(
            run=runs_pb2.RunInput(prompt="talk", timeout_ms=RUN_MS)
        )
        try:
            async for message in gw.stub.StreamCompletion(request):
                if message.WhichOneof("kind") == "started" and not started.done():
                    started.set_result((message.started.session_id, message.seq))
        except grpc.aio.AioRpcError as exc:  # the deadline ends every run
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc

    for _ in range(AGENTS):
        started: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
        opened.append(started)
        readers.append(asyncio.create_task(read(started)))
    return [await asyncio.wait_for(started, 30) for started in opened], readers


def _check(seqs: list[int], after: int, ending: str) -> None:
    """Every item after `after`, once and in order, up to the run's end or a lagged notice."""
    assert seqs == list(range(after + 1, after + 1 + len(seqs))), "a gap or a repeat"
    assert ending in ("run_finished", "lagged"), ending


@pytest.fixture
async def loaded(
    config_for: Callable[..., Config],
) -> AsyncIterator[tuple[RunningGateway, list[tuple[str, int]], list[asyncio.Task[Any]]]]:
    config = config_for(codex_bin=AGENTS_DIR / "endless_agent.py", max_concurrent=AGENTS)
    async with running_gateway(config) as gw:
        sessions, readers = await _chatty_runs(gw)
        try:
            yield gw, sessions, readers
        finally:
            await asyncio.wait_for(asyncio.gather(*readers), 60)


async def _grpc_follow(stub: gateway_pb2_grpc.GatewayServiceStub, session: str, after: int) -> str:
    seqs: list[int] = []
    request = sessions_pb2.TailSessionRequest(
        session_id=session, follow=True, include_events=True, include_stderr=True, after_seq=after
    )
    async for message in stub.TailSession(request):
        if message.HasField("seq"):
            seqs.append(message.seq)
        if message.WhichOneof("kind") == "notice" and message.notice.kind in (
            "run_finished",
            "lagged",
        ):
            _check(seqs, after, message.notice.kind)
            return message.notice.kind
    raise AssertionError("the tail ended without the run's end or a lagged notice")


async def test_a_reading_grpc_follower_keeps_up_or_is_told_under_load(
    loaded: tuple[RunningGateway, list[tuple[str, int]], list[asyncio.Task[Any]]],
) -> None:
    gw, sessions, _ = loaded
    endings = await asyncio.wait_for(
        asyncio.gather(*(_grpc_follow(gw.stub, session, seq) for session, seq in sessions)), 60
    )
    assert set(endings) <= {"run_finished", "lagged"}


async def test_a_reading_rest_follower_keeps_up_or_is_told_under_load(
    loaded: tuple[RunningGateway, list[tuple[str, int]], list[asyncio.Task[Any]]],
) -> None:
    gw, sessions, _ = loaded
    session, after = sessions[0]
    seqs: list[int] = []
    ending = ""
    async with (
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
        http.stream(
            "GET", f"/sessions/{session}/tail", params={**TAIL, "after_seq": str(after)}
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            result = json.loads(line)["result"]
            if result.get("seq") is not None:
                seqs.append(int(result["seq"]))
            notice = result.get("notice") or {}
            if notice.get("kind") in ("run_finished", "lagged"):
                ending = notice["kind"]
                break
    _check(seqs, after, ending)


async def test_a_follower_that_stops_reading_is_told_it_lagged_under_load(
    config_for: Callable[..., Config],
) -> None:
    # A small follower buffer, and a channel whose receive window does not grow (no BDP
    # probing): what the follower does not read piles up in the gateway, not in the transport.
    config = config_for(
        codex_bin=AGENTS_DIR / "endless_agent.py",
        max_concurrent=AGENTS,
        follower_buffer_bytes=65_536,
    )
    async with running_gateway(config) as gw:
        sessions, readers = await _chatty_runs(gw)
        session, after = sessions[0]
        async with grpc.aio.insecure_channel(
            gw.target, options=[("grpc.http2.bdp_probe", 0)]
        ) as narrow:
            stalled = gateway_pb2_grpc.GatewayServiceStub(narrow).TailSession(
                sessions_pb2.TailSessionRequest(
                    session_id=session,
                    follow=True,
                    include_events=True,
                    include_stderr=True,
                    after_seq=after,
                )
            )
            await stalled.read()  # subscribed; now it stops reading until the runs end
            await asyncio.wait_for(asyncio.gather(*readers), 60)
            assert gw.gateway.feed.followers(session) == 0  # dropped, not holding the run
            seqs: list[int] = []
            last = None
            while (message := await stalled.read()) is not grpc.aio.EOF:
                if message.HasField("seq"):
                    seqs.append(message.seq)
                last = message
        assert last is not None and last.WhichOneof("kind") == "notice"
        assert last.notice.kind == "lagged"
        _check(seqs, after, "lagged")
