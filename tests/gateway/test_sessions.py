"""Session RPCs over gRPC: list, detail, search, prompt, nudge, cancel, secure sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_gateway
from tests.processes import running_below


def run(prompt: str = "hi", **fields: Any) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=prompt, **fields))


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


@pytest.fixture
def echo_config(config_for: Callable[..., Config]) -> Config:
    return config_for(codex_bin=AGENTS_DIR / "echo_agent.py", max_concurrent=8)


async def test_list_is_newest_first_with_default_and_clamped_limits(echo_config: Config) -> None:
    async with running_gateway(echo_config) as gw:
        ids = [(await gw.stub.Complete(run(f"n{i}"))).result.session_id for i in range(3)]
        listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())
        assert [s.session_id for s in listed.sessions] == ids[::-1]
        first = listed.sessions[0]
        assert first.runs == 1 and first.status == "completed" and first.codex_session_id
        assert first.dir.endswith(f"session-{ids[-1]}") and first.modified
        two = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest(limit=2))
        assert len(two.sessions) == 2
        huge = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest(limit=10_000))
        assert len(huge.sessions) == 3
        error = await rpc_error(gw.stub.ListSessions(sessions_pb2.ListSessionsRequest(limit=0)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_since_filters_and_rejects_a_bad_timestamp(echo_config: Config) -> None:
    async with running_gateway(echo_config) as gw:
        old = (await gw.stub.Complete(run())).result
        await asyncio.sleep(0.05)
        listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())
        cut = listed.sessions[0].modified
        new = (await gw.stub.Complete(run())).result
        since = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest(since=cut))
        assert [s.session_id for s in since.sessions] == [new.session_id]
        assert old.session_id not in [s.session_id for s in since.sessions]
        error = await rpc_error(
            gw.stub.ListSessions(sessions_pb2.ListSessionsRequest(since="yesterday"))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "since" in (
            error.details() or ""
        )


async def test_an_unreadable_session_is_listed_and_left_alone(echo_config: Config) -> None:
    broken = echo_config.session_dirs[0] / "session-broken"
    broken.mkdir(parents=True)
    (broken / "meta.json").write_text("{not json")
    (broken / "stdout.log").write_text("precious logs\n")
    async with running_gateway(echo_config) as gw:
        listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())
        (item,) = listed.sessions
        assert item.session_id == "broken" and item.status == "unreadable" and item.error
        error = await rpc_error(
            gw.stub.GetSession(sessions_pb2.GetSessionRequest(session_id="broken"))
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
    assert (broken / "meta.json").read_text() == "{not json"
    assert (broken / "stdout.log").read_text() == "precious logs\n"


async def test_a_session_directory_appears_whole_and_a_half_created_one_is_removed(
    echo_config: Config,
) -> None:
    root = echo_config.session_dirs[0]
    # A gateway killed while creating a session leaves its staging directory behind.
    staged = root / ".session-0b7c6a52-0000-4000-8000-000000000000.creating"
    staged.mkdir(parents=True)
    (staged / "meta.json").write_text('{"session_id": "0b7c6a52"}')
    async with running_gateway(echo_config) as gw:
        assert not staged.exists()
        assert not (await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())).sessions
        result = (await gw.stub.Complete(run(metadata=None))).result
    entries = sorted(p.name for p in root.iterdir() if "session-" in p.name)
    assert entries == [f"session-{result.session_id}"]
    meta = json.loads((root / entries[0] / "meta.json").read_text())
    assert meta["session_id"] == result.session_id and meta["status"] == "completed"


async def test_detail_by_either_id_with_tails_and_events(echo_config: Config) -> None:
    async with running_gateway(echo_config) as gw:
        result = (await gw.stub.Complete(run(metadata=None))).result
        for key in (result.session_id, result.codex_session_id):
            got = (await gw.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=key))).session
            assert got.session_id == result.session_id
        got = (
            await gw.stub.GetSession(
                sessions_pb2.GetSessionRequest(
                    session_id=result.session_id, tail=3, include_events=True, include_stderr=True
                )
            )
        ).session
        assert got.runs == 1 and got.run_history[0].run_id == result.run_id
        assert (
            got.run_history[0].status == "completed"
            and got.run_history[0].usage.input_tokens == 100
        )
        assert got.stdout.tail_lines == 3 and len(got.stdout.tail.splitlines()) == 3
        assert "===== RUN" in got.stdout.tail and "END" in got.stdout.tail
        # events are tail-limited too, so a large session never answers with all of them
        assert [e["type"] for e in got.events] == [
            "turn.started",
            "item.completed",
            "turn.completed",
        ]
        assert got.stderr.tail_lines == 3
        clamped = (
            await gw.stub.GetSession(
                sessions_pb2.GetSessionRequest(session_id=result.session_id, tail_lines=99_999)
            )
        ).session
        assert clamped.stdout.tail_lines == echo_config.max_tail_lines
        error = await rpc_error(
            gw.stub.GetSession(sessions_pb2.GetSessionRequest(session_id="nope"))
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details() == "Session 'nope' not found"


async def test_search_exact_and_fuzzy(echo_config: Config) -> None:
    async with running_gateway(echo_config) as gw:
        result = (await gw.stub.Complete(run("the Quick brown fox"))).result
        log = Path(result.logs_path) / "stdout.log"
        with log.open("a") as f:
            f.write("\n\n\nan Error happened here\nall good\nerror again: disk full\n")
        found = await gw.stub.SearchSession(
            sessions_pb2.SearchSessionRequest(session_id=result.session_id, q="error")
        )
        assert [s.context for s in found.signals][-2:] == [
            "an Error happened here",
            "error again: disk full",
        ]
        text = log.read_text()
        for sig in found.signals:
            assert text[sig.start : sig.end].lower() == "error"
            assert (
                text.splitlines()[sig.line - 1] == sig.context
                or sig.context in text.splitlines()[sig.line - 1]
            )
            assert sig.signal_type == "text_match" and sig.score == 1.0
        fuzzy = await gw.stub.SearchSession(
            sessions_pb2.SearchSessionRequest(
                session_id=result.session_id, q="eror disk ful", fuzzy=True
            )
        )
        assert fuzzy.signals[0].context == "error again: disk full"
        scores = [s.score for s in fuzzy.signals]
        assert scores == sorted(scores, reverse=True)
        missing = await rpc_error(
            gw.stub.SearchSession(sessions_pb2.SearchSessionRequest(session_id=result.session_id))
        )
        assert (
            missing.code() == grpc.StatusCode.INVALID_ARGUMENT
            and missing.details() == "Query parameter q is required"
        )
        tail_only = await gw.stub.SearchSession(
            sessions_pb2.SearchSessionRequest(session_id=result.session_id, q="error", tail_lines=1)
        )
        assert [s.context for s in tail_only.signals] == ["error again: disk full"]
        assert tail_only.signals[0].line == 1  # lines count within the searched tail


async def test_prompt_continues_the_codex_thread(gateway: RunningGateway) -> None:
    first = (await gateway.stub.Complete(run("[[scenario:message]] remember 42"))).result
    follow = (
        await gateway.stub.PromptSession(
            runs_pb2.PromptSessionRequest(
                session_id=first.codex_session_id,
                run=runs_pb2.RunInput(prompt="[[scenario:echo_history]] what did I say?"),
            )
        )
    ).result
    assert (
        follow.session_id == first.session_id and follow.codex_session_id == first.codex_session_id
    )
    assert "remember 42" in follow.output
    error = await rpc_error(
        gateway.stub.PromptSession(runs_pb2.PromptSessionRequest(session_id=first.session_id))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_nudge_replays_the_last_prompt_and_merges_metadata(echo_config: Config) -> None:
    async with running_gateway(echo_config) as gw:
        request = run("do the thing", nudge_prompt="stored nudge")
        request.run.metadata.update({"a": 1})
        first = (await gw.stub.Complete(request)).result
        nudge = runs_pb2.NudgeSessionRequest(session_id=first.session_id)
        nudge.run.metadata.update({"retry": True})
        replayed = (await gw.stub.NudgeSession(nudge)).result
        assert "do the thing" in json.loads(replayed.output)["prompt"]
        assert dict(replayed.metadata) == {"a": 1, "retry": True}
        detail = (
            await gw.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=first.session_id))
        ).session
        assert dict(detail.metadata) == {"a": 1, "retry": True}
        assert detail.run_history[-1].source == "nudge"
        given = runs_pb2.NudgeSessionRequest(
            session_id=first.session_id, run=runs_pb2.RunInput(prompt="new words")
        )
        assert (
            "new words" in json.loads((await gw.stub.NudgeSession(given)).result.output)["prompt"]
        )


async def test_nudge_falls_back_to_the_stored_nudge_prompt(echo_config: Config) -> None:
    legacy = echo_config.session_dirs[0] / "session-legacy"
    legacy.mkdir(parents=True)
    (legacy / "meta.json").write_text(
        json.dumps({"session_id": "legacy", "nudge_prompt": "keep going", "runs": []})
    )
    empty = echo_config.session_dirs[0] / "session-empty"
    empty.mkdir(parents=True)
    (empty / "meta.json").write_text(json.dumps({"session_id": "empty", "runs": []}))
    async with running_gateway(echo_config) as gw:
        result = (
            await gw.stub.NudgeSession(runs_pb2.NudgeSessionRequest(session_id="legacy"))
        ).result
        assert "keep going" in json.loads(result.output)["prompt"]
        error = await rpc_error(
            gw.stub.NudgeSession(runs_pb2.NudgeSessionRequest(session_id="empty"))
        )
        assert (
            error.code() == grpc.StatusCode.INVALID_ARGUMENT
            and error.details() == "No nudge prompt configured"
        )


async def test_cancel_stops_a_real_running_command(gateway: RunningGateway, tmp_path: Path) -> None:
    stream = gateway.stub.StreamCompletion(
        runs_pb2.StreamCompletionRequest(
            run=runs_pb2.RunInput(prompt="[[scenario:tool]] [[cmd:sleep 321]]", timeout_ms=60_000)
        )
    )
    session_id = (await stream.read()).started.session_id
    while True:  # wait until codex has started the command
        message = await stream.read()
        if message.WhichOneof("kind") == "event" and message.event["type"] == "item.started":
            break
    cancelled = await gateway.stub.CancelSession(
        sessions_pb2.CancelSessionRequest(session_id=session_id)
    )
    assert cancelled.cancelled and cancelled.run_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while await stream.read() is not grpc.aio.EOF:
            pass
    assert caught.value.code() == grpc.StatusCode.CANCELLED
    assert running_below() == {}
    detail = (
        await gateway.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id))
    ).session
    assert detail.status == "cancelled" and detail.run_history[-1].status == "cancelled"
    again = await gateway.stub.CancelSession(
        sessions_pb2.CancelSessionRequest(session_id=session_id)
    )
    assert not again.cancelled and again.status == "cancelled"


async def test_secure_sessions_need_the_token_everywhere(config_for: Callable[..., Config]) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", secure_token="tok-123")
    good = (("x-codex-secure-token", "tok-123"),)
    async with running_gateway(config) as gw:
        denied = await rpc_error(gw.stub.Complete(run(secure=True)))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        secure = (await gw.stub.Complete(run(secure=True), metadata=good)).result
        assert Path(secure.logs_path).parent == config.secure_session_dir
        plain = (await gw.stub.Complete(run())).result
        listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())
        assert [s.session_id for s in listed.sessions] == [plain.session_id]
        listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=good)
        assert {s.session_id for s in listed.sessions} == {plain.session_id, secure.session_id}
        for metadata in ((), (("x-codex-secure-token", "wrong"),)):
            for call in (
                gw.stub.GetSession(
                    sessions_pb2.GetSessionRequest(session_id=secure.session_id), metadata=metadata
                ),
                gw.stub.SearchSession(
                    sessions_pb2.SearchSessionRequest(session_id=secure.session_id, q="x"),
                    metadata=metadata,
                ),
                gw.stub.PromptSession(
                    runs_pb2.PromptSessionRequest(
                        session_id=secure.session_id, run=runs_pb2.RunInput(prompt="x")
                    ),
                    metadata=metadata,
                ),
                gw.stub.NudgeSession(
                    runs_pb2.NudgeSessionRequest(session_id=secure.session_id), metadata=metadata
                ),
                gw.stub.CancelSession(
                    sessions_pb2.CancelSessionRequest(session_id=secure.session_id),
                    metadata=metadata,
                ),
                gw.stub.Complete(run(session_id=secure.session_id), metadata=metadata),
            ):
                assert (await rpc_error(call)).code() == grpc.StatusCode.PERMISSION_DENIED
        query_token = (("x-secure-token-query", "tok-123"),)
        got = await gw.stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=secure.session_id), metadata=query_token
        )
        assert got.session.secure
        upgrade = await rpc_error(
            gw.stub.Complete(run(session_id=plain.session_id, secure=True), metadata=good)
        )
        assert upgrade.code() == grpc.StatusCode.INVALID_ARGUMENT
