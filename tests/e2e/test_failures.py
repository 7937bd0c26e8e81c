"""Typed failures produced by the real codex CLI against the scripted model server: every run that
does not complete says why (`failure: {kind, message, retry_after_ms?}`) in its error over both
protocols (the REST body, the gRPC status details), its run record, its stream and its webhook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.config import Config, WebhookConfig
from tests.fakes import AGENTS_DIR
from tests.fakes.model_server import ModelServer
from tests.fakes.webhook_receiver import Receiver
from tests.harness import RunningGateway, running_bridge, running_gateway
from tests.statusdetails import grpc_error_body

pytestmark = pytest.mark.timeout(120)


@dataclass
class Served:
    gw: RunningGateway
    http: httpx.AsyncClient
    config: Config

    async def run(self, protocol: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One completion over either protocol: the HTTP status and the REST error body (or
        its gRPC equivalent: the message, the code and the RunFailure of the status details)."""
        if protocol == "rest":
            response = await self.http.post("/completion", json=body)
            return response.status_code, response.json()
        request = runs_pb2.CompleteRequest(run=json_format.ParseDict(body, runs_pb2.RunInput()))
        try:
            answer = await self.gw.stub.Complete(request)
        except grpc.aio.AioRpcError as exc:
            return _grpc_status(exc), grpc_error_body(exc)
        return 200, json_format.MessageToDict(answer.result, preserving_proto_field_name=True)

    async def last_run(self, session_id: str) -> dict[str, Any]:
        """The session's last run record, as GET /sessions/:id shows it."""
        response = await self.http.get(f"/sessions/{session_id}")
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()["run_history"][-1]
        return record

    async def only_session(self) -> str:
        listed = (await self.http.get("/sessions")).json()
        return str(listed[0]["session_id"])


def _grpc_status(exc: grpc.aio.AioRpcError) -> int:
    return {
        grpc.StatusCode.INTERNAL: 500,
        grpc.StatusCode.DEADLINE_EXCEEDED: 408,
        grpc.StatusCode.CANCELLED: 499,
        grpc.StatusCode.UNAVAILABLE: 503,
    }.get(exc.code(), 0)


@pytest.fixture
def serve(config_for: Callable[..., Config]) -> Callable[..., Any]:
    import contextlib

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Served]:
        config = config_for(**overrides)
        async with (
            running_gateway(config, background=config.webhook.url is not None) as gw,
            running_bridge(gw.target) as url,
            httpx.AsyncClient(base_url=url, timeout=90, trust_env=False) as http,
        ):
            yield Served(gw, http, config)

    return start


# -- each kind, from the real codex CLI

