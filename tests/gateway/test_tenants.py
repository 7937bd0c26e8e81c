"""Tenant isolation (docs/design/tenants.md, "Request path" 2, 4): two tenants and an admin
against one gateway, on both protocols (REST through the real bridge). A tenant's key sees,
continues, searches, tails, forks and cancels only its tenant's sessions and triggers: another
tenant's are 404 (their existence not revealed), its listings never hold them; the admin sees
all. Real gateway, real bridge, a real key file, the fast fake agent."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_gateway.v1 import runs_pb2, sessions_pb2, triggers_pb2
from gateway.auth.keys import digest_of
from gateway.config import Config, TriggerConfig, WebhookConfig
from tests.fakes import AGENTS_DIR
from tests.fakes.webhook_receiver import Receiver
from tests.harness import RunningGateway, running_bridge, running_gateway

ADMIN = "the-admin-token"  # a test's own secrets
A, B = "k-team-a", "k-team-b"
SCOPES = ["read", "run", "cancel", "triggers"]
DAILY = {"mode": "daily", "time": "09:00", "timezone": "UTC"}


def keys_document() -> dict[str, Any]:
    return {
        "keys": [
            {"name": name, "sha256": digest_of(secret).hex(), "tenant": tenant, "scopes": SCOPES}
            for name, secret, tenant in (("a", A, "team-a"), ("b", B, "team-b"))
        ]
    }


def md(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


def hdr(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def tenant_config(config_for: Callable[..., Config], tmp_path: Path) -> Config:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(keys_document()))
    trigger_file = tmp_path / "triggers" / "main.json"
    trigger_file.parent.mkdir(exist_ok=True)
    config = config_for(
        api_token=ADMIN, api_keys_file=keys_file, codex_bin=AGENTS_DIR / "echo_agent.py"
    )
    return dataclasses.replace(
        config,
        triggers=TriggerConfig(
            default_file=trigger_file,
            roots=(trigger_file.parent,),
            discovery_dir=tmp_path / "codex-sessions",
        ),
    )


@dataclass
class Served:
    gw: RunningGateway
    rest: httpx.AsyncClient


@pytest.fixture
async def served(config_for: Callable[..., Config], tmp_path: Path) -> AsyncIterator[Served]:
    async with (
        running_gateway(tenant_config(config_for, tmp_path)) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as rest,
    ):
        yield Served(gw, rest)


async def complete(gw: RunningGateway, secret: str, prompt: str = "hi") -> runs_pb2.RunResult:
    made = await gw.stub.Complete(
        runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=prompt)), metadata=md(secret)
    )
    return made.result


async def grpc_code(call: Any) -> grpc.StatusCode:
    """The status a call ends with (a stream read to its end)."""
    try:
        result = call
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def session_calls(gw: RunningGateway, session_id: str) -> list[tuple[str, Any, str, str]]:
    """Every per-session endpoint: (name, gRPC call given metadata, REST verb, REST path)."""
    stub = gw.stub
    run = runs_pb2.RunInput(prompt="again")
    return [
        (
            "detail",
            lambda m: stub.GetSession(
                sessions_pb2.GetSessionRequest(session_id=session_id), metadata=m
            ),
            "GET",
            f"/sessions/{session_id}",
        ),
        (
            "search",
            lambda m: stub.SearchSession(
                sessions_pb2.SearchSessionRequest(session_id=session_id, q="prompt"), metadata=m
            ),
            "GET",
            f"/sessions/{session_id}/search?q=prompt",
        ),
        (
            "tail",
            lambda m: stub.TailSession(
                sessions_pb2.TailSessionRequest(session_id=session_id), metadata=m
            ),
            "GET",
            f"/sessions/{session_id}/tail",
        ),
        (
            "changes",
            lambda m: stub.GetSessionChanges(
                sessions_pb2.GetSessionChangesRequest(session_id=session_id), metadata=m
            ),
            "GET",
            f"/sessions/{session_id}/changes",
        ),
        (
            "prompt",
            lambda m: stub.PromptSession(
                runs_pb2.PromptSessionRequest(session_id=session_id, run=run), metadata=m
            ),
            "POST",
            f"/sessions/{session_id}/prompt",
        ),
        (
            "nudge",
            lambda m: stub.NudgeSession(
                runs_pb2.NudgeSessionRequest(session_id=session_id, run=run), metadata=m
            ),
            "POST",
            f"/sessions/{session_id}/nudge",
        ),
        (
            "fork",
            lambda m: stub.ForkSession(
                runs_pb2.ForkSessionRequest(session_id=session_id, run=run), metadata=m
            ),
            "POST",
            f"/sessions/{session_id}/fork",
        ),
        (
            "cancel",
            lambda m: stub.CancelSession(
                sessions_pb2.CancelSessionRequest(session_id=session_id), metadata=m
            ),
            "POST",
            f"/sessions/{session_id}/cancel",
        ),
        (
            "complete with session_id",
            lambda m: stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="x", session_id=session_id)),
                metadata=m,
            ),
            "POST",
            "/completion",
        ),
        (
            "stream with session_id",
            lambda m: stub.StreamCompletion(
                runs_pb2.StreamCompletionRequest(
                    run=runs_pb2.RunInput(prompt="x", session_id=session_id)
                ),
                metadata=m,
            ),
            "POST",
            "/completion/stream",
        ),
    ]


async def rest_call(rest: httpx.AsyncClient, verb: str, path: str, secret: str) -> httpx.Response:
    body: dict[str, Any] = {"prompt": "again"}
    return await rest.request(
        verb, path, headers=hdr(secret), **({"json": body} if verb == "POST" else {})
    )


async def test_another_tenants_session_is_not_found_on_every_endpoint(served: Served) -> None:
    gw, rest = served.gw, served.rest
    mine = await complete(gw, A, "A's own")
    theirs = await complete(gw, B, "B's own")
    for ref in (mine.session_id, mine.codex_session_id):  # by gateway id and by thread id
        for name, call, verb, path in session_calls(gw, ref):
            assert await grpc_code(call(md(B))) == grpc.StatusCode.NOT_FOUND, (name, ref)
            if path.startswith("/completion"):
                response = await rest.post(
                    path, headers=hdr(B), json={"prompt": "x", "session_id": ref}
                )
            else:
                response = await rest_call(rest, verb, path, B)
            assert response.status_code == 404, (name, ref, response.text)
            body = response.json()
            assert body["reason"] == "SESSION_NOT_FOUND", (name, body)
            assert theirs.session_id not in response.text
    # Resuming A's codex thread is refused as A's session is (not a thread B may continue).
    resumed = runs_pb2.RunInput(prompt="x", resume_session_id=mine.codex_session_id)
    assert (
        await grpc_code(gw.stub.Complete(runs_pb2.CompleteRequest(run=resumed), metadata=md(B)))
        == grpc.StatusCode.NOT_FOUND
    )
    response = await rest.post(
        "/completion",
        headers=hdr(B),
        json={"prompt": "x", "resume_session_id": mine.codex_session_id},
    )
    assert response.status_code == 404 and response.json()["reason"] == "SESSION_NOT_FOUND"
    # Nothing of A's session changed: it has its one run, and A and the admin read it.
    for secret in (A, ADMIN):
        detail = await gw.stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=mine.session_id), metadata=md(secret)
        )
        assert detail.session.runs == 1 and detail.session.tenant == "team-a"
        response = await rest.get(f"/sessions/{mine.session_id}", headers=hdr(secret))
        assert response.status_code == 200 and response.json()["tenant"] == "team-a"


async def test_the_owner_and_the_admin_reach_every_endpoint(served: Served) -> None:
    gw, rest = served.gw, served.rest
    mine = await complete(gw, A)
    for secret in (A, ADMIN):
        for name, call, verb, path in session_calls(gw, mine.session_id):
            if name == "fork":
                continue  # the fake agent cannot fork a thread: tests/gateway/test_fork.py
            assert await grpc_code(call(md(secret))) == grpc.StatusCode.OK, (name, secret)
            if not path.startswith("/completion"):
                response = await rest_call(rest, verb, path, secret)
                assert response.status_code == 200, (name, secret, response.text)
    # A continued its session as itself; the admin's prompt kept the session A's.
    session = gw.gateway.store.resolve(mine.session_id)
    assert session.tenant == "team-a"


async def test_listings_hold_only_the_callers_tenant_and_the_admin_sees_all(
    served: Served,
) -> None:
    gw, rest = served.gw, served.rest
    a1, a2 = await complete(gw, A), await complete(gw, A)
    b1 = await complete(gw, B)
    own = await complete(gw, ADMIN)  # the admin token's key: tenant `default`
    expected = {
        A: {a1.session_id, a2.session_id},
        B: {b1.session_id},
        ADMIN: {a1.session_id, a2.session_id, b1.session_id, own.session_id},
    }
    tenants = {a1.session_id: "team-a", b1.session_id: "team-b", own.session_id: "default"}
    for secret, wanted in expected.items():
        listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=md(secret))
        assert {s.session_id for s in listed.sessions} == wanted
        for summary in listed.sessions:
            if summary.session_id in tenants:
                assert summary.tenant == tenants[summary.session_id]
        response = await rest.get("/sessions", headers=hdr(secret))
        assert response.status_code == 200
        assert {s["session_id"] for s in response.json()} == wanted
        assert all(s["tenant"] for s in response.json())
        # The status and the index say nothing of anyone's sessions.
        for path in ("/status", "/"):
            shown = (await rest.get(path, headers=hdr(secret))).text
            assert not any(sid in shown for sid in expected[ADMIN]), path


async def test_triggers_belong_to_their_tenant(served: Served) -> None:
    gw, rest = served.gw, served.rest
    stub = gw.stub
    made = await rest.post(
        "/triggers", headers=hdr(A), json={"id": "a-report", "prompt_text": "x", "schedule": DAILY}
    )
    assert made.status_code == 200, made.text
    assert made.json()["trigger"]["tenant"] == "team-a"
    await rest.post(
        "/triggers", headers=hdr(B), json={"id": "b-report", "prompt_text": "y", "schedule": DAILY}
    )
    seen = {
        secret: {
            t["id"] for t in (await rest.get("/triggers", headers=hdr(secret))).json()["triggers"]
        }
        for secret in (A, B, ADMIN)
    }
    assert seen == {A: {"a-report"}, B: {"b-report"}, ADMIN: {"a-report", "b-report"}}
    listed = await stub.ListTriggers(triggers_pb2.ListTriggersRequest(), metadata=md(B))
    assert [t.id for t in listed.triggers] == ["b-report"] and listed.triggers[0].tenant == "team-b"
    # B reaches none of A's trigger: get, update, delete, nor replace it by creating its id.
    for verb, json_body in (("GET", None), ("PATCH", {"title": "mine"}), ("DELETE", None)):
        response = await rest.request(
            verb, "/triggers/a-report", headers=hdr(B), **({"json": json_body} if json_body else {})
        )
        assert response.status_code == 404, (verb, response.text)
        assert response.json()["reason"] == "TRIGGER_NOT_FOUND"
    replaced = await rest.post(
        "/triggers", headers=hdr(B), json={"id": "a-report", "prompt_text": "z", "schedule": DAILY}
    )
    assert replaced.status_code == 404 and replaced.json()["reason"] == "TRIGGER_NOT_FOUND"
    for call in (
        stub.GetTrigger(triggers_pb2.GetTriggerRequest(trigger_id="a-report"), metadata=md(B)),
        stub.DeleteTrigger(
            triggers_pb2.DeleteTriggerRequest(trigger_id="a-report"), metadata=md(B)
        ),
    ):
        assert await grpc_code(call) == grpc.StatusCode.NOT_FOUND
    got = await rest.get("/triggers/a-report", headers=hdr(A))
    assert got.json()["trigger"]["prompt_text"] == "x"  # untouched
    # The tenant is the gateway's to set: a key names only its own (a trigger sent back as read).
    wrong = await rest.post(
        "/triggers",
        headers=hdr(A),
        json={"id": "sneaky", "prompt_text": "x", "schedule": DAILY, "tenant": "team-b"},
    )
    assert wrong.status_code == 400 and wrong.json()["field"] == "tenant", wrong.text
    moved = await rest.patch("/triggers/a-report", headers=hdr(A), json={"tenant": "team-b"})
    assert moved.status_code == 400 and moved.json()["field"] == "tenant"
    again = await rest.post("/triggers", headers=hdr(A), json=got.json()["trigger"])
    assert again.status_code == 200 and again.json()["trigger"]["tenant"] == "team-a"
    # The admin sees and edits every tenant's; editing keeps the trigger its tenant's.
    patched = await rest.patch("/triggers/a-report", headers=hdr(ADMIN), json={"title": "t"})
    assert patched.status_code == 200 and patched.json()["trigger"]["tenant"] == "team-a"
    deleted = await rest.delete("/triggers/b-report", headers=hdr(ADMIN))
    assert deleted.status_code == 200


async def test_a_triggers_runs_are_its_tenants(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    config = tenant_config(config_for, tmp_path)
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    entries = [
        {
            "id": name,
            "prompt_text": "tick",
            "schedule": {"mode": "interval", "interval_minutes": 5},
            "created_at": start.isoformat(),
            **({"tenant": tenant} if tenant else {}),
        }
        for name, tenant in (("of-a", "team-a"), ("of-nobody", None))
    ]
    config.triggers.default_file.write_text(json.dumps({"triggers": entries}))
    clock = _Clock(start + timedelta(minutes=4))
    async with running_gateway(config, clock=clock) as gw:
        await gw.gateway.scheduler.reload()
        assert await gw.gateway.scheduler.fire_due() == []
        clock.now = start + timedelta(minutes=5)
        await asyncio.gather(*await gw.gateway.scheduler.fire_due())
        stored = {
            t["id"]: t for t in json.loads(config.triggers.default_file.read_text())["triggers"]
        }
        assert stored["of-a"]["last_status"] == "success", stored
        session_of_a = stored["of-a"]["gateway_session_id"]
        session_of_nobody = stored["of-nobody"]["gateway_session_id"]
        assert gw.gateway.store.resolve(session_of_a).tenant == "team-a"
        assert gw.gateway.store.resolve(session_of_nobody).tenant == "default"
        listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=md(A))
        assert [s.session_id for s in listed.sessions] == [session_of_a]
        listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=md(B))
        assert list(listed.sessions) == []


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# The property: no sequence of calls by tenant A reveals a session id of tenant B. The rule for
# what may hold one: only a 404 that echoes the id A itself asked for (A knew it already);
# every other answer, successful or not, holds none of B's session or thread ids.

ACTIONS = ("list", "detail", "search", "tail", "cancel", "prompt", "changes", "nudge", "complete")


@st.composite
def a_call(draw: st.DrawFn) -> tuple[str, str, str, int]:
    """(action, protocol, which kind of id, an index into that kind's ids)."""
    return (
        draw(st.sampled_from(ACTIONS)),
        draw(st.sampled_from(("grpc", "rest"))),
        draw(st.sampled_from(("learnt", "theirs", "their-thread", "guessed"))),
        draw(st.integers(min_value=0, max_value=7)),
    )


async def answer_of(
    gw: RunningGateway, rest: httpx.AsyncClient, action: str, protocol: str, ref: str
) -> tuple[int, str]:
    """What A gets back: (404 or another code, every byte of the answer as text)."""
    if protocol == "rest":
        path = "/sessions" if action == "list" else f"/sessions/{ref}"
        verb, body = "GET", None
        if action in ("search", "tail", "changes"):
            path += f"/{action}" + ("?q=prompt" if action == "search" else "")
        elif action in ("cancel", "prompt", "nudge"):
            verb, path, body = "POST", f"{path}/{action}", {"prompt": "more"}
        elif action == "complete":
            verb, path, body = "POST", "/completion", {"prompt": "new"}
        response = await rest.request(
            verb, path, headers=hdr(A), **({"json": body} if body is not None else {})
        )
        return response.status_code, response.text + repr(response.headers)
    stub, m = gw.stub, md(A)
    run = runs_pb2.RunInput(prompt="more")
    calls = {
        "list": lambda: stub.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=m),
        "detail": lambda: stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=ref, include_events=True), metadata=m
        ),
        "search": lambda: stub.SearchSession(
            sessions_pb2.SearchSessionRequest(session_id=ref, q="prompt"), metadata=m
        ),
        "tail": lambda: stub.TailSession(
            sessions_pb2.TailSessionRequest(session_id=ref, include_events=True), metadata=m
        ),
        "cancel": lambda: stub.CancelSession(
            sessions_pb2.CancelSessionRequest(session_id=ref), metadata=m
        ),
        "prompt": lambda: stub.PromptSession(
            runs_pb2.PromptSessionRequest(session_id=ref, run=run), metadata=m
        ),
        "changes": lambda: stub.GetSessionChanges(
            sessions_pb2.GetSessionChangesRequest(session_id=ref), metadata=m
        ),
        "nudge": lambda: stub.NudgeSession(
            runs_pb2.NudgeSessionRequest(session_id=ref, run=run), metadata=m
        ),
        "complete": lambda: stub.Complete(
            runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="new")), metadata=m
        ),
    }
    call = calls[action]()
    try:
        if hasattr(call, "__aiter__"):
            messages = [message async for message in call]
        else:
            messages = [await call]
    except grpc.aio.AioRpcError as error:
        code = 404 if error.code() == grpc.StatusCode.NOT_FOUND else error.code().value[0] + 1000
        shown = [error.details() or "", repr(error.trailing_metadata())]
        for _key, value in error.trailing_metadata() or ():
            if isinstance(value, bytes):
                shown.append(value.decode("latin-1"))
        return code, "\n".join(shown)
    return 200, "\n".join(m.SerializeToString().decode("latin-1") for m in messages)


