"""Several followers of one session on one replica share one relayed stream from the home: each
still gets exactly its own tail (its backlog, its filters, every live item once and in order),
and a slow one is dropped with a lagged notice without disturbing the others."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import grpc

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, sessions_pb2
from tests.cluster.test_forwarding import WAIT_S, Pair, _config, _eventually, _run_on_alpha
from tests.cluster.test_forwarding import pair as pair  # the fixture
from tests.harness import running_gateway

Messages = list[sessions_pb2.TailSessionResponse]
LINES = 3000
# Paced, so that a follower that reads keeps up with a small buffer, on a busy machine too.
PACED = {"FAKE_AGENT_LINES": str(LINES), "FAKE_AGENT_PAUSE_MS": "1"}


def _live(message: sessions_pb2.TailSessionResponse) -> bool:
    return message.HasField("notice") and message.notice.kind == "following"


def _finished(message: sessions_pb2.TailSessionResponse) -> bool:
    return message.HasField("notice") and message.notice.kind == "run_finished"


async def _follow(call: grpc.aio.UnaryStreamCall, got: Messages, runs: int) -> None:  # type: ignore[type-arg]
    live = False
    async for message in call:
        got.append(message)
        live = live or _live(message)
        if live and _finished(message):
            runs -= 1
            if runs == 0:
                return


async def test_followers_on_one_replica_share_one_upstream_and_get_their_own_tails(
    pair: Pair,
) -> None:
    result = await _run_on_alpha(pair, lines=30)
    session = result.session_id
    # One upstream per set of streams asked for: these four ask for the same ones.
    requests = [
        sessions_pb2.TailSessionRequest(
            session_id=session, follow=True, tail_lines=0, include_events=True
        ),
        sessions_pb2.TailSessionRequest(
            session_id=session, follow=True, tail_lines=5, include_events=True
        ),
        sessions_pb2.TailSessionRequest(
            session_id=session, follow=True, after_seq=10, include_events=True
        ),
        sessions_pb2.TailSessionRequest(session_id=session, follow=True, include_events=True),
    ]
    calls = [pair.beta.stub.TailSession(request) for request in requests]
    got: list[Messages] = [[] for _ in calls]
    tasks = [
        asyncio.ensure_future(_follow(call, into, runs=1))
        for call, into in zip(calls, got, strict=True)
    ]
    try:
        for task, into in zip(tasks, got, strict=True):
            while not any(_live(m) for m in into):
                assert not task.done(), task
                await asyncio.sleep(0.02)
        assert pair.alpha.gateway.feed.followers(session) == 1
        assert pair.beta.gateway.forwarding is not None
        assert pair.beta.gateway.forwarding._tails.upstreams() == 1
        await pair.beta.stub.PromptSession(
            runs_pb2.PromptSessionRequest(
                session_id=session,
                run=runs_pb2.RunInput(prompt="more", env={"FAKE_AGENT_LINES": "500"}),
            )
        )
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
    finally:
        for call in calls:
            call.cancel()
    # Each got its own backlog, then every later item it wants, once and in order: what the
    # home gives from the backlog's last item on.
    for request, received in zip(requests, got, strict=True):
        live_from = next(i for i, m in enumerate(received) if _live(m))
        backlog = [m for m in received[:live_from] if m.HasField("seq")]
        live = [m for m in received[live_from + 1 :] if m.HasField("seq")]
        assert live
        if request.HasField("after_seq"):
            since = sessions_pb2.TailSessionRequest(
                session_id=session, after_seq=request.after_seq, include_events=True
            )
            home = [m async for m in pair.alpha.stub.TailSession(since)]
            assert backlog == home[: len(backlog)]
        elif not request.HasField("tail_lines"):
            assert backlog  # the default number of lines
        elif request.tail_lines == 5:
            assert len([m for m in backlog if m.HasField("line")]) == 5  # and their events
        else:
            assert backlog == []  # tail_lines=0: only what comes next
        after = sessions_pb2.TailSessionRequest(
            session_id=session,
            after_seq=backlog[-1].seq if backlog else live[0].seq - 1,
            include_events=request.include_events,
            include_stderr=request.include_stderr,
        )
        assert live == [m async for m in pair.alpha.stub.TailSession(after)]
    assert await _eventually(lambda: pair.alpha.gateway.feed.followers(session) == 0)
    assert await _eventually(lambda: pair.beta.gateway.forwarding._tails.upstreams() == 0)  # type: ignore[union-attr]


async def test_followers_asking_other_streams_get_an_upstream_of_just_those(pair: Pair) -> None:
    result = await _run_on_alpha(pair, lines=3)
    session = result.session_id
    lines_only = sessions_pb2.TailSessionRequest(session_id=session, follow=True, tail_lines=0)
    with_events = sessions_pb2.TailSessionRequest(
        session_id=session, follow=True, tail_lines=0, include_events=True
    )
    calls = [pair.beta.stub.TailSession(lines_only), pair.beta.stub.TailSession(with_events)]
    got: list[Messages] = [[], []]
    tasks = [
        asyncio.ensure_future(_follow(call, into, runs=1))
        for call, into in zip(calls, got, strict=True)
    ]
    try:
        for task, into in zip(tasks, got, strict=True):
            while not any(_live(m) for m in into):
                assert not task.done(), task
                await asyncio.sleep(0.02)
        assert pair.beta.gateway.forwarding is not None
        assert pair.beta.gateway.forwarding._tails.upstreams() == 2
        await pair.beta.stub.PromptSession(
            runs_pb2.PromptSessionRequest(
                session_id=session,
                run=runs_pb2.RunInput(prompt="more", env={"FAKE_AGENT_LINES": "20"}),
            )
        )
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
    finally:
        for call in calls:
            call.cancel()
    assert not any(m.HasField("event") for m in got[0])
    assert any(m.HasField("event") for m in got[1])


async def test_a_slow_follower_is_dropped_with_lagged_and_the_others_go_on(
    tmp_path: Path, pg_dsn: str
) -> None:
    beta_config = dataclasses.replace(
        _config(tmp_path, pg_dsn, "beta"), follower_buffer_bytes=64 * 1024
    )
    async with (
        running_gateway(_config(tmp_path, pg_dsn, "alpha"), background=True) as alpha,
        running_gateway(beta_config, background=True) as beta,
    ):
        pair_ = Pair(alpha, beta, alpha.gateway.config, None, pg_dsn)  # type: ignore[arg-type]
        result = await _run_on_alpha(pair_, lines=2)
        session = result.session_id
        request = sessions_pb2.TailSessionRequest(
            session_id=session, follow=True, tail_lines=0, include_events=True
        )
        reader = beta.stub.TailSession(request)
        # Its own connection, whose window stays small (no BDP probing): beta cannot send it
        # more than a few dozen KiB ahead of its reading.
        slow_channel = grpc.aio.insecure_channel(beta.target, options=[("grpc.http2.bdp_probe", 0)])
        sleeper = gateway_pb2_grpc.GatewayServiceStub(slow_channel).TailSession(request)
        got: Messages = []
        task = asyncio.ensure_future(_follow(reader, got, runs=1))
        try:
            assert await _eventually(lambda: any(_live(m) for m in got))
            first = await sleeper.read()
            assert _live(first)  # then it reads nothing while the burst goes by
            await alpha.stub.PromptSession(
                runs_pb2.PromptSessionRequest(
                    session_id=session,
                    run=runs_pb2.RunInput(prompt="more", env=PACED),
                )
            )
            await asyncio.wait_for(task, WAIT_S)
            rest = []
            while (message := await sleeper.read()) is not grpc.aio.EOF:
                rest.append(message)
        finally:
            reader.cancel()
            sleeper.cancel()
            await slow_channel.close()
        texts = [m.event["item"]["text"] for m in got if m.HasField("event") and "item" in m.event]
        assert texts == [f"line {n}" for n in range(LINES)]
        assert rest[-1].notice.kind == "lagged"
        assert "after_seq=" in rest[-1].notice.message
        resume_after = int(rest[-1].notice.message.rsplit("after_seq=", 1)[1].split()[0])
        seqs = [m.seq for m in rest if m.HasField("seq")]
        assert seqs == sorted(seqs) and (not seqs or seqs[-1] == resume_after)
