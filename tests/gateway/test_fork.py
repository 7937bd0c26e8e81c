"""Forks (ForkSession, POST /sessions/:id/fork) with the real codex against the scripted model:
a fork continues the parent's history in a thread of its own while the parent goes on alone and
untouched; a fork without a prompt runs no turn; the new session names its parent; and every
refusal, on both protocols."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.config import Config, WebhookConfig
from gateway.sessions.codec import decode_session, encode_session
from gateway.sessions.model import ForkOrigin
from tests.fakes import AGENTS_DIR
from tests.fakes.model_server import ModelServer, write_codex_home
from tests.fakes.webhook_receiver import Receiver
from tests.harness import RunningGateway, running_bridge, running_gateway

TOKEN = "fork-secure-token"
SECURE = (("x-codex-secure-token", TOKEN),)
PARENT_MODEL = "gpt-6-parent"


@pytest.fixture
async def served(
    config_for: Callable[..., Config], model_server: ModelServer, tmp_path: Path
) -> AsyncIterator[tuple[RunningGateway, httpx.AsyncClient]]:
    # Turns of the slow scenario last until cancelled (codex's idle timeout is past them).
    write_codex_home(tmp_path / "codex-home", model_server.base_url, stream_idle_timeout_ms=120_000)
    # A session whose runs never started a codex thread (an older gateway's, say).
    threadless = config_for().session_dirs[0] / "session-threadless"
    threadless.mkdir(parents=True)
    (threadless / "meta.json").write_text(json.dumps({"session_id": "threadless", "runs": []}))
    async with (
        running_gateway(config_for(secure_token=TOKEN, max_concurrent=4)) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http,
    ):
        yield gw, http


def complete(prompt: str, **fields: Any) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=prompt, **fields))


def fork(parent: str, prompt: str | None = None, **fields: Any) -> runs_pb2.ForkSessionRequest:
    run = runs_pb2.RunInput(**fields)
    if prompt is not None:
        run.prompt = prompt
    return runs_pb2.ForkSessionRequest(session_id=parent, run=run)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def detail(gw: RunningGateway, session_id: str, **kw: Any) -> sessions_pb2.SessionDetail:
    request = sessions_pb2.GetSessionRequest(session_id=session_id)
    return (await gw.stub.GetSession(request, **kw)).session


async def until(check: Callable[[], bool], timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def asked(model_server: ModelServer, words: str) -> bool:
    """Whether the model's latest request ends with a user text holding `words`."""
    texts = model_server.requests[-1].user_texts() if model_server.requests else []
    return bool(texts) and words in texts[-1]


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


