"""POST /completion through the REST bridge to the real gateway running the real codex CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from codex_gateway.v1 import runs_pb2
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_bridge, running_gateway
from tests.processes import running_below

# Bodies are refused unless declared JSON (bridge/guard.py).
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def serve(config_for: Callable[..., Config]) -> Callable[..., Any]:
    """`async with serve(**config fields) as (gateway, client)`: a gateway and a REST client."""
    import contextlib

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[tuple[RunningGateway, httpx.AsyncClient]]:
        config = config_for(**overrides)
        async with (
            running_gateway(config) as gw,
            running_bridge(gw.target, max_body_bytes=config.max_body_bytes) as url,
            httpx.AsyncClient(base_url=url, timeout=60) as client,
        ):
            yield gw, client

    return start


async def test_plain_answer_has_the_documented_keys(rest: httpx.AsyncClient) -> None:
    response = await rest.post(
        "/completion",
        json={"messages": [{"role": "user", "content": "hello"}], "metadata": {"source": "api"}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    for key in (
        "session_id",
        "gateway_session_id",
        "codex_session_id",
        "model",
        "output",
        "messages",
        "usage",
        "logs_path",
        "metadata",
        "run_id",
        "status",
        "content",
        "tool_calls",
        "events",
        "session_url",
    ):
        assert key in body, key
    assert body["output"] == "Hello from the fake model." and body["status"] == "completed"
    assert body["usage"] == {
        "input_tokens": 100,
        "output_tokens": 10,
        "cached_input_tokens": 0,
        "total_tokens": 110,
        "reasoning_output_tokens": 0,
    }
    assert body["metadata"] == {"source": "api"}
    assert body["model"] is None  # no model asked for and no default: null, as documented
    assert body["messages"][-1] == {"role": "assistant", "content": "Hello from the fake model."}
    assert body["session_url"] == f"/sessions/{body['session_id']}"  # not the thread (issue 12)


async def test_prompt_field_tool_round_trip_and_resume(
    rest: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    tool = (
        await rest.post(
            "/completion",
            json={"prompt": "[[scenario:tool]] [[cmd:echo via-rest > r.txt; cat r.txt]]"},
        )
    ).json()
    assert "via-rest" in tool["output"]
    assert (gateway.gateway.config.default_workspace / "r.txt").read_text() == "via-rest\n"
    again = await rest.post(
        "/completion",
        json={"prompt": "[[scenario:echo_history]] recap", "session_id": tool["codex_session_id"]},
    )
    assert again.status_code == 200
    assert again.json()["session_id"] == tool["session_id"]
    assert "via-rest" in again.json()["output"]


async def test_model_failure_is_500_with_codex_message(rest: httpx.AsyncClient) -> None:
    response = await rest.post("/completion", json={"prompt": "[[scenario:http500]] x"})
    assert response.status_code == 500
    body = response.json()
    assert body["error"] and body["code"] == "INTERNAL" and body["reason"] == "AGENT_FAILED"


async def test_stalled_model_is_408_at_the_deadline(rest: httpx.AsyncClient) -> None:
    response = await rest.post(
        "/completion", json={"prompt": "[[scenario:stall]] x", "timeout_ms": 1500}
    )
    assert response.status_code == 408
    assert response.json()["error"] == "Codex run timed out after 1500ms"
    assert running_below() == {}


async def test_rest_and_grpc_give_the_same_result(serve: Callable[..., Any]) -> None:
    async with serve(codex_bin=AGENTS_DIR / "echo_agent.py") as (gw, client):
        rest = (
            await client.post("/completion", json={"prompt": "same", "system_prompt": "sp"})
        ).json()
        grpc_result = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="same", system_prompt="sp"))
            )
        ).result
    assert json.loads(rest["output"])["prompt"] == json.loads(grpc_result.output)["prompt"]
    assert json.loads(rest["output"])["argv"][:-3] == json.loads(grpc_result.output)["argv"][:-3]
    assert rest["usage"]["input_tokens"] == grpc_result.usage.input_tokens
    assert rest["status"] == grpc_result.status


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param(b"{not json", "Invalid JSON payload", id="bad-json"),
        pytest.param(b"[1,2]", "", id="array-body"),
        pytest.param(b"{}", "messages or prompt is required", id="empty-object"),
        pytest.param(b"", "messages or prompt is required", id="empty-body"),
        pytest.param(b'{"messages": []}', "messages or prompt is required", id="no-messages"),
        pytest.param(b'{"messages": [null]}', "messages", id="null-message"),
        pytest.param(
            b'{"messages": [{"role": "user"}, {"role": "user", "content": " "}]}',
            "messages hold no text",
            id="messages-without-text",
        ),
        pytest.param(
            b'{"messages": [{"role": "user", "content": 5}]}', "content", id="content-number"
        ),
        pytest.param(b'{"prompt": "x", "timeout_ms": "soon"}', "timeout_ms", id="timeout-string"),
        pytest.param(b'{"prompt": "x", "timeout_ms": 1.5}', "timeout_ms", id="timeout-fraction"),
        pytest.param(
            b'{"prompt": "x", "env": {"PATH": "/x", "LD_PRELOAD": "y"}}',
            "LD_PRELOAD, PATH",
            id="env-blocked",
        ),
        pytest.param(b'{"prompt": "x", "env": {"A": 1}}', "env", id="env-number"),
        pytest.param(
            b'{"prompt": "x", "workspace": "../../etc"}', "outside the allowed roots", id="escape"
        ),
        pytest.param(b'{"prompt": "x", "metadata": [1]}', "metadata", id="metadata-array"),
        pytest.param(b'{"prompt": "x", "session_id": 7}', "session_id", id="session-id-number"),
    ],
)
async def test_client_mistakes_are_400_and_leave_no_slot_taken(
    serve: Callable[..., Any], body: bytes, needle: str
) -> None:
    async with serve(codex_bin=AGENTS_DIR / "echo_agent.py") as (_, client):
        response = await client.post(
            "/completion", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert needle in response.json()["error"]
        status = (await client.get("/status")).json()
        assert status["concurrency"]["active"] == 0


async def test_body_over_the_limit_is_413(serve: Callable[..., Any]) -> None:
    async with serve(codex_bin=AGENTS_DIR / "echo_agent.py", max_body_bytes=1000) as (_, client):
        response = await client.post("/completion", json={"prompt": "x" * 2000})
        assert response.status_code == 413
        assert "1000" in response.json()["error"]

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"prompt": "'
            for _ in range(100):
                yield b"y" * 100
            yield b'"}'

        chunked = await client.post("/completion", content=chunks(), headers=JSON)
        assert chunked.status_code == 413
        ok = await client.post("/completion", json={"prompt": "small"})
        assert ok.status_code == 200


async def test_concurrency_limit_is_429_with_the_documented_body_and_retry_after(
    serve: Callable[..., Any],
) -> None:
    async with serve(codex_bin=AGENTS_DIR / "slow_agent.py", max_concurrent=2) as (_, client):
        slow = {"prompt": "x", "env": {"FAKE_AGENT_SECONDS": "1"}}
        running = [asyncio.ensure_future(client.post("/completion", json=slow)) for _ in range(2)]
        await asyncio.sleep(0.4)
        response = await client.post("/completion", json={"prompt": "x"})
        assert response.status_code == 429
        body = response.json()
        assert {k: body[k] for k in ("error", "retry_after", "active", "max")} == {
            "error": "Too many concurrent requests",
            "retry_after": 5,
            "active": 2,
            "max": 2,
        }
        assert response.headers["retry-after"] == "5"
        assert all(r.status_code == 200 for r in await asyncio.gather(*running))


async def test_a_storm_gets_only_200s_and_429s_and_every_slot_back(
    serve: Callable[..., Any],
) -> None:
    async with serve(codex_bin=AGENTS_DIR / "echo_agent.py", max_concurrent=3) as (_, client):
        bodies = [{"prompt": "x"}, {"messages": [None]}, {"prompt": "x", "env": {"PATH": "x"}}]
        responses = await asyncio.gather(
            *(client.post("/completion", json=bodies[i % 3]) for i in range(60))
        )
        assert {r.status_code for r in responses} <= {200, 400, 429}
        status = (await client.get("/status")).json()
        assert status["concurrency"] == {"active": 0, "max": 3, "available": 3, "waiting": 0}
        assert running_below() == {}


async def test_api_token_on_rest(serve: Callable[..., Any]) -> None:
    async with serve(codex_bin=AGENTS_DIR / "echo_agent.py", api_token="tok") as (_, client):
        assert (await client.get("/health")).status_code == 200
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "tok"}):
            response = await client.post("/completion", json={"prompt": "x"}, headers=headers)
            assert response.status_code == 401
            assert "API token" in response.json()["error"]
        assert (await client.get("/status")).status_code == 401
        ok = await client.post(
            "/completion", json={"prompt": "x"}, headers={"Authorization": "Bearer tok"}
        )
        assert ok.status_code == 200


async def test_stream_as_ndjson_and_sse(serve: Callable[..., Any]) -> None:
    async with serve(codex_bin=AGENTS_DIR / "echo_agent.py") as (_, client):
        async with client.stream("POST", "/completion/stream", json={"prompt": "x"}) as response:
            assert response.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) async for line in response.aiter_lines() if line]
        kinds = [next(iter(line["result"])) for line in lines]
        assert kinds[0] == "started" and kinds[-1] == "completed"
        assert "event" in kinds
        headers = {"accept": "text/event-stream"}
        async with client.stream(
            "POST", "/completion/stream", json={"prompt": "x"}, headers=headers
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            text = "".join([chunk async for chunk in response.aiter_text()])
        assert text.count("event: result") == len(lines)
        missing = await client.post(
            "/completion/stream", json={"prompt": "x", "session_id": "nope"}
        )
        assert missing.status_code == 404
