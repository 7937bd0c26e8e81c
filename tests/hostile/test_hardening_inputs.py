"""Issue 12, inputs at the boundary: secure threads (8), thread ids in codex's argv (9), long
inputs echoed into errors (12), the request env allow-list (14), and client mistakes that were
500/UNKNOWN (15) -- over REST and gRPC against real gateway processes.

Every call goes through `Both`, which speaks one protocol per test parameter and answers the
gRPC status name either way (the REST error body carries it as `code`).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2

from codex_gateway.v1 import gateway_pb2, gateway_pb2_grpc, runs_pb2, sessions_pb2, triggers_pb2
from gateway.agent.events import RunOutcome, is_thread_id
from gateway.api.boundary import ServicerGuard
from gateway.config import DEFAULT_REQUEST_ENV_ALLOW, Config, ConfigError
from gateway.errors import InvalidRequest
from gateway.runs.childenv import check_request_env
from gateway.sessions.files import FileSessionStore
from tests.fakes.model_server import ModelServer
from tests.faults.spawned import Spawned, gateway_env, running, spawn, until_serving_sync
from tests.harness import running_gateway

SECURE = "secure-token-of-the-inputs-tests"
SECURE_HEADER = {"X-Codex-Secure-Token": SECURE}
BYPASS = "--dangerously-bypass-approvals-and-sandbox"
LONG = 20_000  # characters: over grpcio's 16 KiB hard limit on received metadata
LONG_IN_URL = 12_000  # a URL must fit the HTTP server's request-head limit
MAX_MESSAGE = 1100  # the boundary caps messages at 1024 characters
PROTOCOLS = ["rest", "grpc"]


# --- one gateway process for the module: echo agent, secure token, both protocols ----------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawned]:
    root = tmp_path_factory.mktemp("hardening-inputs")
    seed_hostile_meta(root / "sessions")
    env = gateway_env(root, "echo_agent.py", CODEX_GATEWAY_SECURE_TOKEN=SECURE)
    gateway = spawn(env, root / "gateway.log")
    try:
        until_serving_sync(gateway)
        yield gateway
    finally:
        assert gateway.stop() == 0, gateway.log_tail()
    log = gateway.log_path.read_text(errors="replace")
    # No client mistake of this module left a traceback (or Python's exception text) behind.
    assert "Traceback" not in log and "DecodeError" not in log, log[-3000:]


HOSTILE_META_SESSION = "0de1e7ed-0000-4000-8000-000000000009"
HOSTILE_META_SESSIONS = {
    "rest": HOSTILE_META_SESSION,
    "grpc": "0de1e7ed-0000-4000-8000-00000000000a",
}


def seed_hostile_meta(root: Path) -> None:
    """Sessions whose meta.json an agent edited: the thread id is an option of codex's."""
    for session_id in HOSTILE_META_SESSIONS.values():
        directory = root / f"session-{session_id}"
        directory.mkdir(parents=True)
        meta = {
            "session_id": session_id,
            "codex_session_id": BYPASS,
            "status": "completed",
            "runs": [],
        }
        (directory / "meta.json").write_text(json.dumps(meta))


@dataclass
class Answer:
    code: str  # the gRPC status name; "OK" on success
    message: str
    body: dict[str, Any]