async def test_a_fork_continues_the_parents_history_while_the_parent_goes_on_alone(
    served: tuple[RunningGateway, httpx.AsyncClient], model_server: ModelServer
) -> None:
    gw, _ = served
    request = complete("[[reply:first answer]] remember 42", model=PARENT_MODEL)
    request.run.metadata.update({"team": "a", "kept": True})
    request.run.objective = "the parent's objective"
    parent = (await gw.stub.Complete(request)).result
    parent_dir = Path(parent.logs_path)
    before = files_of(parent_dir)

    forking = fork(parent.session_id, "[[scenario:echo_history]] fork says hi")
    forking.run.metadata.update({"team": "b"})
    forked = (await gw.stub.ForkSession(forking)).result

    assert forked.status == "completed"
    assert forked.session_id != parent.session_id
    assert forked.codex_session_id and forked.codex_session_id != parent.codex_session_id
    # The parent's turn, then the fork's own (echo_history: one entry per item the model got).
    turns = forked.output.split(" ; ")
    assert "remember 42" in turns[-3] and turns[-2] == "assistant:'first answer'"
    assert "fork says hi" in turns[-1]
    assert dict(forked.metadata) == {"team": "b", "kept": True}  # the parent's, merged
    assert forked.model == PARENT_MODEL and model_server.requests[-1].body["model"] == PARENT_MODEL
    # codex counts the parent's turn in the fork's thread; the run's share is its own turn.
    assert (forked.usage.input_tokens, forked.usage.output_tokens) == (100, 10)
    assert files_of(parent_dir) == before  # the parent untouched: meta, logs, events

    again = runs_pb2.PromptSessionRequest(
        session_id=parent.session_id,
        run=runs_pb2.RunInput(prompt="[[scenario:echo_history]] parent says hi"),
    )
    parent_history = (await gw.stub.PromptSession(again)).result.output
    assert "remember 42" in parent_history and "parent says hi" in parent_history
    assert "fork says hi" not in parent_history
    onward = runs_pb2.PromptSessionRequest(
        session_id=forked.session_id,
        run=runs_pb2.RunInput(prompt="[[scenario:echo_history]] fork again"),
    )
    fork_history = (await gw.stub.PromptSession(onward)).result.output
    assert "remember 42" in fork_history and "fork says hi" in fork_history
    assert "parent says hi" not in fork_history

    shown = await detail(gw, forked.session_id)
    assert shown.forked_from == sessions_pb2.ForkOrigin(
        session_id=parent.session_id,
        codex_session_id=parent.codex_session_id,
        run_id=parent.run_id,
    )
    assert [r.source for r in shown.run_history] == ["fork", "prompt"]
    assert shown.objective == "the parent's objective" and shown.model == PARENT_MODEL
    assert not (await detail(gw, parent.session_id)).HasField("forked_from")
    listed = (await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())).sessions
    by_id = {s.session_id: s for s in listed}
    assert by_id[forked.session_id].forked_from.session_id == parent.session_id
    assert not by_id[parent.session_id].HasField("forked_from")
    # The thread ids keep leading to their own sessions.
    assert (await detail(gw, parent.codex_session_id)).session_id == parent.session_id
    assert (await detail(gw, forked.codex_session_id)).session_id == forked.session_id


async def test_a_fork_without_a_prompt_runs_no_turn_and_is_prompted_later_over_rest(
    served: tuple[RunningGateway, httpx.AsyncClient], model_server: ModelServer
) -> None:
    _, http = served
    made = await http.post("/completion", json={"prompt": "[[reply:first answer]] remember 42"})
    assert made.status_code == 200, made.text
    parent = made.json()
    asked = len(model_server.requests)

    endpoints = (await http.get("/")).json()["endpoints"]["sessions"]
    assert endpoints["fork"] == {"path": "/sessions/:id/fork", "method": "POST"}
    assert endpoints["changes"] == {"path": "/sessions/:id/changes", "method": "GET"}
    response = await http.post(f"/sessions/{parent['session_id']}/fork", json={})
    assert response.status_code == 200, response.text
    forked = response.json()
    assert len(model_server.requests) == asked  # no turn: the model was not asked
    assert forked["status"] == "completed" and forked["output"] == ""
    assert forked["codex_session_id"] not in (None, parent["codex_session_id"])
    assert forked["usage"]["input_tokens"] == 0 and forked["usage"]["output_tokens"] == 0

    shown = (await http.get(f"/sessions/{forked['session_id']}")).json()
    assert shown["forked_from"] == {
        "session_id": parent["session_id"],
        "codex_session_id": parent["codex_session_id"],
        "run_id": parent["run_id"],
    }
    assert shown["run_history"][0]["source"] == "fork"
    listed = {s["session_id"]: s for s in (await http.get("/sessions")).json()}
    assert listed[forked["session_id"]]["forked_from"]["session_id"] == parent["session_id"]
    assert listed[parent["session_id"]].get("forked_from") is None

    prompted = await http.post(
        f"/sessions/{forked['session_id']}/prompt",
        json={"prompt": "[[scenario:echo_history]] what did I say?"},
    )
    assert prompted.status_code == 200, prompted.text
    answer = prompted.json()
    assert answer["codex_session_id"] == forked["codex_session_id"]
    turns = answer["output"].split(" ; ")
    assert "remember 42" in turns[-3] and turns[-2] == "assistant:'first answer'"
    assert "what did I say?" in turns[-1]
    # The forked thread's usage starts from the parent's: this run's share is its own turn.
    assert answer["usage"]["input_tokens"] == 100


