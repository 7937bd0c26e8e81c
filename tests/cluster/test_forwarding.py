"""Forwarding: a session homed on replica alpha is read, searched, tailed, prompted, nudged and
cancelled through replica beta, on both protocols (REST through beta's own bridge), with alpha's
answers and errors as alpha gives them; alpha down is 503 REPLICA_UNAVAILABLE naming it.

Two in-process replicas on a real PostgreSQL, with the fast fake agents (the real codex runs
through a non-home replica in test_forwarding_codex.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.rpc import error_details_pb2, status_pb2

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, cluster_config, running_bridge, running_gateway

WAIT_S = 30  # generous: the machine is shared


@dataclass
class Pair:
    alpha: RunningGateway
    beta: RunningGateway
    alpha_config: Config
    rest: httpx.AsyncClient  # beta's bridge
    dsn: str


async def homed(dsn: str, session_id: str, replica: str) -> None:
    """Wait until the home's store has written the session's row (written behind)."""
    deadline = time.monotonic() + WAIT_S
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            cursor = await conn.execute(
                "SELECT home_replica FROM sessions WHERE session_id = %s", (session_id,)
            )
            row = await cursor.fetchone()
            if row is not None:
                assert row[0] == replica
                return
            assert time.monotonic() < deadline, f"session {session_id} never reached the table"
            await asyncio.sleep(0.02)


async def stray_row(dsn: str, session_id: str, replica: str) -> None:
    """A row of the table whose session its home does not have."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO sessions (session_id, home_replica, replica_epoch, secure, status,"
            " created_at, updated_at, meta) VALUES (%s, %s, 0, false, 'idle', now(), now(), '{}')",
            (session_id, replica),
        )


def _config(tmp_path: Path, dsn: str, replica: str, agent: str = "counter_agent.py") -> Config:
    return cluster_config(tmp_path, dsn, replica, codex_bin=AGENTS_DIR / agent, max_concurrent=4)


@pytest.fixture
async def pair(tmp_path: Path, pg_dsn: str) -> AsyncIterator[Pair]:
    alpha_config = _config(tmp_path, pg_dsn, "alpha")
    async with (
        running_gateway(alpha_config, background=True) as alpha,
        running_gateway(_config(tmp_path, pg_dsn, "beta"), background=True) as beta,
        running_bridge(beta.target) as url,
        httpx.AsyncClient(base_url=url, timeout=WAIT_S) as rest,
    ):
        yield Pair(alpha, beta, alpha_config, rest, pg_dsn)


async def _run_on_alpha(pair: Pair, lines: int = 5, **run: Any) -> runs_pb2.RunResult:
    env = {"FAKE_AGENT_LINES": str(lines)}
    response = await pair.alpha.stub.Complete(
        runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="count", env=env, **run))
    )
    await homed(pair.dsn, response.result.session_id, "alpha")
    return response.result


