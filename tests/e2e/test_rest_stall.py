"""The stall watchdog over REST: a stalled run is a 408 with reason RUN_STALLED (whole or streamed),
GET /status counts it and GET /metrics has its counter; the real codex against the scripted model
server, through the bridge."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from gateway.config import Config
from tests.gateway.test_metrics import parse, value
from tests.harness import running_bridge, running_gateway
from tests.processes import running_below

STALL_MS = 1500
STALLED = f"Codex was silent for {STALL_MS}ms: the run was stopped as stalled"
RUN_TIMEOUT_MS = 120_000  # far past the stall: a RUN_STALLED run was not stopped by its deadline


@pytest.fixture
async def client(config_for: Callable[..., Config]) -> AsyncIterator[httpx.AsyncClient]:
    config = config_for(stall_timeout_ms=STALL_MS)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target, max_body_bytes=config.max_body_bytes) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http,
    ):
        yield http


def without_request_id(body: dict[str, object]) -> dict[str, object]:
    assert body.pop("request_id")
    return body


async def test_a_stalled_completion_is_408_run_stalled_and_counted(
    client: httpx.AsyncClient,
) -> None:
    before = parse((await client.get("/metrics")).text)
    response = await client.post(
        "/completion", json={"prompt": "[[scenario:stall]] x", "timeout_ms": RUN_TIMEOUT_MS}
    )
    assert response.status_code == 408, response.text
    assert without_request_id(response.json()) == {
        "error": STALLED,
        "code": "DEADLINE_EXCEEDED",
        "reason": "RUN_STALLED",
        "stall_timeout_ms": STALL_MS,
        "failure": {"kind": "stalled", "message": STALLED, "retry_after_ms": None},
    }
    assert running_below() == {}

    status = (await client.get("/status")).json()
    assert status["runs_stalled"] == 1
    assert status["concurrency"]["active"] == 0
    after = parse((await client.get("/metrics")).text)
    name = "codex_gateway_runs_stalled_total"
    assert value(after, name) - value(before, name) == 1

    (session,) = (await client.get("/sessions")).json()
    detail = (await client.get(f"/sessions/{session['session_id']}")).json()
    assert detail["status"] == "timeout"
    assert detail["run_history"][-1]["error"] == STALLED


async def test_a_stalled_stream_ends_with_a_408_error_line(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/completion/stream",
        json={"prompt": "[[scenario:stall]] x", "timeout_ms": RUN_TIMEOUT_MS},
    )
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    error = lines[-1]["error"]
    assert (error["reason"], error["http_status"], error["error"]) == (
        "RUN_STALLED",
        408,
        STALLED,
    )
    assert running_below() == {}


async def test_without_a_stall_status_shows_zero(client: httpx.AsyncClient) -> None:
    response = await client.post("/completion", json={"prompt": "[[reply:fine]] x"})
    assert response.status_code == 200 and response.json()["output"] == "fine"
    assert (await client.get("/status")).json()["runs_stalled"] == 0