class Both:
    """The gateway's API over one protocol, answering `Answer`s either way."""

    def __init__(self, protocol: str, http: httpx.AsyncClient, stub: Any) -> None:
        self.protocol = protocol
        self.http = http
        self.stub = stub

    async def rest(self, method: str, path: str, **kwargs: Any) -> Answer:
        response = await self.http.request(method, path, **kwargs)
        if response.status_code == 200:
            return Answer("OK", "", response.json())
        body = response.json()
        assert response.status_code not in (429, 500), response.text[:300]
        return Answer(body.get("code", str(response.status_code)), body["error"], body)

    async def grpc(self, name: str, request: Any, *, secure: bool = False) -> Answer:
        metadata = (("x-codex-secure-token", SECURE),) if secure else ()
        try:
            response = await getattr(self.stub, name)(request, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            return Answer(error.code().name, error.details() or "", {})
        return Answer(
            "OK", "", json_format.MessageToDict(response, preserving_proto_field_name=True)
        )

    async def complete(self, *, secure_token: bool = False, **run: Any) -> Answer:
        run.setdefault("prompt", "hi")
        if self.protocol == "rest":
            headers = SECURE_HEADER if secure_token else {}
            return await self.rest("POST", "/completion", json=run, headers=headers)
        answer = await self.grpc(
            "Complete", runs_pb2.CompleteRequest(run=_run_input(run)), secure=secure_token
        )
        if answer.code == "OK":
            answer.body = answer.body["result"]
        return answer

    async def prompt(self, session_id: str, **run: Any) -> Answer:
        run.setdefault("prompt", "again")
        if self.protocol == "rest":
            return await self.rest("POST", f"/sessions/{session_id}/prompt", json=run)
        request = runs_pb2.PromptSessionRequest(session_id=session_id, run=_run_input(run))
        answer = await self.grpc("PromptSession", request)
        if answer.code == "OK":
            answer.body = answer.body["result"]
        return answer

    async def get_session(self, session_id: str, *, secure_token: bool = False) -> Answer:
        if self.protocol == "rest":
            headers = SECURE_HEADER if secure_token else {}
            return await self.rest("GET", f"/sessions/{session_id}", headers=headers)
        request = sessions_pb2.GetSessionRequest(session_id=session_id)
        answer = await self.grpc("GetSession", request, secure=secure_token)
        if answer.code == "OK":
            answer.body = answer.body["session"]
        return answer


def _run_input(fields: dict[str, Any]) -> runs_pb2.RunInput:
    message = runs_pb2.RunInput()
    json_format.ParseDict(fields, message)
    return message


@pytest.fixture
async def live(shared: Spawned) -> AsyncIterator[Spawned]:
    assert shared.running(), f"an earlier test killed the gateway:\n{shared.log_tail()}"
    yield shared
    assert shared.running(), f"the gateway died:\n{shared.log_tail()}"


@pytest.fixture(params=PROTOCOLS)
async def api(request: pytest.FixtureRequest, live: Spawned) -> AsyncIterator[Both]:
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=30, trust_env=False) as http,
        grpc.aio.insecure_channel(live.target) as channel,
    ):
        yield Both(request.param, http, gateway_pb2_grpc.GatewayServiceStub(channel))


def argv_of(answer: Answer) -> list[str]:
    argv: list[str] = json.loads(answer.body["output"])["argv"]
    return argv


# --- 8: a secure session's thread --------------------------------------------------------------


async def secure_thread(api: Both) -> tuple[str, str]:
    created = await api.complete(secure=True, secure_token=True)
    assert created.code == "OK", created
    return created.body["session_id"], created.body["codex_session_id"]


async def test_a_secure_sessions_thread_is_not_resumed_without_the_secure_token(api: Both) -> None:
    session_id, thread = await secure_thread(api)
    stolen = await api.complete(resume_session_id=thread)
    assert stolen.code == "PERMISSION_DENIED", stolen
    # ... nor into a session that is not secure, token or not.
    plain = await api.complete(resume_session_id=thread, secure_token=True)
    assert plain.code == "INVALID_ARGUMENT" and "secure" in plain.message, plain
    # The thread still leads to its own session (and only with the token).
    assert (await api.get_session(thread)).code == "PERMISSION_DENIED"
    found = await api.get_session(thread, secure_token=True)
    assert found.code == "OK" and found.body["session_id"] == session_id


async def test_a_secure_thread_resumed_securely_keeps_leading_to_its_first_session(
    api: Both,
) -> None:
    session_id, thread = await secure_thread(api)
    resumed = await api.complete(resume_session_id=thread, secure=True, secure_token=True)
    assert resumed.code == "OK", resumed
    assert resumed.body["session_id"] != session_id
    assert resumed.body["codex_session_id"] == thread
    assert argv_of(resumed)[-4:] == ["resume", "--", thread, "-"]
    found = await api.get_session(thread, secure_token=True)
    assert found.body["session_id"] == session_id


async def test_a_resumed_plain_thread_keeps_leading_to_its_first_session(api: Both) -> None:
    first = await api.complete()
    thread = first.body["codex_session_id"]
    second = await api.complete(resume_session_id=thread)
    assert second.code == "OK" and second.body["codex_session_id"] == thread
    assert second.body["session_id"] != first.body["session_id"]
    again = await api.prompt(second.body["session_id"])  # the second session's own next run
    assert again.code == "OK"
    assert (await api.get_session(thread)).body["session_id"] == first.body["session_id"]