async def test_a_fork_takes_run_fields_and_keeps_its_workspace_confined(
    served: tuple[RunningGateway, httpx.AsyncClient], model_server: ModelServer, tmp_path: Path
) -> None:
    gw, http = served
    parent = (await gw.stub.Complete(complete("[[reply:first answer]] remember 42"))).result
    body = {
        "prompt": "[[scenario:tool]] [[cmd:printenv TASK_MARK]] go",
        "model": "gpt-6-fork",
        "timeout_ms": 20_000,
        "env": {"TASK_MARK": "fork-env"},
        "nudge_prompt": "keep forking",
    }
    response = await http.post(f"/sessions/{parent.session_id}/fork", json=body)
    assert response.status_code == 200, response.text
    forked = response.json()
    assert forked["model"] == "gpt-6-fork"
    assert forked["tool_calls"][0]["exit_code"] == 0
    # The run's env reached its command: the model got the command's output back.
    assert "fork-env" in json.dumps(model_server.requests[-1].body["input"][-1])
    assert model_server.requests[-1].body["model"] == "gpt-6-fork"
    shown = await detail(gw, forked["session_id"])
    assert shown.nudge_prompt == "keep forking" and shown.execution_timeout_ms == 20_000
    assert shown.workspace == str(tmp_path / "workspace")

    outside = await http.post(
        f"/sessions/{parent.session_id}/fork", json={"workspace": str(tmp_path)}
    )
    assert outside.status_code == 400 and "workspace" in outside.json()["error"]
    bad_env = await http.post(f"/sessions/{parent.session_id}/fork", json={"env": {"PATH": "/"}})
    assert bad_env.status_code == 400 and "PATH" in bad_env.json()["error"]


