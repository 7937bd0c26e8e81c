"""API keys at the boundary (docs/design/tenants.md, "Request path" 1): who may call what, on
both protocols, streams included; refusals counted and logged without the key; the key file
followed while requests are in flight. Real gateway, real bridge, a real key file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from bridge.bindings import service_descriptor
from codex_gateway.v1 import runs_pb2, sessions_pb2, triggers_pb2
from codex_gateway.v1 import status_pb2 as gw_status_pb2
from gateway.auth.keys import digest_of
from gateway.auth.principal import Principal
from gateway.auth.scopes import METHOD_SCOPES
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_bridge, running_gateway

TOKEN = "the-admin-token"  # a test's own secrets
KEYS = {
    "reader": ("k-reader", ["read"]),
    "runner": ("k-runner", ["run", "read"]),
    "stopper": ("k-stopper", ["cancel"]),
    "scheduler": ("k-scheduler", ["triggers"]),
}


def key_entry(name: str, **fields: Any) -> dict[str, Any]:
    secret, scopes = KEYS.get(name, (f"k-{name}", ["read"]))
    return {
        "name": name,
        "sha256": digest_of(secret).hex(),
        "tenant": "team-a",
        "scopes": scopes,
        **fields,
    }


def write_keys(path: Path, *entries: dict[str, Any]) -> None:
    path.write_text(json.dumps({"keys": list(entries)}))


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


@dataclass
class Served:
    gw: RunningGateway
    rest: httpx.AsyncClient
    keys_file: Path


@pytest.fixture
async def served(config_for: Callable[..., Config], tmp_path: Path) -> AsyncIterator[Served]:
    keys_file = tmp_path / "keys.json"
    write_keys(
        keys_file,
        *(key_entry(name) for name in KEYS),
        key_entry("old", expires_at="2020-01-01T00:00:00Z"),
        key_entry("off", disabled=True),
    )
    config = config_for(
        api_token=TOKEN, api_keys_file=keys_file, codex_bin=AGENTS_DIR / "echo_agent.py"
    )
    async with (
        running_gateway(config, background=True) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as rest,
    ):
        yield Served(gw, rest, keys_file)


def reason_of(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason, dict(info.metadata)
    return "", {}


def test_every_rpc_of_the_service_has_a_scope() -> None:
    methods = {method.name for method in service_descriptor().methods}
    assert methods == set(METHOD_SCOPES)


def test_a_forwarded_caller_round_trips_and_nothing_else_decodes() -> None:
    from gateway.auth.keys import ApiKey

    caller = Principal(ApiKey("ci", b"", "team-a", frozenset({"read", "run"})))
    decoded = Principal.decode(caller.encode())
    assert decoded is not None
    assert (decoded.name, decoded.tenant, decoded.key.scopes) == ("ci", "team-a", caller.key.scopes)
    for bad in ("", "{", "[]", '{"key":"x","tenant":"t","scopes":["root"]}', '{"key":1}'):
        assert Principal.decode(bad) is None


async def test_scopes_are_enforced_on_both_protocols(served: Served) -> None:
    stub, rest = served.gw.stub, served.rest
    # A session to read, made by the admin token.
    made = await stub.Complete(
        runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi")), metadata=bearer(TOKEN)
    )
    session_id = made.result.session_id
    calls: list[tuple[str, Callable[[Any], Any], str, str, dict[str, Any]]] = [
        # (scope, gRPC call, REST method, REST path, REST body)
        (
            "read",
            lambda md: stub.GetSession(
                sessions_pb2.GetSessionRequest(session_id=session_id), metadata=md
            ),
            "GET",
            f"/sessions/{session_id}",
            {},
        ),
        (
            "run",
            lambda md: stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi")), metadata=md
            ),
            "POST",
            "/completion",
            {"prompt": "hi"},
        ),
        (
            "cancel",
            lambda md: stub.CancelSession(
                sessions_pb2.CancelSessionRequest(session_id=session_id), metadata=md
            ),
            "POST",
            f"/sessions/{session_id}/cancel",
            {},
        ),
        (
            "triggers",
            lambda md: stub.ListTriggers(triggers_pb2.ListTriggersRequest(), metadata=md),
            "GET",
            "/triggers",
            {},
        ),
        (
            "admin",
            lambda md: stub.GetMetrics(gw_status_pb2.GetMetricsRequest(), metadata=md),
            "GET",
            "/metrics",
            {},
        ),
    ]
    for name, (secret, scopes) in KEYS.items():
        for scope, grpc_call, verb, path, body in calls:
            allowed = scope in scopes
            try:
                await grpc_call(bearer(secret))
            except grpc.aio.AioRpcError as error:
                assert error.code() != grpc.StatusCode.UNAUTHENTICATED, (name, scope)
                if not allowed:
                    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (name, scope)
                    assert reason_of(error) == ("SCOPE_DENIED", {"scope": scope, **_id(error)})
                    assert scope in (error.details() or "") and name in (error.details() or "")
                else:
                    assert error.code() != grpc.StatusCode.PERMISSION_DENIED, (name, scope)
            else:
                assert allowed, (name, scope)
            response = await rest.request(
                verb,
                path,
                headers={"authorization": f"Bearer {secret}"},
                **({"json": body} if verb == "POST" else {}),
            )
            if allowed:
                assert response.status_code not in (401, 403), (name, scope, response.text)
            else:
                assert response.status_code == 403, (name, scope, response.text)
                assert response.json()["reason"] == "SCOPE_DENIED"
                assert response.json()["scope"] == scope
    # The admin token may do everything.
    for _, grpc_call, *_rest in calls:
        with contextlib_suppress_rpc_errors_but(grpc.StatusCode.PERMISSION_DENIED):
            await grpc_call(bearer(TOKEN))


def _id(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The request id every ErrorInfo carries."""
    return {"request_id": reason_of(error)[1]["request_id"]}