async def test_a_secure_run_does_not_continue_a_plain_sessions_thread(api: Both) -> None:
    thread = (await api.complete()).body["codex_session_id"]
    answer = await api.complete(resume_session_id=thread, secure=True, secure_token=True)
    assert answer.code == "INVALID_ARGUMENT" and "not secure" in answer.message, answer


def test_at_startup_a_shared_thread_belongs_to_the_session_created_first(tmp_path: Path) -> None:
    """Sessions on disk from before: directory order must not decide who owns the thread."""
    thread = str(uuid.uuid4())
    plain, secure = tmp_path / "sessions", tmp_path / "secure"
    sessions = {
        # (root, id sorting first, created later) and (secure root, created first)
        plain: ("00000000-0000-4000-8000-000000000001", "2026-02-02T00:00:00.000Z"),
        secure: ("ffffffff-0000-4000-8000-000000000001", "2026-01-01T00:00:00.000Z"),
    }
    for root, (session_id, created) in sessions.items():
        directory = root / f"session-{session_id}"
        directory.mkdir(parents=True)
        meta = {"session_id": session_id, "codex_session_id": thread, "created_at": created}
        (directory / "meta.json").write_text(json.dumps(meta))
    store = FileSessionStore([plain], secure)
    store.load()
    try:
        owner = store.resolve(thread)
        assert owner.id == sessions[secure][0] and owner.secure
        assert store.thread_is_secure(thread)
    finally:
        store.close()


# --- 9: thread ids are UUIDs, and codex's argv has `--` before its positionals ------------------


HOSTILE_THREAD_IDS = [
    pytest.param(BYPASS, id="bypass-flag"),
    pytest.param("--last", id="last"),
    pytest.param("-", id="stdin"),
    pytest.param("--config=model_provider='evil'", id="config"),
    pytest.param("", id="empty"),
    pytest.param(" 0199a213-81c0-7800-8aa1-bbab2a035a53", id="padded"),
    pytest.param("0199a213-81c0-7800-8aa1-bbab2a035a53\n--x", id="newline"),
    pytest.param("0199a21381c078008aa1bbab2a035a53", id="no-dashes"),
    pytest.param("x" * LONG, id="20kb"),
    pytest.param(42, id="number"),
    pytest.param(None, id="null"),
]


@pytest.mark.parametrize("thread", HOSTILE_THREAD_IDS)
def test_thread_started_with_anything_but_a_uuid_is_no_thread(thread: object) -> None:
    outcome = RunOutcome()
    outcome.observe({"type": "thread.started", "thread_id": thread})
    assert outcome.thread_id is None
    assert not is_thread_id(thread)


@pytest.mark.parametrize(
    "thread",
    [
        "0199a213-81c0-7800-8aa1-bbab2a035a53",
        "0199A213-81C0-7800-8AA1-BBAB2A035A53",
        pytest.param(str(uuid.uuid4()), id="random-v4"),  # a stable id: workers collect alike
    ],
)
def test_a_uuid_is_a_thread(thread: str) -> None:
    outcome = RunOutcome()
    outcome.observe({"type": "thread.started", "thread_id": thread})
    assert outcome.thread_id == thread.lower()  # canonical


async def test_a_meta_json_thread_that_is_an_option_never_reaches_codex(api: Both) -> None:
    answer = await api.prompt(HOSTILE_META_SESSIONS[api.protocol])
    assert answer.code == "OK", answer
    argv = argv_of(answer)
    assert BYPASS not in argv and "resume" not in argv, argv
    assert argv[-2:] == ["--", "-"]
    assert (await api.get_session(BYPASS)).code in ("NOT_FOUND", "INVALID_ARGUMENT")


async def test_codex_argv_puts_a_double_dash_before_its_positionals(api: Both) -> None:
    first = await api.complete()
    assert argv_of(first)[-2:] == ["--", "-"]
    thread = first.body["codex_session_id"]
    again = await api.prompt(first.body["session_id"])
    assert argv_of(again)[-4:] == ["resume", "--", thread, "-"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_thread_id_an_agent_announces_is_checked_before_it_is_resumed(
    tmp_path: Path, protocol: str
) -> None:
    env = gateway_env(tmp_path, "thread_agent.py")
    async with (
        running(env, tmp_path) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30, trust_env=False) as http,
        grpc.aio.insecure_channel(gw.target) as channel,
    ):
        api = Both(protocol, http, gateway_pb2_grpc.GatewayServiceStub(channel))
        first = await api.complete(env={"FAKE_AGENT_THREAD_ID": BYPASS})
        assert first.code == "OK", first
        assert not first.body.get("codex_session_id")
        second = await api.prompt(first.body["session_id"])
        assert second.code == "OK", second
        argv = json.loads(second.body["output"])["argv"]
        assert BYPASS not in argv and "resume" not in argv, argv