async def test_a_fork_is_refused_for_a_missing_threadless_or_misnamed_parent(
    served: tuple[RunningGateway, httpx.AsyncClient], config_for: Callable[..., Config]
) -> None:
    gw, http = served
    sessions = config_for().session_dirs[0]
    parent = (await gw.stub.Complete(complete("[[reply:first answer]] remember 42"))).result
    count = len(list(sessions.glob("session-*")))

    missing = await rpc_error(gw.stub.ForkSession(fork("no-such-session")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    answer = await http.post("/sessions/no-such-session/fork", json={})
    assert answer.status_code == 404

    no_thread = await rpc_error(gw.stub.ForkSession(fork("threadless", "go")))
    assert no_thread.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no codex thread to fork" in (no_thread.details() or "")
    answer = await http.post("/sessions/threadless/fork", json={"prompt": "go"})
    assert answer.status_code == 400 and "no codex thread to fork" in answer.json()["error"]

    for field, value in (("session_id", parent.session_id), ("resume_session_id", "")):
        refused = await rpc_error(
            gw.stub.ForkSession(fork(parent.session_id, "go", **{field: value}))
        )
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"{field} cannot be given to a fork" in (refused.details() or "")
        answer = await http.post(
            f"/sessions/{parent.session_id}/fork", json={"prompt": "go", field: value}
        )
        assert answer.status_code == 400 and field in answer.json()["error"]

    blank = await http.post(f"/sessions/{parent.session_id}/fork", json={"messages": [{}]})
    assert blank.status_code == 400 and "no text" in blank.json()["error"]
    # A fork without a prompt runs no turn: a schema or an image would be silently ignored.
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()
    for unseen in (
        {"output_schema": {"type": "object"}},
        {"images": [{"data": png, "media_type": "image/png"}]},
    ):
        answer = await http.post(f"/sessions/{parent.session_id}/fork", json=unseen)
        assert answer.status_code == 400 and "need a prompt" in answer.json()["error"]
    assert len(list(sessions.glob("session-*"))) == count  # no session made by a refusal
    assert gw.gateway.slots.active == 0


async def test_a_running_parent_cannot_be_forked_and_is_free_once_the_fork_has_its_thread(
    served: tuple[RunningGateway, httpx.AsyncClient], model_server: ModelServer
) -> None:
    gw, http = served
    parent = (await gw.stub.Complete(complete("[[reply:first answer]] remember 42"))).result
    stream = gw.stub.StreamCompletion(
        runs_pb2.StreamCompletionRequest(
            run=runs_pb2.RunInput(
                prompt="[[scenario:slow]] [[sleep:30]] busy",
                session_id=parent.session_id,
                timeout_ms=60_000,
            )
        )
    )
    await stream.read()  # started
    await until(lambda: asked(model_server, "busy"))
    busy = await rpc_error(gw.stub.ForkSession(fork(parent.session_id, "go")))
    assert busy.code() == grpc.StatusCode.ABORTED and parent.session_id in (busy.details() or "")
    answer = await http.post(f"/sessions/{parent.session_id}/fork", json={"prompt": "go"})
    assert answer.status_code == 409
    await gw.stub.CancelSession(sessions_pb2.CancelSessionRequest(session_id=parent.session_id))
    with pytest.raises(grpc.aio.AioRpcError):
        while True:  # its events, then the cancelled run's error
            assert await stream.read() is not grpc.aio.EOF

    # The fork holds its parent only until codex has started the fork's thread: the parent runs
    # again while the fork's own turn is still under way.
    forking = asyncio.ensure_future(
        gw.stub.ForkSession(fork(parent.session_id, "[[scenario:slow]] [[sleep:30]] in the fork"))
    )
    await until(lambda: asked(model_server, "in the fork"))
    meanwhile = runs_pb2.PromptSessionRequest(
        session_id=parent.session_id,
        run=runs_pb2.RunInput(prompt="[[scenario:message]] [[reply:still mine]] go"),
    )
    assert (await gw.stub.PromptSession(meanwhile)).result.output == "still mine"
    forked_session = next(
        s
        for s in (await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())).sessions
        if s.HasField("forked_from")
    )
    await gw.stub.CancelSession(
        sessions_pb2.CancelSessionRequest(session_id=forked_session.session_id)
    )
    cancelled = await rpc_error(forking)
    assert cancelled.code() == grpc.StatusCode.CANCELLED or "cancel" in (cancelled.details() or "")
    shown = await detail(gw, forked_session.session_id)
    assert shown.status == "cancelled" and shown.forked_from.session_id == parent.session_id


async def test_a_secure_parent_is_forked_only_with_the_token_into_a_secure_session(
    served: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    gw, http = served
    parent = (
        await gw.stub.Complete(
            complete("[[reply:secret answer]] remember 42", secure=True), metadata=SECURE
        )
    ).result

    denied = await rpc_error(gw.stub.ForkSession(fork(parent.session_id, "go")))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    answer = await http.post(f"/sessions/{parent.session_id}/fork", json={"prompt": "go"})
    assert answer.status_code == 403
    wrong = await http.post(
        f"/sessions/{parent.session_id}/fork",
        json={},
        headers={"x-codex-secure-token": "wrong"},
    )
    assert wrong.status_code == 403

    forked = (
        await gw.stub.ForkSession(
            fork(parent.session_id, "[[scenario:echo_history]] recap"), metadata=SECURE
        )
    ).result
    assert "remember 42" in forked.output
    answer = await http.post(
        f"/sessions/{parent.session_id}/fork", json={}, headers={"x-codex-secure-token": TOKEN}
    )
    assert answer.status_code == 200, answer.text
    for session_id in (forked.session_id, answer.json()["session_id"]):
        hidden = await rpc_error(
            gw.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id))
        )
        assert hidden.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (await detail(gw, session_id, metadata=SECURE)).secure
    listed = (await http.get("/sessions")).json()
    assert {s["session_id"] for s in listed}.isdisjoint({forked.session_id, parent.session_id})