class contextlib_suppress_rpc_errors_but:  # reads as a `with` phrase
    """Any RPC error but `code` is fine (the call was let through); `code` fails the test."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, trace: Any) -> bool:
        if isinstance(error, grpc.aio.AioRpcError):
            assert error.code() not in (self.code, grpc.StatusCode.UNAUTHENTICATED)
            return True
        return False


async def test_refused_keys_are_401_counted_by_reason_and_never_logged(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stub, rest = served.gw.stub, served.rest
    offered = {
        "missing": (),
        "unknown": bearer("k-nobody"),
        "expired": bearer("k-old"),
        "disabled": bearer("k-off"),
    }
    for reason, metadata in offered.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, reason
        headers = dict(metadata)
        response = await rest.get("/sessions", headers=headers)
        assert response.status_code == 401, reason
        assert "Bearer" in response.json()["error"]
        # A stream is refused alike.
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in stub.TailSession(
                sessions_pb2.TailSessionRequest(session_id="x"), metadata=metadata
            ):
                pass
        assert streamed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    metrics = await stub.GetMetrics(gw_status_pb2.GetMetricsRequest(), metadata=bearer(TOKEN))
    text = metrics.body.data.decode()
    for reason in offered:
        assert f'codex_gateway_auth_failures_total{{reason="{reason}"}} 3.0' in text, reason
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "authentication failed (expired key)" in logged
    for secret in ("k-nobody", "k-old", "k-off"):
        assert secret not in logged


async def test_a_key_reads_a_stream_with_its_scope(served: Served) -> None:
    stub = served.gw.stub
    made = await stub.Complete(
        runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi")), metadata=bearer("k-runner")
    )
    items = [
        item
        async for item in stub.TailSession(
            sessions_pb2.TailSessionRequest(session_id=made.result.session_id),
            metadata=bearer("k-reader"),
        )
    ]
    assert items
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in stub.TailSession(
            sessions_pb2.TailSessionRequest(session_id=made.result.session_id),
            metadata=bearer("k-stopper"),
        ):
            pass
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_key_file_is_followed_while_requests_are_in_flight(served: Served) -> None:
    """Rewritten in place, piece by piece, twenty times while the reader key calls without a
    pause: never refused (a JSON file caught half-written does not parse, and the last good set
    stays; a half-written TOML file that parses is test_api_keys.py's), and a key added is taken
    within seconds; a broken file keeps the last good keys and shows in /status."""
    stub, path = served.gw.stub, served.keys_file
    versions = [
        [key_entry(name) for name in KEYS],
        [key_entry(name) for name in KEYS] + [key_entry("late", scopes=["read"])],
    ]
    refused: list[str] = []
    done = asyncio.Event()

    async def call_forever() -> int:
        calls = 0
        while not done.is_set():
            try:
                await stub.ListSessions(
                    sessions_pb2.ListSessionsRequest(), metadata=bearer("k-reader")
                )
            except grpc.aio.AioRpcError as error:
                refused.append(str(error.code()))
            calls += 1
        return calls

    def rewrite() -> None:
        for number in range(20):
            text = json.dumps({"keys": versions[number % 2]}, indent=1).encode()
            with path.open("r+b", buffering=0) as file:
                file.truncate(0)
                for start in range(0, len(text), 64):
                    file.write(text[start : start + 64])
            os.utime(path)

    callers = [asyncio.create_task(call_forever()) for _ in range(4)]
    await asyncio.to_thread(rewrite)
    write_keys(path, *versions[1])
    for _ in range(200):
        try:
            await stub.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=bearer("k-late"))
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("the key added was never taken")
    done.set()
    assert sum(await asyncio.gather(*callers)) > 0
    assert refused == []

    path.write_text('{"keys": [')  # broken: the last good keys stay
    for _ in range(200):
        status = await stub.GetStatus(gw_status_pb2.GetStatusRequest(), metadata=bearer(TOKEN))
        if status.api_keys.HasField("error"):
            break
        await asyncio.sleep(0.05)
    assert "not valid JSON" in status.api_keys.error
    assert status.api_keys.path == str(path) and status.api_keys.keys == len(versions[1]) + 1
    await stub.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=bearer("k-late"))
    rest_status = await served.rest.get("/status", headers={"authorization": f"Bearer {TOKEN}"})
    assert "not valid JSON" in rest_status.json()["api_keys"]["error"]


async def test_a_broken_key_file_stops_startup_naming_it(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    from gateway.config import ConfigError
    from gateway.server import Gateway

    path = tmp_path / "keys.json"
    write_keys(path, key_entry("x", scopes=["sudo"]))
    with pytest.raises(ConfigError, match=r"CODEX_GATEWAY_API_KEYS_FILE.*scopes"):
        Gateway.build(config_for(api_keys_file=path))