async def test_the_real_codex_resumes_a_thread_given_as_resume_session_id(
    config: Config, model_server: ModelServer
) -> None:
    """`codex exec ... resume -- <id> -` is what codex 0.169 accepts (the real binary)."""
    async with running_gateway(config) as gateway:
        await _resume_with_the_real_codex(gateway.stub)


async def _resume_with_the_real_codex(stub: Any) -> None:
    first = (
        await stub.Complete(
            runs_pb2.CompleteRequest(
                run=runs_pb2.RunInput(prompt="[[scenario:message]] remember 42")
            )
        )
    ).result
    second = (
        await stub.Complete(
            runs_pb2.CompleteRequest(
                run=runs_pb2.RunInput(
                    prompt="[[scenario:echo_history]] what did I say?",
                    resume_session_id=first.codex_session_id,
                )
            )
        )
    ).result
    assert second.session_id != first.session_id
    assert second.codex_session_id == first.codex_session_id
    assert "remember 42" in second.output


# --- 12: long inputs are refused briefly, never with RESOURCE_EXHAUSTED -------------------------


def _long(n: int = LONG) -> str:
    return "a" * n


LONG_REST_CALLS = [
    pytest.param("GET", f"/sessions/{_long(LONG_IN_URL)}", {}, id="session-id"),
    pytest.param("GET", f"/sessions/{_long(LONG_IN_URL)}/search?q=x", {}, id="search-id"),
    pytest.param("POST", f"/sessions/{_long(LONG_IN_URL)}/prompt", {"json": {}}, id="prompt-id"),
    pytest.param("POST", f"/sessions/{_long(LONG_IN_URL)}/cancel", {"json": {}}, id="cancel-id"),
    pytest.param("GET", f"/sessions/{_long(LONG_IN_URL)}/tail", {}, id="tail-id"),
    pytest.param("GET", "/sessions", {"params": {"since": _long(LONG_IN_URL)}}, id="since"),
    pytest.param("POST", "/completion", {"json": {"prompt": "x", "model": _long()}}, id="model"),
    pytest.param(
        "POST", "/completion", {"json": {"prompt": "x", "workspace": _long()}}, id="workspace"
    ),
    pytest.param("POST", "/completion", {"json": {"prompt": "x", "cwd": _long()}}, id="cwd"),
    pytest.param(
        "POST", "/completion", {"json": {"prompt": "x", "env": {_long(): "1"}}}, id="env-name"
    ),
    pytest.param(
        "POST", "/completion", {"json": {"prompt": "x", "env": {"a-": _long()}}}, id="env-bad"
    ),
    pytest.param(
        "POST", "/completion", {"json": {"prompt": "x", "session_id": _long()}}, id="session"
    ),
    pytest.param(
        "POST",
        "/completion",
        {"json": {"prompt": "x", "resume_session_id": _long()}},
        id="resume-session-id",
    ),
    pytest.param("GET", f"/triggers/{_long(LONG_IN_URL)}", {}, id="trigger-id"),
    pytest.param("PATCH", f"/triggers/{_long(LONG_IN_URL)}", {"json": {"a": 1}}, id="patch-id"),
    pytest.param("DELETE", f"/triggers/{_long(LONG_IN_URL)}", {}, id="delete-id"),
    pytest.param(
        "GET", "/triggers", {"params": {"trigger_file": _long(LONG_IN_URL)}}, id="trigger-file"
    ),
    pytest.param(
        "POST",
        "/triggers",
        {
            "json": {
                "prompt_text": "x",
                "schedule": {"mode": "daily", "time": "09:00", "timezone": _long()},
            }
        },
        id="timezone",
    ),
    pytest.param(
        "POST",
        "/triggers",
        {"json": {"prompt_text": "x", "schedule": {"mode": "cron", "cron": _long()}}},
        id="cron",
    ),
    pytest.param(
        "POST",
        "/triggers",
        {"json": {"prompt_text": "x", "schedule": {"mode": "once", "at": _long()}}},
        id="at",
    ),
    pytest.param(
        "GET", "/sessions", {"headers": {"X-Codex-Secure-Token": _long(LONG_IN_URL)}}, id="header"
    ),
    pytest.param(
        "GET", "/sessions", {"params": {"secure_token": _long(LONG_IN_URL)}}, id="token-query"
    ),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), LONG_REST_CALLS)