async def test_the_forks_run_has_its_webhook(
    config_for: Callable[..., Config], receiver_for: Callable[..., Receiver]
) -> None:
    hook = receiver_for()
    config = dataclasses.replace(config_for(), webhook=WebhookConfig(url=hook.url))
    async with running_gateway(config, background=True) as gw:
        parent = (await gw.stub.Complete(complete("[[reply:first answer]] remember 42"))).result
        forked = (await gw.stub.ForkSession(fork(parent.session_id, "[[reply:forked]] go"))).result
        await until(lambda: len(hook.accepted()) == 2)
        payloads = {json.loads(d.body)["run_id"]: json.loads(d.body) for d in hook.accepted()}
    sent = payloads[forked.run_id]
    assert sent["session_id"] == forked.session_id and sent["source"] == "fork"
    assert sent["status"] == "completed" and sent["output"] == "forked"
    assert sent["codex_session_id"] == forked.codex_session_id
    assert sent["forked_from"] == {
        "session_id": parent.session_id,
        "codex_session_id": parent.codex_session_id,
        "run_id": parent.run_id,
    }
    assert "forked_from" not in payloads[parent.run_id]


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        pytest.param(
            {"session_id": "p", "codex_session_id": "0199A213-0000-7000-8000-000000000001"},
            ForkOrigin("p", "0199a213-0000-7000-8000-000000000001"),
            id="canonical-thread",
        ),
        pytest.param(
            {"session_id": "p", "run_id": "r", "extra": 1}, ForkOrigin("p", None, "r"), id="extra"
        ),
        pytest.param({"codex_session_id": "x"}, None, id="no-parent"),
        pytest.param("p", None, id="not-an-object"),
    ],
)
def test_forked_from_is_read_leniently_and_written_as_an_object(
    stored: object, read: ForkOrigin | None, tmp_path: Path
) -> None:
    session = decode_session(
        "s", tmp_path, {"session_id": "s", "forked_from": stored}, secure=False
    )
    assert session.forked_from == read
    document = encode_session(session)
    assert document["forked_from"] == stored  # unchanged: as it was
    session.forked_from = ForkOrigin("q", None, "r2")
    assert encode_session(session)["forked_from"] == {
        "session_id": "q",
        "codex_session_id": None,
        "run_id": "r2",
    }
    fresh = decode_session("t", tmp_path, {"session_id": "t"}, secure=False)
    assert fresh.forked_from is None and "forked_from" not in encode_session(fresh)


async def test_a_fork_that_reports_the_parents_thread_fails_and_leaves_the_thread_alone(
    config_for: Callable[..., Config],
) -> None:
    """codex must start a new thread for a fork: one that announces the parent's (a fake agent
    here: the real codex always forks) is an agent failure, and the thread still leads to the
    parent."""
    async with running_gateway(config_for(codex_bin=AGENTS_DIR / "thread_agent.py")) as gw:
        parent = (await gw.stub.Complete(complete("hi"))).result
        good = (await gw.stub.ForkSession(fork(parent.session_id, "go"))).result
        assert json.loads(good.output)["argv"][-4:] == ["fork", "--", parent.codex_session_id, "-"]
        quiet = (await gw.stub.ForkSession(fork(parent.session_id))).result
        assert json.loads(quiet.output)["argv"][-3:] == ["fork", "--", parent.codex_session_id]

        same = fork(parent.session_id, "go", env={"FAKE_AGENT_THREAD_ID": parent.codex_session_id})
        failed = await rpc_error(gw.stub.ForkSession(same))
        assert failed.code() == grpc.StatusCode.INTERNAL
        assert f"did not fork thread {parent.codex_session_id}" in (failed.details() or "")
        assert (await detail(gw, parent.codex_session_id)).session_id == parent.session_id
        listed = (await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())).sessions
        broken = [s for s in listed if s.HasField("forked_from") and s.status == "error"]
        assert len(broken) == 1 and not broken[0].HasField("codex_session_id")
