"""Retries by failure kind (CODEX_GATEWAY_MAX_RETRIES), with the real codex CLI: only the kinds
another attempt may cure are retried; a rate or usage limit is retried no sooner than the time
the provider named and never past the run's budget."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format

from codex_gateway.v1 import runs_pb2
from gateway.config import Config
from tests.fakes.model_server import ModelServer
from tests.harness import RunningGateway, running_bridge, running_gateway
from tests.statusdetails import grpc_error_body

pytestmark = pytest.mark.timeout(120)


@dataclass
class Retrying:
    gw: RunningGateway
    http: httpx.AsyncClient
    model: ModelServer

    async def run(
        self, protocol: str, prompt: str, **fields: Any
    ) -> tuple[int, dict[str, Any], int]:
        """A completion over either protocol: its HTTP status, its answer (the result, or the
        error body) and the attempts its run record counts."""
        body = {"prompt": prompt, **fields}
        if protocol == "rest":
            response = await self.http.post("/completion", json=body)
            status, answer = response.status_code, response.json()
        else:
            request = runs_pb2.CompleteRequest(run=json_format.ParseDict(body, runs_pb2.RunInput()))
            try:
                result = (await self.gw.stub.Complete(request)).result
                status = 200
                answer = json_format.MessageToDict(result, preserving_proto_field_name=True)
            except grpc.aio.AioRpcError as exc:
                status = 500 if exc.code() == grpc.StatusCode.INTERNAL else 0
                answer = grpc_error_body(exc)
        listed = (await self.http.get("/sessions")).json()
        detail = (await self.http.get(f"/sessions/{listed[0]['session_id']}")).json()
        return status, answer, int(detail["run_history"][-1]["attempts"])


@pytest.fixture
def retrying(config_for: Callable[..., Config], model_server: ModelServer) -> Callable[..., Any]:
    import contextlib

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Retrying]:
        config = config_for(**{"max_retries": 2, "retry_delay_ms": 10, **overrides})
        async with (
            running_gateway(config) as gw,
            running_bridge(gw.target) as url,
            httpx.AsyncClient(base_url=url, timeout=90, trust_env=False) as http,
        ):
            yield Retrying(gw, http, model_server)

    return start


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_rate_limit_is_retried_no_sooner_than_the_provider_said(
    retrying: Callable[..., Any], protocol: str
) -> None:
    async with retrying() as served:
        status, answer, attempts = await served.run(
            protocol, "[[scenario:ratelimited]] [[reset:2]] [[fails:1]] go"
        )
        assert status == 200, answer
        assert answer["status"] == "completed" and attempts == 2
        first, second = served.model.requests
        assert (first.scenario, second.scenario) == ("ratelimited", "message")
        # The backoff alone would have tried again after 10 ms.
        assert second.received_at - first.received_at >= 2.0


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize(
    ("prompt", "kind", "least_ms"),
    [
        pytest.param("[[scenario:ratelimited]] [[reset:30]]", "rate_limited", 30_000,
                     id="rate_limited"),
        pytest.param("[[scenario:http429usage]] [[reset:900]]", "usage_limit", 840_000,
                     id="usage_limit"),
    ],
)  # fmt: skip
async def test_a_reset_past_the_runs_budget_is_not_waited_for(
    retrying: Callable[..., Any], protocol: str, prompt: str, kind: str, least_ms: int
) -> None:
    async with retrying() as served:
        status, answer, attempts = await served.run(protocol, f"{prompt} go", timeout_ms=8000)
        assert status == 500, answer
        failure = answer["failure"]
        assert failure["kind"] == kind and failure["retry_after_ms"] >= least_ms
        assert attempts == 1 and len(served.model.requests) == 1


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize(
    ("scenario", "kind"),
    [
        pytest.param("http401", "auth", id="auth"),
        pytest.param("http400", "model_not_found", id="model_not_found"),
        pytest.param("context", "context_window_exceeded", id="context_window_exceeded"),
    ],
)
async def test_kinds_another_attempt_cannot_cure_are_not_retried(
    retrying: Callable[..., Any], protocol: str, scenario: str, kind: str
) -> None:
    async with retrying() as served:
        status, answer, attempts = await served.run(protocol, f"[[scenario:{scenario}]] go")
        assert status == 500 and answer["failure"]["kind"] == kind
        assert attempts == 1 and len(served.model.requests) == 1


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param("http500", id="provider_error"),
        pytest.param("truncate", id="dropped_stream"),
        # A usage limit that names no time: the backoff, as for any retried kind.
        pytest.param("http429quota", id="usage_limit_no_reset"),
    ],
)
async def test_retried_kinds_without_a_time_use_the_backoff(
    retrying: Callable[..., Any], protocol: str, scenario: str
) -> None:
    async with retrying() as served:
        status, answer, attempts = await served.run(
            protocol, f"[[scenario:{scenario}]] [[fails:2]] go"
        )
        assert status == 200, answer
        assert attempts == 3 and len(served.model.requests) == 3


async def test_retries_stop_at_max_retries_with_the_last_failure(
    retrying: Callable[..., Any],
) -> None:
    async with retrying(max_retries=1) as served:
        status, answer, attempts = await served.run("rest", "[[scenario:http500]] [[fails:5]] go")
        assert status == 500 and answer["failure"]["kind"] == "provider_error"
        assert attempts == 2 and len(served.model.requests) == 2