async def test_rest_a_long_input_is_refused_with_a_short_message(
    live: Spawned, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=30, trust_env=False) as http:
        response = await http.request(method, path, **kwargs)
    # 414/431: the bridge's own limits on a request's head, when they come first.
    assert response.status_code in (400, 404, 414, 431), response.text[:300]
    assert len(response.text) < MAX_MESSAGE + 200, response.text[:300]


def _trigger_value(payload: dict[str, Any]) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(payload, value)
    return value


LONG_GRPC_CALLS = [
    pytest.param("GetSession", sessions_pb2.GetSessionRequest(session_id=_long()), id="session-id"),
    pytest.param(
        "SearchSession", sessions_pb2.SearchSessionRequest(session_id=_long(), q="x"), id="search"
    ),
    pytest.param(
        "CancelSession", sessions_pb2.CancelSessionRequest(session_id=_long()), id="cancel"
    ),
    pytest.param("ListSessions", sessions_pb2.ListSessionsRequest(since=_long()), id="since"),
    pytest.param(
        "PromptSession",
        runs_pb2.PromptSessionRequest(session_id=_long(), run=runs_pb2.RunInput(prompt="x")),
        id="prompt-id",
    ),
    pytest.param(
        "Complete",
        runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="x", model=_long())),
        id="model",
    ),
    pytest.param(
        "Complete",
        runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="x", workspace=_long())),
        id="workspace",
    ),
    pytest.param(
        "Complete",
        runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="x", env={_long(): "1"})),
        id="env-name",
    ),
    pytest.param(
        "Complete",
        runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="x", resume_session_id=_long())),
        id="resume-session-id",
    ),
    pytest.param(
        "Complete",
        runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="x", session_id=_long())),
        id="session",
    ),
    pytest.param("GetTrigger", triggers_pb2.GetTriggerRequest(trigger_id=_long()), id="trigger-id"),
    pytest.param(
        "DeleteTrigger", triggers_pb2.DeleteTriggerRequest(trigger_id=_long()), id="delete-id"
    ),
    pytest.param(
        "ListTriggers", triggers_pb2.ListTriggersRequest(trigger_file=_long()), id="trigger-file"
    ),
    pytest.param(
        "CreateTriggers",
        triggers_pb2.CreateTriggersRequest(
            triggers=_trigger_value(
                {"prompt_text": "x", "schedule": {"mode": "cron", "cron": _long()}}
            )
        ),
        id="cron",
    ),
]


