"""Server-streaming RPCs over HTTP: NDJSON and SSE, errors before and during the stream,
flushing, and cancelling the call when the client leaves. The upstream is a ScriptedUpstream."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from bridge.streaming import FIRST_MESSAGE_WAIT_S, NDJSON, SSE, StreamFormat, choose_format
from tests.bridge.scripted_upstream import ScriptedUpstream
from tests.requestids import error_json, without_request_id

# Bodies are refused unless declared JSON (bridge/guard.py).
JSON = {"Content-Type": "application/json"}

SSE_ACCEPT = {"Accept": "text/event-stream"}


def sse_events(text: str) -> list[tuple[str, object]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_ndjson_stream(http: httpx.AsyncClient) -> None:
    response = await http.post("/completion/stream", json={"prompt": "hi"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [next(iter(line["result"])) for line in lines] == ["started", "event", "completed"]
    assert lines[0]["result"]["started"] == {
        "session_id": "session-1",
        "run_id": "run-1",
        "model": None,
        "logs_path": "",
    }
    assert lines[1]["result"]["event"] == {"type": "thread.started", "thread_id": "t-1", "n": 1}
    completed = lines[2]["result"]["completed"]
    assert completed["output"] == "hi"
    assert completed["usage"]["total_tokens"] == 2**40
    assert completed["codex_session_id"] is None


async def test_sse_stream(http: httpx.AsyncClient) -> None:
    response = await http.post("/completion/stream", json={"prompt": "hi"}, headers=SSE_ACCEPT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["result", "result", "result"]
    last = events[2][1]
    assert isinstance(last, dict)
    assert last["completed"]["output"] == "hi"


@pytest.mark.parametrize("accept", [{}, SSE_ACCEPT], ids=["ndjson", "sse"])
@pytest.mark.parametrize(
    ("prompt", "status", "code"),
    [
        pytest.param("busy", 429, "RESOURCE_EXHAUSTED", id="busy"),
        pytest.param("missing", 404, "NOT_FOUND", id="missing"),
    ],
)
async def test_an_error_before_the_first_message_has_its_own_status(
    http: httpx.AsyncClient, accept: dict[str, str], prompt: str, status: int, code: str
) -> None:
    response = await http.post("/completion/stream", json={"prompt": prompt}, headers=accept)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == code
    if status == 429:
        assert response.headers["retry-after"] == "5"
        assert response.json()["active"] == 2


async def test_an_error_midway_ends_ndjson_with_an_error_line(http: httpx.AsyncClient) -> None:
    response = await http.post("/completion/stream", json={"prompt": "fail-midway"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [next(iter(line)) for line in lines] == ["result", "result", "error"]
    lines[-1]["error"] = without_request_id(lines[-1]["error"], response.headers["x-request-id"])
    assert lines[-1] == {
        "error": {
            "error": "Run timed out",
            "timeout_ms": 1000,
            "reason": "RUN_TIMED_OUT",
            "code": "DEADLINE_EXCEEDED",
            "http_status": 408,
        }
    }


async def test_an_error_midway_ends_sse_with_an_error_event(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/completion/stream", json={"prompt": "fail-midway"}, headers=SSE_ACCEPT
    )
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["result", "result", "error"]
    assert without_request_id(events[-1][1], response.headers["x-request-id"]) == {
        "error": "Run timed out",
        "timeout_ms": 1000,
        "reason": "RUN_TIMED_OUT",
        "code": "DEADLINE_EXCEEDED",
        "http_status": 408,
    }


async def test_a_tail_error_before_the_first_message(http: httpx.AsyncClient) -> None:
    response = await http.get("/sessions/NOT_FOUND/tail")
    assert response.status_code == 404
    assert error_json(response) == {"error": "scripted NOT_FOUND", "code": "NOT_FOUND"}


async def test_bad_input_to_a_stream_is_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/sessions/s1/tail?follow=perhaps")
    assert response.status_code == 400
    assert "'follow'" in response.json()["error"]
    response = await http.post("/completion/stream", content=b"{", headers=JSON)
    assert error_json(response) == {"error": "Invalid JSON payload", "code": "INVALID_ARGUMENT"}


async def test_each_message_is_flushed_as_it_arrives(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    async with http.stream("GET", "/sessions/s1/tail", params={"follow": "true"}) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        first = json.loads(await asyncio.wait_for(anext(lines), 5))
        assert first == {
            "result": {"line": {"stream": "stdout", "text": "first", "run_id": None}, "seq": None}
        }
        # The upstream sends the second message only now: the first was not held back.
        upstream.tail_release.set()
        second = json.loads(await asyncio.wait_for(anext(lines), 5))
        assert second["result"]["notice"]["message"] == "second"
    await asyncio.wait_for(upstream.tail_cancelled.wait(), 5)


async def test_a_client_disconnect_cancels_the_upstream_call(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    async with http.stream("POST", "/completion/stream", json={"prompt": "hang"}) as response:
        lines = response.aiter_lines()
        await asyncio.wait_for(anext(lines), 5)
        await asyncio.wait_for(anext(lines), 5)
        assert not upstream.stream_cancelled.is_set()
    await asyncio.wait_for(upstream.stream_cancelled.wait(), 5)


async def test_a_stream_without_messages_still_gets_its_headers(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    started = time.monotonic()
    async with http.stream("GET", "/sessions/idle/tail", headers=SSE_ACCEPT) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        waited = time.monotonic() - started
    assert FIRST_MESSAGE_WAIT_S - 0.5 < waited < FIRST_MESSAGE_WAIT_S + 3
    await asyncio.wait_for(upstream.tail_cancelled.wait(), 5)


async def test_head_on_a_stream_sends_headers_and_cancels(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    response = await http.head("/sessions/s1/tail", params={"follow": "true"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.content == b""
    await asyncio.wait_for(upstream.tail_cancelled.wait(), 5)


async def test_a_tail_is_retried_on_unavailable(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    upstream.unavailable_before_success = 2
    response = await http.get("/sessions/s1/tail")
    assert response.status_code == 200
    assert upstream.calls["TailSession"] == 3
    assert json.loads(response.text.splitlines()[0])["result"]["line"]["text"] == "first"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        pytest.param(None, NDJSON, id="none"),
        pytest.param(b"application/json", NDJSON, id="json"),
        pytest.param(b"text/event-stream", SSE, id="sse"),
        pytest.param(b"Text/Event-Stream", SSE, id="case"),
        pytest.param(b"application/json, text/event-stream;q=0.5", SSE, id="in-a-list"),
        pytest.param(b"text/event-stream;q=0", NDJSON, id="q-zero"),
        pytest.param(b"text/event-stream;q=abc", SSE, id="bad-q"),
    ],
)
def test_choose_stream_format(accept: bytes | None, expected: StreamFormat) -> None:
    headers = [] if accept is None else [(b"accept", accept)]
    assert choose_format(headers) == expected


def test_stream_framing() -> None:
    assert NDJSON.result({"a": 1}) == b'{"result":{"a":1}}\n'
    assert NDJSON.error({"error": "x"}) == b'{"error":{"error":"x"}}\n'
    assert SSE.result({"a": "b\nc"}) == b'event: result\ndata: {"a":"b\\nc"}\n\n'
    assert SSE.error({"error": "x"}) == b'event: error\ndata: {"error":"x"}\n\n'


async def test_an_unprintable_message_midway_ends_with_an_internal_error_line(
    http: httpx.AsyncClient, upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.poison = True
    response = await http.get("/sessions/s1/tail")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert response.status_code == 200
    lines[-1]["error"] = without_request_id(lines[-1]["error"], response.headers["x-request-id"])
    assert lines[-1] == {
        "error": {"error": "Internal Server Error", "code": "INTERNAL", "http_status": 500},
    }
    assert lines[0]["result"]["line"]["text"] == "first"
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)