MINUTE_MS = 60_000


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize(
    ("prompt", "kind", "words", "retry_after_ms"),
    [
        pytest.param("[[scenario:http401]]", "auth", "401 Unauthorized", None, id="auth"),
        pytest.param("[[scenario:http400]]", "model_not_found", "does not exist", None,
                     id="model_not_found"),
        # A 429's Retry-After header is not in what codex reports: no retry_after_ms.
        pytest.param("[[scenario:http429]] [[reset:30]]", "rate_limited", "429", None,
                     id="rate_limited"),
        pytest.param("[[scenario:ratelimited]] [[reset:42.5]]", "rate_limited",
                     "try again in 42.5s", (42_500, 42_500), id="rate_limited_with_reset"),
        # "Try again at 12:34 PM": a minute, waited to its end.
        pytest.param("[[scenario:http429usage]] [[reset:600]]", "usage_limit",
                     "usage limit. Try again at", (9 * MINUTE_MS, 11 * MINUTE_MS),
                     id="usage_limit_with_reset"),
        pytest.param("[[scenario:http429usage]]", "usage_limit", "Try again later", None,
                     id="usage_limit"),
        pytest.param("[[scenario:http429quota]]", "usage_limit", "Quota exceeded", None,
                     id="insufficient_quota"),
        pytest.param("[[scenario:context]]", "context_window_exceeded", "context window", None,
                     id="context_window_exceeded"),
        pytest.param("[[scenario:http500]]", "provider_error", "high demand", None, id="5xx"),
        pytest.param("[[scenario:truncate]]", "provider_error", "stream closed before", None,
                     id="dropped_stream"),
        pytest.param("[[scenario:close]]", "provider_error", "error sending request", None,
                     id="closed_connection"),
        # The model stream goes silent: codex's own idle timeout (3 s in the test config).
        pytest.param("[[scenario:hang]]", "provider_error", "idle timeout", None,
                     id="silent_stream"),
    ],
)  # fmt: skip
async def test_each_failure_kind_from_real_codex(
    serve: Callable[..., Any],
    protocol: str,
    prompt: str,
    kind: str,
    words: str,
    retry_after_ms: tuple[int, int] | None,
) -> None:
    async with serve() as served:
        status, body = await served.run(protocol, {"prompt": f"{prompt} go"})
        assert status == 500, body  # an agent failure, whatever its kind (CONTRACT.md)
        assert body["code"] == "INTERNAL"
        failure = body["failure"]
        assert failure["kind"] == kind
        assert words.lower() in failure["message"].lower()
        assert failure["message"] in body["error"] or body["error"] in failure["message"]
        if retry_after_ms is None:
            assert failure["retry_after_ms"] is None
        else:
            low, high = retry_after_ms
            assert low <= failure["retry_after_ms"] <= high
        # The run record keeps it: session detail (and run lists) show it.
        record = await served.last_run(await served.only_session())
        assert record["status"] == "error"
        assert record["failure"] == failure


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_404_for_a_model_codex_does_not_know_is_model_not_found(
    serve: Callable[..., Any], protocol: str
) -> None:
    async with serve() as served:
        unknown = {"prompt": "[[scenario:http404]] go", "model": "nope"}
        status, body = await served.run(protocol, unknown)
        assert status == 500 and body["failure"]["kind"] == "model_not_found"
        assert body["failure"]["message"].startswith("unexpected status 404 Not Found")
        # The same 404 for a model codex knows names nothing it could be sure of.
        status, body = await served.run(protocol, {"prompt": "[[scenario:http404]] again"})
        assert status == 500 and body["failure"]["kind"] == "agent_error"


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_deadline_is_a_408_timeout(serve: Callable[..., Any], protocol: str) -> None:
    async with serve() as served:
        status, body = await served.run(
            protocol, {"prompt": "[[scenario:stall]]", "timeout_ms": 1000}
        )
        assert status == 408, body
        assert body["failure"] == {
            "kind": "timeout",
            "message": "Codex run timed out after 1000ms",
            "retry_after_ms": None,
        }
        session_id = await served.only_session()
        record = await served.last_run(session_id)
        assert (record["status"], record["failure"]["kind"]) == ("timeout", "timeout")
        detail = await served.gw.stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session_id)
        )
        assert detail.session.run_history[-1].failure.kind == "timeout"


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_cancel_is_a_cancelled_failure(
    serve: Callable[..., Any], model_server: ModelServer, protocol: str
) -> None:
    async with serve() as served:
        running = asyncio.ensure_future(served.run(protocol, {"prompt": "[[scenario:stall]]"}))
        session_id = await _running_session(served, model_server)
        cancelled = await served.http.post(f"/sessions/{session_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
        status, body = await running
        assert status == 499, body
        assert body["failure"]["kind"] == "cancelled"
        record = await served.last_run(session_id)
        assert (record["status"], record["failure"]["kind"]) == ("cancelled", "cancelled")


async def test_a_run_the_gateway_loses_is_interrupted(
    serve: Callable[..., Any], model_server: ModelServer
) -> None:
    async with serve() as served:
        running = asyncio.ensure_future(served.run("rest", {"prompt": "[[scenario:stall]]"}))
        session_id = await _running_session(served, model_server)
        await served.gw.gateway.runner.interrupt_all("replica declared dead (test)")
        status, body = await running
        assert status == 503, body
        assert body["failure"]["kind"] == "interrupted"
        assert "replica declared dead (test)" in body["failure"]["message"]
        record = await served.last_run(session_id)
        assert (record["status"], record["failure"]["kind"]) == ("interrupted", "interrupted")


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_codex_dying_is_agent_crashed(serve: Callable[..., Any], protocol: str) -> None:
    async with serve(codex_bin=AGENTS_DIR / "crash_agent.py") as served:
        status, body = await served.run(protocol, {"prompt": "x"})
        assert status == 500, body
        assert body["failure"] == {
            "kind": "agent_crashed",
            "message": "fatal: simulated crash",
            "retry_after_ms": None,
        }


async def test_a_completed_run_has_no_failure(serve: Callable[..., Any]) -> None:
    async with serve() as served:
        status, body = await served.run("rest", {"prompt": "hello"})
        assert status == 200 and body["status"] == "completed"
        assert body["failure"] is None  # an unset message field is null (CONTRACT.md)
        record = await served.last_run(body["session_id"])
        assert record["failure"] is None
        answer = await served.gw.stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=body["session_id"])
        )
        assert not answer.session.run_history[-1].HasField("failure")


# -- the stream's end, the webhook, the metrics


async def test_a_failed_stream_ends_with_the_failure_over_both_protocols(
    serve: Callable[..., Any],
) -> None:
    body = {"prompt": "[[scenario:ratelimited]] [[reset:7]] go"}
    async with serve() as served:
        async with served.http.stream("POST", "/completion/stream", json=body) as stream:
            assert stream.status_code == 200
            lines = [json.loads(line) async for line in stream.aiter_lines() if line.strip()]
        error = lines[-1]["error"]
        assert error["http_status"] == 500 and error["code"] == "INTERNAL"
        assert error["failure"]["kind"] == "rate_limited"
        assert error["failure"]["retry_after_ms"] == 7000
        request = runs_pb2.StreamCompletionRequest(
            run=json_format.ParseDict(body, runs_pb2.RunInput())
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in served.gw.stub.StreamCompletion(request):
                pass
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert grpc_error_body(caught.value)["failure"] == error["failure"]


async def test_the_webhook_and_the_metrics_carry_the_kind(
    serve: Callable[..., Any], receiver_for: Callable[..., Receiver]
) -> None:
    hook = receiver_for()
    async with serve(webhook=WebhookConfig(url=hook.url)) as served:
        status, _ = await served.run("rest", {"prompt": "[[scenario:http401]] go"})
        assert status == 500
        status, _ = await served.run("grpc", {"prompt": "hello"})
        assert status == 200
        for _ in range(200):
            if len(hook.accepted()) == 2:
                break
            await asyncio.sleep(0.05)
        payloads = sorted((json.loads(r.body) for r in hook.accepted()), key=lambda p: p["status"])
        assert [p["status"] for p in payloads] == ["completed", "error"]
        assert payloads[0]["failure"] is None
        assert payloads[1]["failure"]["kind"] == "auth"
        assert "401 Unauthorized" in payloads[1]["failure"]["message"]
        metrics = (await served.http.get("/metrics")).text
        assert 'codex_gateway_run_failures_total{kind="auth"} 1.0' in metrics


async def _running_session(served: Served, model: ModelServer) -> str:
    """The one session once its run is under way: codex is waiting on the model."""
    await asyncio.to_thread(model.wait_for_requests, 1, 30)
    listed = (await served.http.get("/sessions")).json()
    assert [s["status"] for s in listed] == ["running"], listed
    return str(listed[0]["session_id"])