@pytest.mark.parametrize(("name", "request_message"), LONG_GRPC_CALLS)
async def test_grpc_a_long_input_is_refused_with_a_short_message(
    live: Spawned, name: str, request_message: Any
) -> None:
    async with grpc.aio.insecure_channel(live.target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            call = getattr(stub, name)(request_message)
            if name in ("StreamCompletion", "TailSession"):
                async for _ in call:
                    pass
            else:
                await call
    assert raised.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert len(raised.value.details() or "") < MAX_MESSAGE


async def test_grpc_a_long_tail_session_id_is_not_found(live: Spawned) -> None:
    async with grpc.aio.insecure_channel(live.target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stub.TailSession(sessions_pb2.TailSessionRequest(session_id=_long())):
                pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(raised.value.details() or "") < MAX_MESSAGE


# --- 14: the request env is an allow-list --------------------------------------------------------

# Each changes what some tool the agent starts runs, loads or trusts.
HOSTILE_ENV_NAMES = [
    "OPENSSL_CONF",
    "OPENSSL_MODULES",
    "OPENSSL_ENGINES",
    "LUA_INIT",
    "LUA_PATH",
    "RUSTC_WRAPPER",
    "RUSTC",
    "RUSTUP_TOOLCHAIN",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "LESSOPEN",
    "LESSCLOSE",
    "PAGER",
    "MANPAGER",
    "EDITOR",
    "VISUAL",
    "BROWSER",
    "NODE_EXTRA_CA_CERTS",
    "NODE_TLS_REJECT_UNAUTHORIZED",
    "NPM_CONFIG_REGISTRY",
    "YARN_RC_FILENAME",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_INDEX_URL",
    "GOFLAGS",
    "GOPROXY",
    "GOTOOLCHAIN",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "KUBECONFIG",
    "CLASSPATH",
    "JDK_JAVA_OPTIONS",
    "MAVEN_OPTS",
    "DOTNET_STARTUP_HOOKS",
    "CORECLR_PROFILER_PATH",
    "PHPRC",
    "TCLLIBPATH",
    "R_PROFILE_USER",
    "ERL_AFLAGS",
    "SSH_ASKPASS",
    "GIT_SSH_COMMAND",
    "MAKEFLAGS",
    "CC",
    "XDG_CONFIG_HOME",
    "VIMINIT",
    "SSL_CERT_FILE",
    "CURL_HOME",
    "WGETRC",
    "GNUPGHOME",
]


@pytest.mark.parametrize("name", HOSTILE_ENV_NAMES)
async def test_a_variable_that_changes_what_runs_is_refused_by_default(
    api: Both, name: str
) -> None:
    answer = await api.complete(env={name: "/tmp/evil", "TASK_ID": "1"})
    assert answer.code == "INVALID_ARGUMENT", answer
    assert name in answer.message and "TASK_ID" not in answer.message


@pytest.mark.parametrize("name", HOSTILE_ENV_NAMES)
def test_the_floor_wins_over_an_allow_everything_pattern(name: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_request_env({name: "x"}, ("*",))
    assert name in refused.value.message


@pytest.mark.parametrize(
    "name", ["TASK_ID", "JOB_NAME", "APP_MODE", "PROJECT_KEY", "INPUT_URL", "PARAM_N", "CI"]
)
def test_ordinary_task_variables_are_allowed_by_default(name: str) -> None:
    assert check_request_env({name: "v"}, DEFAULT_REQUEST_ENV_ALLOW) == {name: "v"}


def test_a_refusal_names_a_few_variables_and_counts_the_rest() -> None:
    env = {f"UNLISTED_{n:02d}": "x" for n in range(30)}
    with pytest.raises(InvalidRequest) as refused:
        check_request_env(env, DEFAULT_REQUEST_ENV_ALLOW)
    assert "UNLISTED_00" in refused.value.message and "(and 22 more)" in refused.value.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_allowed_variables_reach_the_agent(tmp_path: Path, protocol: str) -> None:
    env = gateway_env(
        tmp_path, "env_agent.py", CODEX_GATEWAY_REQUEST_ENV_ALLOW="TASK_*,CI,MY_TEAM_*"
    )
    async with (
        running(env, tmp_path) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30, trust_env=False) as http,
        grpc.aio.insecure_channel(gw.target) as channel,
    ):
        api = Both(protocol, http, gateway_pb2_grpc.GatewayServiceStub(channel))
        sent = {"TASK_ID": "7", "CI": "1", "MY_TEAM_FLAG": "on"}
        answer = await api.complete(env=sent)
        assert answer.code == "OK", answer
        agent_env = json.loads(answer.body["output"])
        assert {name: agent_env.get(name) for name in sent} == sent
        refused = await api.complete(env={"APP_MODE": "x"})  # not in this gateway's list
        assert refused.code == "INVALID_ARGUMENT" and "APP_MODE" in refused.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, DEFAULT_REQUEST_ENV_ALLOW, id="unset"),
        pytest.param("", DEFAULT_REQUEST_ENV_ALLOW, id="empty"),
        pytest.param("TASK_*, MY_?", ("TASK_*", "MY_?"), id="patterns"),
        pytest.param("*", ("*",), id="everything-above-the-floor"),
    ],
)
def test_request_env_allow_is_read_from_the_environment(
    raw: str | None, expected: tuple[str, ...]
) -> None:
    environ = {} if raw is None else {"CODEX_GATEWAY_REQUEST_ENV_ALLOW": raw}
    assert Config.from_env(environ).request_env_allow == expected


@pytest.mark.parametrize("raw", ["TASK-*", "A B", "TASK_[x]", "$HOME"])
def test_a_bad_request_env_pattern_stops_startup(raw: str) -> None:
    with pytest.raises(ConfigError, match="CODEX_GATEWAY_REQUEST_ENV_ALLOW"):
        Config.from_env({"CODEX_GATEWAY_REQUEST_ENV_ALLOW": raw})