async def test_no_sequence_of_calls_by_one_tenant_reveals_anothers_session_ids(
    served: Served,
) -> None:
    gw, rest = served.gw, served.rest
    loop = asyncio.get_running_loop()
    theirs = [await complete(gw, B, f"B's secret {i}") for i in range(3)]
    their_ids = [r.session_id for r in theirs]
    their_threads = [r.codex_session_id for r in theirs]
    secrets = their_ids + their_threads
    learnt = [(await complete(gw, A, "A's first")).session_id]

    def ids_in(text: str) -> set[str]:
        return set(UUID_TEXT.findall(text))

    async def play(calls: list[tuple[str, str, str, int]]) -> None:
        for action, protocol, kind, index in calls:
            pool = {
                "learnt": learnt,
                "theirs": their_ids,
                "their-thread": their_threads,
                "guessed": GUESSES,
            }[kind]
            ref = pool[index % len(pool)]
            code, text = await answer_of(gw, rest, action, protocol, ref)
            leaked = [s for s in secrets if s in text or s.upper() in text]
            if leaked:
                # Only a 404 for the very id asked for may name it.
                assert code == 404 and leaked == [ref], (action, protocol, kind, code, text)
            assert code not in (500, 1013), text  # never an internal error (INTERNAL: 13)
            learnt.extend(i for i in ids_in(text) if i not in secrets and i not in learnt)

    @settings(
        max_examples=60,
        deadline=None,
        database=None,  # nothing written to the working tree
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(st.lists(a_call(), min_size=1, max_size=6))
    def sequences(calls: list[tuple[str, str, str, int]]) -> None:
        asyncio.run_coroutine_threadsafe(play(calls), loop).result(timeout=120)

    await asyncio.to_thread(sequences)
    # B's sessions are as B left them: nothing A sent reached them.
    for session_id in their_ids:
        assert gw.gateway.store.resolve(session_id).run_count == 1


UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
GUESSES = [str(uuid.UUID(int=i)) for i in range(1, 4)] + ["not-an-id", "../../etc"]


async def test_webhook_payloads_name_the_tenant(
    config_for: Callable[..., Config], tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    hook = receiver_for()
    config = dataclasses.replace(
        tenant_config(config_for, tmp_path), webhook=WebhookConfig(url=hook.url)
    )
    async with running_gateway(config, background=True) as gw:
        ran = {secret: await complete(gw, secret) for secret in (A, B, ADMIN)}
        await until(lambda: len(hook.accepted()) == 3)
    sent = {json.loads(d.body)["session_id"]: json.loads(d.body) for d in hook.accepted()}
    assert {sent[r.session_id]["tenant"] for r in ran.values()} == {"team-a", "team-b", "default"}
    assert sent[ran[A].session_id]["tenant"] == "team-a"


async def until(check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
