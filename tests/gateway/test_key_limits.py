"""Per-key limits (docs/design/tenants.md, "Request path" 3): a key's max_concurrent and
runs_per_minute (429, the key's own facts, Retry-After), its allowed_models and
workspace_roots (403 naming what is not allowed), on both protocols, at their edge under
concurrent requests, and every place given back however the run ends. Real gateway, real
bridge, a real key file, fake agents."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2, status_pb2

from codex_gateway.v1 import runs_pb2, sessions_pb2, triggers_pb2
from gateway.auth.keys import ApiKey, digest_of
from gateway.auth.restrictions import CODEX_DEFAULT, check_model
from gateway.config import Config
from gateway.errors import ModelNotAllowed
from tests.fakes import AGENTS_DIR
from tests.gateway.test_triggers import DAILY, with_triggers
from tests.harness import RunningGateway, running_bridge, running_gateway
from tests.processes import running_below

TOKEN = "the-admin-token"  # a test's own secrets
ALLOWED_MODEL = "gpt-allowed"


def secret(name: str) -> str:
    return f"k-{name}"


def bearer(name: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret(name)}"),)


def header(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(name)}"}


def entry(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "sha256": digest_of(secret(name)).hex(),
        "tenant": "team-a",
        "scopes": ["run", "read", "cancel", "triggers"],
        **fields,
    }


@dataclass
class Served:
    gw: RunningGateway
    rest: httpx.AsyncClient
    workspace: Path

    def key(self, name: str) -> ApiKey:
        key_file = self.gw.gateway.key_file
        assert key_file is not None
        key = key_file.keys.named(name)
        assert key is not None
        return key

    def running(self, name: str) -> int:
        return self.gw.gateway.runner.quotas.running(self.key(name))


@contextlib.asynccontextmanager
async def serving(
    config: Config, tmp_path: Path, **limits: dict[str, Any]
) -> AsyncIterator[Served]:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(
        json.dumps({"keys": [entry(name, **fields) for name, fields in limits.items()]})
    )
    config = with_triggers(_replace(config, api_token=TOKEN, api_keys_file=keys_file), tmp_path)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as rest,
    ):
        yield Served(gw, rest, config.default_workspace)


def _replace(config: Config, **fields: Any) -> Config:
    return dataclasses.replace(config, **fields)


def completion(**fields: Any) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi", **fields))


def slow(seconds: float) -> dict[str, str]:
    return {"FAKE_AGENT_SECONDS": str(seconds)}


def facts(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], int | None]:
    """The ErrorInfo's reason and metadata, and the RetryInfo's seconds if any."""
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    reason, metadata, retry = "", {}, None
    for detail in status_pb2.Status.FromString(raw).details:
        info, delay = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(delay):
            retry = delay.retry_delay.seconds
    metadata.pop("request_id", None)
    return reason, metadata, retry


async def until(check: Callable[[], bool], timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


@pytest.fixture
def slow_config(config_for: Callable[..., Config]) -> Config:
    return config_for(
        codex_bin=AGENTS_DIR / "slow_agent.py", max_concurrent=10, default_model=ALLOWED_MODEL
    )


# -- max_concurrent ---------------------------------------------------------------------------


async def test_max_concurrent_admits_exactly_its_number_over_grpc(
    slow_config: Config, tmp_path: Path
) -> None:
    async with serving(slow_config, tmp_path, limited={"max_concurrent": 2}) as served:
        stub = served.gw.stub
        results = await asyncio.gather(
            *(stub.Complete(completion(env=slow(2)), metadata=bearer("limited")) for _ in range(6)),
            return_exceptions=True,
        )
        done = [r for r in results if isinstance(r, runs_pb2.CompleteResponse)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert (len(done), len(refused)) == (2, 4), results
        for error in refused:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert facts(error) == (
                "CONCURRENCY_LIMIT",
                {"retry_after": "5", "active": "2", "max": "2"},
                5,
            )
        assert served.running("limited") == 0
        assert served.gw.gateway.slots.active == 0


async def test_max_concurrent_admits_exactly_its_number_over_rest(
    slow_config: Config, tmp_path: Path
) -> None:
    async with serving(slow_config, tmp_path, limited={"max_concurrent": 2}) as served:
        answers = await asyncio.gather(
            *(
                served.rest.post(
                    "/completion", json={"prompt": "hi", "env": slow(2)}, headers=header("limited")
                )
                for _ in range(6)
            )
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 200, 429, 429, 429, 429]
        for answer in answers:
            if answer.status_code == 429:
                body = answer.json()
                assert answer.headers["retry-after"] == "5"
                assert (body["reason"], body["active"], body["max"], body["retry_after"]) == (
                    "CONCURRENCY_LIMIT",
                    2,
                    2,
                    5,
                )
        assert served.running("limited") == 0


async def test_a_keys_limit_counts_its_own_runs_only(slow_config: Config, tmp_path: Path) -> None:
    async with serving(slow_config, tmp_path, limited={"max_concurrent": 1}) as served:
        stub = served.gw.stub
        first = asyncio.ensure_future(
            stub.Complete(completion(env=slow(2)), metadata=bearer("limited"))
        )
        await until(lambda: served.running("limited") == 1)
        refused = await served.rest.post(
            "/completion", json={"prompt": "hi"}, headers=header("limited")
        )
        assert refused.status_code == 429
        # The admin (no quota) and the gateway-wide limit are untouched by it.
        other = await stub.Complete(
            completion(env=slow(0)), metadata=(("authorization", f"Bearer {TOKEN}"),)
        )
        assert other.result.status == "completed"
        assert (await first).result.status == "completed"
        assert served.running("limited") == 0


# -- every way a run ends gives its place back -------------------------------------------------


async def test_the_place_comes_back_after_cancel_timeout_and_a_client_gone(
    slow_config: Config, tmp_path: Path
) -> None:
    async with serving(slow_config, tmp_path, limited={"max_concurrent": 1}) as served:
        stub = served.gw.stub
        md = bearer("limited")
        # Cancelled by CancelSession.
        call = stub.StreamCompletion(
            runs_pb2.StreamCompletionRequest(run=runs_pb2.RunInput(prompt="hi", env=slow(30))),
            metadata=md,
        )
        first = await call.read()
        session_id = first.started.session_id
        assert served.running("limited") == 1
        cancelled = await stub.CancelSession(
            sessions_pb2.CancelSessionRequest(session_id=session_id), metadata=md
        )
        assert cancelled.cancelled
        with pytest.raises(grpc.aio.AioRpcError):
            while await call.read() is not grpc.aio.EOF:
                pass
        await until(lambda: served.running("limited") == 0)

        # Its deadline.
        with pytest.raises(grpc.aio.AioRpcError) as timed_out:
            await stub.Complete(completion(env=slow(30), timeout_ms=1000), metadata=md)
        assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await until(lambda: served.running("limited") == 0)

        # The client goes away: the run goes on, holding its place, until it ends.
        gone = asyncio.ensure_future(stub.Complete(completion(env=slow(2)), metadata=md))
        await until(lambda: served.running("limited") == 1)
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        busy = await served.rest.post(
            "/completion", json={"prompt": "hi"}, headers=header("limited")
        )
        assert busy.status_code == 429 and busy.json()["reason"] == "CONCURRENCY_LIMIT"
        await until(lambda: served.running("limited") == 0)
        done = await stub.Complete(completion(env=slow(0)), metadata=md)
        assert done.result.status == "completed"
        assert served.running("limited") == 0
        await until(lambda: running_below() == {})


async def test_the_gateway_wide_limit_still_applies_and_its_refusal_gives_the_place_back(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    config = config_for(
        codex_bin=AGENTS_DIR / "slow_agent.py", max_concurrent=1, default_model=ALLOWED_MODEL
    )
    async with serving(config, tmp_path, limited={"max_concurrent": 3}) as served:
        stub = served.gw.stub
        holder = asyncio.ensure_future(
            stub.Complete(completion(env=slow(2)), metadata=(("authorization", f"Bearer {TOKEN}"),))
        )
        await until(lambda: served.gw.gateway.slots.active == 1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Complete(completion(), metadata=bearer("limited"))
        # The gateway's own limit, its own facts (1 of 1), not the key's (0 of 3).
        assert facts(refused.value)[1] == {"retry_after": "5", "active": "1", "max": "1"}
        await until(lambda: served.running("limited") == 0)
        await holder


# -- runs_per_minute ---------------------------------------------------------------------------


async def test_runs_per_minute_is_429_rate_limited_with_retry_after_on_both_protocols(
    slow_config: Config, tmp_path: Path
) -> None:
    async with serving(
        slow_config, tmp_path, metered={"runs_per_minute": 2}, metered_rest={"runs_per_minute": 2}
    ) as served:
        stub = served.gw.stub
        for _ in range(2):
            ok = await stub.Complete(completion(env=slow(0)), metadata=bearer("metered"))
            assert ok.result.status == "completed"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Complete(completion(env=slow(0)), metadata=bearer("metered"))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reason, metadata, retry = facts(caught.value)
        assert reason == "RATE_LIMITED"
        # 2 a minute: a token every 30 s; the bucket says when the next one is there.
        assert 20 <= int(metadata["retry_after"]) <= 30 and retry == int(metadata["retry_after"])
        assert "metered" in (caught.value.details() or "")
        assert served.running("metered") == 0  # a refusal holds no place

        for _ in range(2):
            answer = await served.rest.post(
                "/completion", json={"prompt": "hi", "env": slow(0)}, headers=header("metered_rest")
            )
            assert answer.status_code == 200
        answers = await asyncio.gather(
            *(
                served.rest.post(
                    "/completion", json={"prompt": "hi"}, headers=header("metered_rest")
                )
                for _ in range(3)
            )
        )
        for answer in answers:
            assert answer.status_code == 429
            body = answer.json()
            assert body["reason"] == "RATE_LIMITED"
            assert answer.headers["retry-after"] == str(body["retry_after"])
            assert 20 <= body["retry_after"] <= 30
        # Another key's bucket is its own.
        admin = await served.rest.post(
            "/completion",
            json={"prompt": "hi", "env": slow(0)},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert admin.status_code == 200


# -- allowed_models and workspace_roots --------------------------------------------------------


async def test_models_and_workspaces_outside_a_keys_restrictions_are_403(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    slow_config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", default_model=ALLOWED_MODEL)
    team = slow_config.default_workspace / "team-a"
    (team / "repo").mkdir(parents=True)
    outside = slow_config.default_workspace / "team-b"
    outside.mkdir()
    (team / "escape").symlink_to(outside)
    restricted = {
        "allowed_models": [ALLOWED_MODEL],
        "workspace_roots": [str(team)],
        "max_concurrent": 5,
    }
    async with serving(slow_config, tmp_path, restricted=restricted) as served:
        stub, rest, md = served.gw.stub, served.rest, bearer("restricted")

        async def refused_grpc(request: Any, reason: str, named: dict[str, str]) -> None:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await request
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert facts(caught.value)[:2] == (reason, named)

        async def refused_rest(path: str, body: dict[str, Any], reason: str, named: str) -> None:
            answer = await rest.post(path, json=body, headers=header("restricted"))
            assert answer.status_code == 403, answer.text
            assert answer.json()["reason"] == reason
            assert named in answer.json()["error"]

        # A model not allowed, given.
        await refused_grpc(
            stub.Complete(completion(model="gpt-other", workspace="team-a"), metadata=md),
            "MODEL_NOT_ALLOWED",
            {"model": "gpt-other"},
        )
        await refused_rest(
            "/completion",
            {"prompt": "hi", "model": "gpt-other", "workspace": "team-a"},
            "MODEL_NOT_ALLOWED",
            "gpt-other",
        )
        # The gateway's default workspace is not the key's.
        await refused_grpc(
            stub.Complete(completion(), metadata=md),
            "WORKSPACE_NOT_ALLOWED",
            {"workspace": str(slow_config.default_workspace)},
        )
        await refused_rest("/completion", {"prompt": "hi"}, "WORKSPACE_NOT_ALLOWED", "workspace")
        # A symlink inside the key's root that leads out of it is judged where it leads.
        await refused_grpc(
            stub.Complete(completion(workspace="team-a/escape"), metadata=md),
            "WORKSPACE_NOT_ALLOWED",
            {"workspace": str(outside)},
        )
        await refused_rest(
            "/completion",
            {"prompt": "hi", "workspace": "team-a/escape"},
            "WORKSPACE_NOT_ALLOWED",
            "team-b",
        )
        # Within: the default model (allowed), a workspace below the key's root.
        made = await stub.Complete(completion(workspace="team-a/repo", env=slow(0)), metadata=md)
        assert made.result.status == "completed"
        session_id = made.result.session_id
        # Continuing a session: its model (the allowed one) when none is given; another is 403.
        answer = await rest.post(
            f"/sessions/{session_id}/prompt",
            json={"prompt": "again", "workspace": "team-a/repo", "env": slow(0)},
            headers=header("restricted"),
        )
        assert answer.status_code == 200, answer.text
        assert ALLOWED_MODEL in json.loads(answer.json()["output"])["argv"]
        await refused_rest(
            f"/sessions/{session_id}/prompt",
            {"prompt": "again", "workspace": "team-a/repo", "model": "o-other"},
            "MODEL_NOT_ALLOWED",
            "o-other",
        )
        await refused_grpc(
            stub.PromptSession(
                runs_pb2.PromptSessionRequest(
                    session_id=session_id,
                    run=runs_pb2.RunInput(prompt="again", workspace="team-a/repo", model="o-x"),
                ),
                metadata=md,
            ),
            "MODEL_NOT_ALLOWED",
            {"model": "o-x"},
        )
        # A refusal takes no quota place.
        assert served.running("restricted") == 0


async def test_triggers_a_restricted_key_writes_are_checked_when_written(
    slow_config: Config, tmp_path: Path
) -> None:
    team = slow_config.default_workspace / "team-a"
    team.mkdir()
    restricted = {"allowed_models": [ALLOWED_MODEL], "workspace_roots": [str(team)]}
    async with serving(
        slow_config, tmp_path, restricted=restricted, narrow={"allowed_models": ["gpt-narrow"]}
    ) as served:
        stub, rest = served.gw.stub, served.rest

        def value(body: Any) -> struct_pb2.Value:
            return json_format.ParseDict(body, struct_pb2.Value())

        ok = {"id": "t-ok", "prompt_text": "x", "schedule": DAILY, "cwd": str(team)}
        made = await rest.post("/triggers", json=ok, headers=header("restricted"))
        assert made.status_code == 200, made.text
        out = {"id": "t-out", "prompt_text": "x", "schedule": DAILY}  # the default workspace
        answer = await rest.post("/triggers", json=out, headers=header("restricted"))
        assert answer.status_code == 403 and answer.json()["reason"] == "WORKSPACE_NOT_ALLOWED"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateTriggers(
                triggers_pb2.CreateTriggersRequest(
                    triggers=value({"triggers": [ok | {"id": "g"}, out]})
                ),
                metadata=bearer("restricted"),
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Moving an allowed trigger out of the key's root.
        moved = await rest.patch(
            "/triggers/t-ok", json={"cwd": "../"}, headers=header("restricted")
        )
        assert moved.status_code == 403 and moved.json()["reason"] == "WORKSPACE_NOT_ALLOWED"
        # A trigger fires the gateway's default model: a key that may not run it may not
        # schedule it.
        with pytest.raises(grpc.aio.AioRpcError) as narrow:
            await stub.CreateTriggers(
                triggers_pb2.CreateTriggersRequest(triggers=value(ok | {"id": "n"})),
                metadata=bearer("narrow"),
            )
        assert facts(narrow.value)[:2] == ("MODEL_NOT_ALLOWED", {"model": ALLOWED_MODEL})
        listed = await rest.get("/triggers", headers={"Authorization": f"Bearer {TOKEN}"})
        assert [t["id"] for t in listed.json()["triggers"]] == ["t-ok"]


def test_a_key_with_allowed_models_may_not_run_codexs_unknown_default() -> None:
    key = ApiKey("k", b"", "t", frozenset({"run"}), allowed_models=frozenset({"m"}))
    check_model(key, "m")
    with pytest.raises(ModelNotAllowed) as caught:
        check_model(key, None)
    assert caught.value.details() == {"model": CODEX_DEFAULT}
    check_model(ApiKey("any", b"", "t", frozenset({"run"})), None)


async def test_a_forwarded_caller_gets_its_keys_limits_from_the_home_replicas_key_set(
    tmp_path: Path,
) -> None:
    from gateway.auth import principal
    from gateway.auth.gatekeeper import KeyCheck
    from gateway.auth.keys import parse_document
    from gateway.auth.principal import PRINCIPAL_KEY, Principal
    from gateway.cluster.forwarding import CLUSTER_TOKEN_KEY

    keys = parse_document(
        {"keys": [entry("limited", max_concurrent=2, runs_per_minute=5, allowed_models=["m"])]},
        roots=(tmp_path,),
    )
    check = KeyCheck(lambda: keys, open_methods=frozenset(), cluster=True, cluster_token="ct")
    seen: list[ApiKey] = []

    async def servicer(request: Any, context: Any) -> None:
        seen.append(principal.current().key)

    handler = grpc.unary_unary_rpc_method_handler(servicer)

    async def continuation(details: Any) -> Any:
        return handler

    @dataclasses.dataclass(frozen=True)
    class Details(grpc.HandlerCallDetails):  # type: ignore[misc]  # untyped in the stubs
        method: str
        invocation_metadata: tuple[tuple[str, str], ...]

    # As the entry replica encodes it: name, tenant, scopes; no limits.
    header = Principal(ApiKey("limited", b"", "team-a", frozenset({"run"}))).encode()
    stranger = Principal(ApiKey("stranger", b"", "team-b", frozenset({"run"}))).encode()
    for forwarded in (header, stranger):
        wrapped = await check.intercept_service(
            continuation,
            Details(
                "/codex_gateway.v1.GatewayService/Complete",
                ((CLUSTER_TOKEN_KEY, "ct"), (PRINCIPAL_KEY, forwarded)),
            ),
        )
        await asyncio.create_task(wrapped.unary_unary(None, None))
    limited, unknown = seen
    assert (limited.max_concurrent, limited.runs_per_minute) == (2, 5)
    assert limited.allowed_models == frozenset({"m"})
    assert (unknown.name, unknown.max_concurrent) == ("stranger", None)  # as forwarded