# --- 15: client mistakes that were 500 / INTERNAL / UNKNOWN -------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/completion", {"prompt": "x", "metadata": {"n": 10**400}}, id="metadata"),
        pytest.param(
            "/completion/stream", {"prompt": "x", "metadata": {"n": -(10**400)}}, id="stream"
        ),
        pytest.param(
            "/triggers",
            {"prompt_text": "x", "schedule": {"mode": "daily", "time": "09:00"}, "n": 10**400},
            id="trigger",
        ),
    ],
)
async def test_rest_an_integer_no_double_can_hold_is_invalid(
    live: Spawned, path: str, body: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=30, trust_env=False) as http:
        response = await http.post(
            path, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text[:300]
    assert "Traceback" not in response.text


def _with_number(number: float) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.fields["n"].number_value = number
    return struct


NON_FINITE = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
]


def _struct_requests(number: float) -> list[tuple[str, Any]]:
    run = runs_pb2.RunInput(prompt="x", metadata=_with_number(number))
    value = struct_pb2.Value(struct_value=_with_number(number))
    return [
        ("Complete", runs_pb2.CompleteRequest(run=run)),
        ("StreamCompletion", runs_pb2.StreamCompletionRequest(run=run)),
        ("PromptSession", runs_pb2.PromptSessionRequest(session_id=HOSTILE_META_SESSION, run=run)),
        ("NudgeSession", runs_pb2.NudgeSessionRequest(session_id=HOSTILE_META_SESSION, run=run)),
        ("CreateTriggers", triggers_pb2.CreateTriggersRequest(triggers=value)),
        (
            "UpdateTrigger",
            triggers_pb2.UpdateTriggerRequest(trigger_id="t", patch=_with_number(number)),
        ),
    ]


@pytest.mark.parametrize("number", NON_FINITE)
async def test_grpc_a_struct_number_json_cannot_hold_is_invalid(
    live: Spawned, number: float
) -> None:
    async with grpc.aio.insecure_channel(live.target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for name, message in _struct_requests(number):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                call = getattr(stub, name)(message)
                if name == "StreamCompletion":
                    async for _ in call:
                        pass
                else:
                    await call
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert "Error" not in (raised.value.details() or ""), raised.value.details()


def _methods() -> list[Any]:
    service = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
    return [
        pytest.param(f"/{service.full_name}/{m.name}", m.server_streaming, id=m.name)
        for m in service.methods
    ]


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\x7f", b"\x08"])
@pytest.mark.parametrize(("method", "streaming"), _methods())
async def test_grpc_bytes_that_are_no_request_message_are_invalid(
    live: Spawned, method: str, streaming: bool, garbage: bytes
) -> None:
    async with grpc.aio.insecure_channel(live.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            if streaming:
                stream = channel.unary_stream(method)
                async for _ in stream(garbage):
                    pass
            else:
                await channel.unary_unary(method)(garbage)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value
    assert "Decode" not in (raised.value.details() or "")


# The guard itself, around a servicer with a bug (no gateway method has one on purpose).


class _Boom(RuntimeError):
    pass


async def _buggy_unary(request: bytes, context: Any) -> bytes:
    raise _Boom("/secret/path/in/the/exception")


async def _buggy_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"first"
    raise _Boom("/secret/path/in/the/exception")


async def test_a_bug_is_internal_without_its_text_and_logs_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = grpc.method_handlers_generic_handler(
        "test.Buggy",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_buggy_unary),
            "Stream": grpc.unary_stream_rpc_method_handler(_buggy_stream),
        },
    )
    server = grpc.aio.server(interceptors=[ServicerGuard()])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(3):
                with caplog.at_level(logging.ERROR, logger="gateway.api.boundary"):
                    with pytest.raises(grpc.aio.AioRpcError) as unary:
                        await channel.unary_unary("/test.Buggy/Unary")(b"")
                    received = []
                    with pytest.raises(grpc.aio.AioRpcError) as streamed:
                        async for message in channel.unary_stream("/test.Buggy/Stream")(b""):
                            received.append(message)
                assert received == [b"first"]
                for error in (unary.value, streamed.value):
                    assert error.code() == grpc.StatusCode.INTERNAL
                    assert error.details() == "Internal error"
    finally:
        await server.stop(None)
    records = [r for r in caplog.records if r.name == "gateway.api.boundary"]
    assert len(records) == 6  # one line per failed call
    assert sum(r.exc_info is not None for r in records) == 2  # a traceback per method, once