def _reason(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason, dict(info.metadata)
    return "", {}


async def test_get_and_search_through_another_replica_answer_as_the_home(pair: Pair) -> None:
    result = await _run_on_alpha(pair)
    request = sessions_pb2.GetSessionRequest(session_id=result.session_id, tail_lines=10)
    on_alpha = await pair.alpha.stub.GetSession(request)
    on_beta = await pair.beta.stub.GetSession(request)
    assert on_beta == on_alpha
    assert on_beta.session.session_id == result.session_id
    # By its codex thread too, in upper case.
    by_thread = await pair.beta.stub.GetSession(
        sessions_pb2.GetSessionRequest(session_id=result.codex_session_id.upper())
    )
    assert by_thread.session.session_id == result.session_id

    search = sessions_pb2.SearchSessionRequest(session_id=result.session_id, q="line 3")
    found = await pair.beta.stub.SearchSession(search)
    assert found == await pair.alpha.stub.SearchSession(search)
    assert found.signals

    response = await pair.rest.get(f"/sessions/{result.session_id}", params={"tail_lines": 10})
    assert response.status_code == 200, response.text
    assert response.json()["session_id"] == result.session_id
    response = await pair.rest.get(f"/sessions/{result.session_id}/search", params={"q": "line 3"})
    assert response.status_code == 200, response.text
    assert response.json()["signals"]


async def test_an_unknown_session_is_404_from_any_replica(pair: Pair) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pair.beta.stub.GetSession(sessions_pb2.GetSessionRequest(session_id="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    response = await pair.rest.get("/sessions/nope")
    assert response.status_code == 404


async def test_a_forwarded_call_is_never_forwarded_again(pair: Pair) -> None:
    """The database says alpha, but alpha has no such session: alpha answers 404 itself."""
    await stray_row(pair.dsn, "ghost", "alpha")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pair.beta.stub.GetSession(sessions_pb2.GetSessionRequest(session_id="ghost"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "ghost" in (caught.value.details() or "")


async def test_the_home_error_comes_back_as_it_was(pair: Pair) -> None:
    result = await _run_on_alpha(pair)
    request = sessions_pb2.TailSessionRequest(session_id=result.session_id, after_seq=10**9)
    errors = []
    for stub in (pair.alpha.stub, pair.beta.stub):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [m async for m in stub.TailSession(request, metadata=(("x-request-id", "same-1"),))]
        errors.append(caught.value)
    assert {e.code() for e in errors} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert errors[0].details() == errors[1].details()
    assert _reason(errors[0]) == _reason(errors[1])
    assert _reason(errors[1])[1]["request_id"] == "same-1"  # the home was given the call's id
    # A call without one: the id beta chose is the one alpha answered with.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [m async for m in pair.beta.stub.TailSession(request)]
    chosen = dict(caught.value.trailing_metadata() or ())["x-request-id"]
    assert _reason(caught.value)[1]["request_id"] == chosen
    response = await pair.rest.get(
        f"/sessions/{result.session_id}/tail", params={"after_seq": 10**9}
    )
    assert response.status_code == 400
    assert response.json()["error"] == errors[0].details()


def _items(messages: list[sessions_pb2.TailSessionResponse]) -> list[tuple[int, str]]:
    return [(m.seq, m.line.text) for m in messages if m.HasField("seq") and m.HasField("line")]


async def test_tail_through_another_replica_gives_the_home_items(pair: Pair) -> None:
    result = await _run_on_alpha(pair, lines=50)
    for request in (
        sessions_pb2.TailSessionRequest(session_id=result.session_id, tail_lines=7),
        sessions_pb2.TailSessionRequest(session_id=result.session_id, after_seq=3),
    ):
        on_alpha = [m async for m in pair.alpha.stub.TailSession(request)]
        on_beta = [m async for m in pair.beta.stub.TailSession(request)]
        assert on_beta == on_alpha
        assert on_beta
    response = await pair.rest.get(f"/sessions/{result.session_id}/tail", params={"after_seq": 3})
    assert response.status_code == 200
    seqs = [json.loads(line)["result"]["seq"] for line in response.text.splitlines()]
    assert seqs == [m.seq for m in on_beta]


async def test_a_following_tail_through_another_replica_gets_a_burst_complete_and_in_order(
    pair: Pair,
) -> None:
    first = await _run_on_alpha(pair, lines=2)
    lines = 1000
    session = first.session_id
    request = sessions_pb2.TailSessionRequest(
        session_id=session, follow=True, tail_lines=0, include_events=True
    )
    tail = pair.beta.stub.TailSession(request)
    got: list[sessions_pb2.TailSessionResponse] = []

    async def follow() -> None:
        async for message in tail:
            got.append(message)
            if message.HasField("notice") and message.notice.kind == "run_finished":
                return

    following = asyncio.ensure_future(follow())
    try:
        while not any(m.HasField("notice") and m.notice.kind == "following" for m in got):
            await asyncio.sleep(0.02)
            assert not following.done(), following
        # Through beta as well: the prompt is forwarded to alpha, where the run happens.
        await pair.beta.stub.PromptSession(
            runs_pb2.PromptSessionRequest(
                session_id=session,
                run=runs_pb2.RunInput(prompt="more", env={"FAKE_AGENT_LINES": str(lines)}),
            )
        )
        await asyncio.wait_for(following, WAIT_S)
    finally:
        tail.cancel()
        following.cancel()
    events = [m for m in got if m.HasField("event")]
    texts = [m.event["item"]["text"] for m in events if "item" in m.event]
    assert texts == [f"line {n}" for n in range(lines)]
    seqs = [m.seq for m in got if m.HasField("seq")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # The same items as the home has, in a resumed tail from alpha.
    after = sessions_pb2.TailSessionRequest(
        session_id=session, after_seq=seqs[0] - 1, include_events=True
    )
    assert [m for m in got if m.HasField("seq")] == [
        m async for m in pair.alpha.stub.TailSession(after)
    ]


async def test_a_rest_follower_through_another_replica_resumes_after_a_seq(pair: Pair) -> None:
    result = await _run_on_alpha(pair, lines=20)
    session = result.session_id
    received: list[dict[str, Any]] = []

    async def follow() -> None:
        params = {"follow": "true", "after_seq": "5"}
        async with pair.rest.stream("GET", f"/sessions/{session}/tail", params=params) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                item = json.loads(line)["result"]
                received.append(item)
                if item.get("notice", {}).get("kind") == "run_finished" and len(received) > 25:
                    return

    following = asyncio.ensure_future(follow())
    try:
        while not any(r.get("notice", {}).get("kind") == "following" for r in received):
            await asyncio.sleep(0.02)
            assert not following.done(), following
        response = await pair.rest.post(
            f"/sessions/{session}/prompt",
            json={"prompt": "again", "env": {"FAKE_AGENT_LINES": "3"}},
        )
        assert response.status_code == 200, response.text
        await asyncio.wait_for(following, WAIT_S)
    finally:
        following.cancel()
    seqs = [r["seq"] for r in received if r.get("seq") is not None]
    home = sessions_pb2.TailSessionRequest(session_id=session, after_seq=5)
    assert seqs == [m.seq async for m in pair.alpha.stub.TailSession(home)]
    assert seqs[0] > 5


async def test_a_client_leaving_a_relayed_tail_ends_the_home_side(pair: Pair) -> None:
    result = await _run_on_alpha(pair, lines=2)
    request = sessions_pb2.TailSessionRequest(session_id=result.session_id, follow=True)
    feed = pair.alpha.gateway.feed
    for _ in range(3):
        tail = pair.beta.stub.TailSession(request)
        async for message in tail:
            if message.HasField("notice") and message.notice.kind == "following":
                break
        assert await _eventually(lambda: feed.followers(result.session_id) == 1)
        tail.cancel()
        assert await _eventually(lambda: feed.followers(result.session_id) == 0)


async def _eventually(check: Any, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return bool(check())


async def test_prompt_and_nudge_through_another_replica_run_on_the_home(pair: Pair) -> None:
    result = await _run_on_alpha(pair, lines=2)
    session = result.session_id
    prompted = await pair.beta.stub.PromptSession(
        runs_pb2.PromptSessionRequest(
            session_id=session, run=runs_pb2.RunInput(prompt="more", env={"FAKE_AGENT_LINES": "4"})
        )
    )
    assert prompted.result.session_id == session
    nudged = await pair.beta.stub.NudgeSession(runs_pb2.NudgeSessionRequest(session_id=session))
    assert nudged.result.session_id == session
    response = await pair.rest.post(f"/sessions/{session}/nudge", json={})
    assert response.status_code == 200, response.text
    response = await pair.rest.post(
        "/completion", json={"prompt": "x", "session_id": session, "env": {"FAKE_AGENT_LINES": "1"}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["session_id"] == session
    # Every run is alpha's: its history holds all five, beta has no session of its own.
    detail = await pair.alpha.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session))
    assert len(detail.session.run_history) == 5
    assert len(pair.beta.gateway.store) == 0


async def test_cancel_through_another_replica_stops_the_home_run(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with (
        running_gateway(_config(tmp_path, pg_dsn, "alpha", "hang_agent.py"), background=True) as a,
        running_gateway(_config(tmp_path, pg_dsn, "beta", "hang_agent.py"), background=True) as b,
        running_bridge(b.target) as url,
        httpx.AsyncClient(base_url=url, timeout=WAIT_S) as rest,
    ):
        for protocol in ("grpc", "rest"):
            stream = a.stub.StreamCompletion(
                runs_pb2.StreamCompletionRequest(run=runs_pb2.RunInput(prompt="hang"))
            )
            started = (await stream.read()).started
            await homed(pg_dsn, started.session_id, "alpha")
            # One run per session: a second through beta is alpha's 409.
            if protocol == "grpc":
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await b.stub.PromptSession(
                        runs_pb2.PromptSessionRequest(
                            session_id=started.session_id, run=runs_pb2.RunInput(prompt="again")
                        )
                    )
                assert caught.value.code() == grpc.StatusCode.ABORTED
            else:
                response = await rest.post(
                    f"/sessions/{started.session_id}/prompt", json={"prompt": "again"}
                )
                assert response.status_code == 409, response.text
            asked = time.monotonic()
            if protocol == "grpc":
                cancelled = await b.stub.CancelSession(
                    sessions_pb2.CancelSessionRequest(session_id=started.session_id)
                )
                assert cancelled.cancelled and cancelled.run_id == started.run_id
            else:
                response = await rest.post(f"/sessions/{started.session_id}/cancel")
                assert response.status_code == 200, response.text
                assert response.json()["cancelled"] is True
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while await stream.read() is not grpc.aio.EOF:
                    pass
            took = time.monotonic() - asked
            assert ended.value.code() == grpc.StatusCode.CANCELLED
            assert took < WAIT_S
            print(f"cancel through beta ({protocol}) stopped alpha's run in {took * 1000:.0f} ms")


async def test_the_home_down_is_503_naming_it_and_calls_work_when_it_returns(
    tmp_path: Path, pg_dsn: str
) -> None:
    alpha_config = _config(tmp_path, pg_dsn, "alpha")
    async with (
        running_gateway(_config(tmp_path, pg_dsn, "beta"), background=True) as beta,
        running_bridge(beta.target) as url,
        httpx.AsyncClient(base_url=url, timeout=WAIT_S) as rest,
    ):
        async with running_gateway(alpha_config, background=True) as alpha:
            response = await alpha.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="x", env={"FAKE_AGENT_LINES": "3"})
                )
            )
            session = response.result.session_id
            await homed(pg_dsn, session, "alpha")
            request = sessions_pb2.GetSessionRequest(session_id=session)
            await beta.stub.GetSession(request)
        # Stopped: its lease ended.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await beta.stub.GetSession(request)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        reason, facts = _reason(caught.value)
        assert facts.pop("request_id")  # every error names its request
        assert (reason, facts) == ("REPLICA_UNAVAILABLE", {"replica_id": "alpha"})
        assert "alpha" in (caught.value.details() or "")
        response = await rest.get(f"/sessions/{session}")
        assert response.status_code == 503
        assert response.json()["reason"] == "REPLICA_UNAVAILABLE"
        assert response.json()["replica_id"] == "alpha"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [
                m
                async for m in beta.stub.TailSession(
                    sessions_pb2.TailSessionRequest(session_id=session)
                )
            ]
        assert _reason(caught.value)[0] == "REPLICA_UNAVAILABLE"
        # Alive in the table, but nobody answers at its address: the same.
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await conn.execute(
                "UPDATE replicas SET state = 'alive', lease_until = now() + interval '1 hour'"
                " WHERE replica_id = 'alpha'"
            )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await beta.stub.GetSession(request)
        reason, facts = _reason(caught.value)
        assert facts.pop("request_id")  # every error names its request
        assert (reason, facts) == ("REPLICA_UNAVAILABLE", {"replica_id": "alpha"})
        # Back, with the same configuration and folders.
        async with running_gateway(alpha_config, background=True):
            deadline = time.monotonic() + WAIT_S
            while True:
                try:
                    found = await beta.stub.GetSession(request)
                    break
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert found.session.session_id == session
            assert (await rest.get(f"/sessions/{session}")).status_code == 200


async def test_the_relay_sends_what_is_ready_in_batches(pair: Pair) -> None:
    from codex_gateway.v1 import cluster_pb2, cluster_pb2_grpc
    from gateway.api.relay import MAX_BATCH_ITEMS
    from tests.harness import CLUSTER_TOKEN

    result = await _run_on_alpha(pair, lines=3000)
    tail = sessions_pb2.TailSessionRequest(
        session_id=result.session_id, after_seq=0, include_events=True
    )
    relay = cluster_pb2_grpc.ClusterServiceStub(pair.alpha.channel)
    batches = [
        batch
        async for batch in relay.RelayTail(
            cluster_pb2.RelayTailRequest(tail=tail),
            metadata=(("x-codex-gateway-cluster-token", CLUSTER_TOKEN),),
        )
    ]
    items = [item for batch in batches for item in batch.items]
    assert items == [m async for m in pair.alpha.stub.TailSession(tail)]
    assert len(items) > 3000
    assert all(0 < len(batch.items) <= MAX_BATCH_ITEMS for batch in batches)
    assert len(batches) < len(items) / 10


async def test_a_streamed_completion_in_a_session_homed_elsewhere_streams_from_the_home(
    pair: Pair,
) -> None:
    result = await _run_on_alpha(pair, lines=2)
    messages = [
        m
        async for m in pair.beta.stub.StreamCompletion(
            runs_pb2.StreamCompletionRequest(
                run=runs_pb2.RunInput(
                    prompt="go", session_id=result.session_id, env={"FAKE_AGENT_LINES": "7"}
                )
            )
        )
    ]
    assert messages[0].started.session_id == result.session_id
    assert messages[-1].completed.session_id == result.session_id
    assert str(pair.alpha.gateway.config.session_dirs[0]) in messages[0].started.logs_path
    response = await pair.rest.post(
        "/completion/stream",
        json={"prompt": "go", "session_id": result.session_id, "env": {"FAKE_AGENT_LINES": "3"}},
    )
    assert response.status_code == 200
    last = json.loads(response.text.splitlines()[-1])
    assert last["result"]["completed"]["session_id"] == result.session_id


async def test_a_client_deadline_through_another_replica_is_deadline_exceeded(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with (
        running_gateway(_config(tmp_path, pg_dsn, "alpha", "hang_agent.py"), background=True) as a,
        running_gateway(_config(tmp_path, pg_dsn, "beta", "hang_agent.py"), background=True) as b,
    ):
        stream = a.stub.StreamCompletion(
            runs_pb2.StreamCompletionRequest(run=runs_pb2.RunInput(prompt="hang"))
        )
        started = (await stream.read()).started
        await homed(pg_dsn, started.session_id, "alpha")
        await a.stub.CancelSession(sessions_pb2.CancelSessionRequest(session_id=started.session_id))
        assert await _eventually(lambda: a.gateway.runner.running == 0)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await b.stub.PromptSession(
                runs_pb2.PromptSessionRequest(
                    session_id=started.session_id, run=runs_pb2.RunInput(prompt="hang again")
                ),
                timeout=1.5,
            )
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # A run outlives its caller (as without a cluster): it goes on on alpha until cancelled.
        await b.stub.CancelSession(sessions_pb2.CancelSessionRequest(session_id=started.session_id))
        assert await _eventually(lambda: a.gateway.runner.running == 0)
