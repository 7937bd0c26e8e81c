"""Issue 12 review, thread ids: one thread, one canonical text (findings 8/9), and `session_url`
naming the run's own session -- over REST and gRPC against real gateway processes.

A thread id is a UUID of any hex case, but the store looks threads up by exact text: without a
canonical form the upper-case text of a secure session's thread was not known as secure, and
`codex exec resume -- <UPPER>` ran without the secure token.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import grpc
import httpx
import pytest

from codex_gateway.v1 import gateway_pb2_grpc
from gateway.agent.events import RunOutcome, canonical_thread_id
from gateway.sessions.files import FileSessionStore
from tests.faults.spawned import gateway_env, running
from tests.hostile import test_hardening_inputs as inputs
from tests.hostile.test_hardening_inputs import PROTOCOLS, SECURE, Both, argv_of, secure_thread

# That module's fixtures: one gateway (echo agent, secure token) for this module, both protocols.
shared = inputs.shared
live = inputs.live
api = inputs.api


def other_forms(thread: str) -> list[str]:
    """Texts of the same UUID that are not its canonical form."""
    return [thread.upper(), thread[:9] + thread[9:].upper(), f" {thread.upper()} "]


def foreign_forms(thread: str) -> list[str]:
    """Texts `uuid.UUID` reads that are no thread id here (refused, never looked up)."""
    return [
        "{" + thread + "}",
        f"urn:uuid:{thread}",
        thread.replace("-", ""),
        "{" + thread.upper() + "}",
    ]


# --- findings 8/9: any case of a secure session's thread is that secure thread ------------------


async def test_the_upper_case_of_a_secure_thread_is_not_resumed_without_the_token(
    api: Both,
) -> None:
    session_id, thread = await secure_thread(api)
    assert thread == canonical_thread_id(thread)
    for form in other_forms(thread):
        stolen = await api.complete(resume_session_id=form)
        assert stolen.code == "PERMISSION_DENIED", (form, stolen)
        plain = await api.complete(resume_session_id=form, secure_token=True)
        assert plain.code == "INVALID_ARGUMENT" and "secure" in plain.message, (form, plain)
        assert (await api.get_session(form.strip())).code == "PERMISSION_DENIED", form
        found = await api.get_session(form.strip(), secure_token=True)
        assert found.code == "OK" and found.body["session_id"] == session_id, (form, found)


async def test_a_secure_thread_resumed_in_upper_case_reaches_codex_canonical(api: Both) -> None:
    session_id, thread = await secure_thread(api)
    resumed = await api.complete(resume_session_id=thread.upper(), secure=True, secure_token=True)
    assert resumed.code == "OK", resumed
    assert argv_of(resumed)[-4:] == ["resume", "--", thread, "-"]
    assert resumed.body["codex_session_id"] == thread
    found = await api.get_session(thread.upper(), secure_token=True)
    assert found.body["session_id"] == session_id  # still the first session's thread


async def test_other_texts_of_a_uuid_are_no_thread_id(api: Both) -> None:
    _, thread = await secure_thread(api)
    for form in foreign_forms(thread):
        answer = await api.complete(resume_session_id=form)
        assert answer.code == "INVALID_ARGUMENT", (form, answer)
        assert "resume_session_id" in answer.message, (form, answer)
        assert (await api.get_session(form)).code in ("NOT_FOUND", "INVALID_ARGUMENT"), form


async def test_a_plain_upper_case_thread_leads_to_its_session(api: Both) -> None:
    first = await api.complete()
    thread = first.body["codex_session_id"]
    found = await api.get_session(thread.upper())
    assert found.code == "OK" and found.body["session_id"] == first.body["session_id"]
    # A secure run may not take a plain session's thread in another case either.
    answer = await api.complete(resume_session_id=thread.upper(), secure=True, secure_token=True)
    assert answer.code == "INVALID_ARGUMENT" and "not secure" in answer.message, answer


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_upper_case_thread_an_agent_announces_is_stored_canonical(
    tmp_path: Path, protocol: str
) -> None:
    """thread.started is where a thread id enters from codex: a secure session whose agent
    announced its thread in upper case still holds it against the lower-case text."""
    thread = str(uuid.uuid4())
    env = gateway_env(tmp_path, "thread_agent.py", CODEX_GATEWAY_SECURE_TOKEN=SECURE)
    async with (
        running(env, tmp_path) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30, trust_env=False) as http,
        grpc.aio.insecure_channel(gw.target) as channel,
    ):
        api = Both(protocol, http, gateway_pb2_grpc.GatewayServiceStub(channel))
        announced = {"FAKE_AGENT_THREAD_ID": thread.upper()}
        created = await api.complete(secure=True, secure_token=True, env=announced)
        assert created.code == "OK", created
        assert created.body["codex_session_id"] == thread
        stolen = await api.complete(resume_session_id=thread)
        assert stolen.code == "PERMISSION_DENIED", stolen
        again = await api.prompt(created.body["session_id"], env=announced)
        assert again.code == "PERMISSION_DENIED", again  # no token: refused before it runs
        meta = json.loads(
            next(tmp_path.rglob(f"session-{created.body['session_id']}/meta.json")).read_text()
        )
        assert meta["codex_session_id"] == thread


def test_a_meta_json_thread_in_upper_case_is_held_canonical(tmp_path: Path) -> None:
    """meta.json is where a thread id enters from disk (an agent may have edited it)."""
    thread = str(uuid.uuid4())
    plain, secure = tmp_path / "sessions", tmp_path / "secure"
    session_id = "5ec0e000-0000-4000-8000-000000000001"
    directory = secure / f"session-{session_id}"
    directory.mkdir(parents=True)
    meta = {"session_id": session_id, "codex_session_id": thread.upper(), "secure": True}
    (directory / "meta.json").write_text(json.dumps(meta))
    store = FileSessionStore([plain], secure)
    store.load()
    try:
        for form in (thread, thread.upper()):
            assert store.thread_is_secure(form), form
            owner = store.thread_owner(form)
            assert owner is not None and owner.id == session_id
            assert owner.codex_session_id == thread
        for form in foreign_forms(thread):
            assert not store.thread_is_secure(form) and store.thread_owner(form) is None, form
    finally:
        store.close()


def test_thread_started_in_any_case_is_the_canonical_thread() -> None:
    thread = str(uuid.uuid4())
    for form in (thread, thread.upper()):
        outcome = RunOutcome()
        outcome.observe({"type": "thread.started", "thread_id": form})
        assert outcome.thread_id == thread
    for form in foreign_forms(thread):
        outcome = RunOutcome()
        outcome.observe({"type": "thread.started", "thread_id": form})
        assert outcome.thread_id is None, form


# --- session_url names the run's own session ------------------------------------------------------


async def test_session_url_is_the_runs_own_session_when_it_resumed_another_thread(
    api: Both,
) -> None:
    first = await api.complete()
    assert first.code == "OK", first
    assert first.body["session_url"] == f"/sessions/{first.body['session_id']}"
    thread = first.body["codex_session_id"]
    second = await api.complete(resume_session_id=thread)
    assert second.code == "OK", second
    own = second.body["session_id"]
    assert own != first.body["session_id"]
    assert second.body["session_url"] == f"/sessions/{own}", second.body["session_url"]
    # ... and that URL leads to the second session, whose next run says so too.
    url = second.body["session_url"]
    found = await api.get_session(url.removeprefix("/sessions/"))
    assert found.code == "OK" and found.body["session_id"] == own
    again = await api.prompt(own)
    assert again.code == "OK" and again.body["session_url"] == f"/sessions/{own}"
