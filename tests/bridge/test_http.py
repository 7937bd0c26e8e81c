"""The bridge over real sockets: routes, transcoding, limits, errors, metadata and retries.

The upstream is a ScriptedUpstream (see its module) so that every error row and fault can be
reached on demand; the bridge is the real one, served by uvicorn on port 0.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from bridge.app import serve_bridge
from bridge.bindings import bindings_from_service, service_descriptor
from tests.bridge.conftest import MAX_BODY_BYTES
from tests.bridge.rawhttp import body_of, exchange
from tests.bridge.scripted_upstream import ScriptedUpstream
from tests.bridge.test_errors import ROWS
from tests.harness import running_bridge
from tests.requestids import error_json

# Bodies are refused unless declared JSON (bridge/guard.py).
JSON = {"Content-Type": "application/json"}


async def test_every_binding_is_a_live_route(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    for binding in bindings_from_service(service_descriptor()):
        path = binding.template.text
        for variable in binding.template.variables:
            path = path.replace("{" + variable + "}", "x")
        body = b"{}" if binding.body else None
        response = await http.request(binding.http_method, path, content=body, headers=JSON)
        assert response.status_code == 200, (binding.method.name, response.text)
        assert binding.method.name in upstream.calls


@pytest.mark.parametrize(
    ("code", "status"),
    [pytest.param(c, s, id=c.name) for c, s in ROWS if c is not grpc.StatusCode.OK],
)
async def test_every_status_code_row_end_to_end(
    http: httpx.AsyncClient, code: grpc.StatusCode, status: int
) -> None:
    response = await http.post(f"/sessions/{code.name}/cancel", json={})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    reason = {"reason": "RUN_CANCELLED"} if code is grpc.StatusCode.CANCELLED else {}
    assert error_json(response) == {"error": f"scripted {code.name}", **reason, "code": code.name}


async def test_concurrency_limit_is_the_documented_429(http: httpx.AsyncClient) -> None:
    response = await http.post("/completion", json={"prompt": "busy"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert error_json(response) == {
        "error": "Too many concurrent requests",
        "retry_after": 5,
        "active": 2,
        "max": 2,
        "reason": "CONCURRENCY_LIMIT",
        "code": "RESOURCE_EXHAUSTED",
    }


async def test_unary_response_json(http: httpx.AsyncClient, upstream: ScriptedUpstream) -> None:
    response = await http.post(
        "/completion",
        json={"prompt": "hi", "metadata": {"source": "api", "n": 1}, "unknown_key": True},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert b": " not in response.content  # compact
    result = response.json()
    assert result["output"] == "hi"
    assert result["codex_session_id"] is None
    assert result["metadata"] == {"source": "api", "n": 1}
    assert result["usage"]["total_tokens"] == 2**40
    assert result["duration_ms"] == 1234
    assert upstream.requests["Complete"].run.prompt == "hi"


async def test_response_body_field_is_the_http_body(http: httpx.AsyncClient) -> None:
    response = await http.get("/sessions", params={"limit": "1"})
    assert response.status_code == 200
    assert response.json() == [
        {
            "session_id": "session-0",
            "dir": "",
            "modified": "",
            "metadata": None,
            "codex_session_id": None,
            "status": "",
            "created_at": "",
            "updated_at": "",
            "last_activity_at": "",
            "model": None,
            "objective": "",
            "secure": False,
            "runs": 0,
            "execution_timeout_ms": 120000,
            "error": None,
            "forked_from": None,
            "tenant": "",
        }
    ]


async def test_query_parameters_fill_the_request(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    response = await http.get(
        "/sessions/s%201", params={"tail_lines": "12", "include_stderr": "on", "other": "x"}
    )
    assert response.status_code == 200
    assert response.json()["stdout"]["tail_lines"] == 12
    request = upstream.requests["GetSession"]
    assert request.session_id == "s 1"
    assert request.include_stderr is True


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        pytest.param("tail_lines=abc", "tail_lines", id="int"),
        pytest.param("include_events=maybe", "include_events", id="bool"),
        pytest.param("tail_lines=99999999999", "tail_lines", id="overflow"),
        pytest.param("tail_lines=%zz", "tail_lines", id="escape"),
    ],
)
async def test_a_bad_query_value_is_400_naming_it(
    http: httpx.AsyncClient, upstream: ScriptedUpstream, query: str, parameter: str
) -> None:
    response = await http.get(f"/sessions/s1?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert f"'{parameter}'" in response.json()["error"]
    assert "GetSession" not in upstream.calls


async def test_invalid_json_is_400(http: httpx.AsyncClient, upstream: ScriptedUpstream) -> None:
    response = await http.post("/completion", content=b'{"prompt": ', headers=JSON)
    assert response.status_code == 400
    assert error_json(response) == {"error": "Invalid JSON payload", "code": "INVALID_ARGUMENT"}
    assert "Complete" not in upstream.calls


async def test_json_that_does_not_fit_is_400_naming_the_field(http: httpx.AsyncClient) -> None:
    response = await http.post("/completion", json={"messages": [None]})
    assert response.status_code == 400
    assert "messages" in response.json()["error"]


async def test_an_array_body_for_a_value_field(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    response = await http.post("/triggers?trigger_file=t.json", json=[{"id": "a"}, {"id": "b"}])
    assert response.status_code == 200
    assert response.json()["trigger_file"] == "t.json"
    assert json.loads(response.json()["triggers"][0]["title"]) == [{"id": "a"}, {"id": "b"}]
    assert response.json()["trigger"] is None


async def test_an_empty_body_is_an_empty_object(http: httpx.AsyncClient) -> None:
    response = await http.post("/completion")
    assert response.status_code == 200


async def test_unknown_route_is_404(http: httpx.AsyncClient) -> None:
    for path in ("/nope", "/sessions/a/b/c", "/health//", "/HEALTH"):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert error_json(response) == {"error": "Not Found"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        pytest.param("POST", "/health", "GET, HEAD", id="post-health"),
        pytest.param("PUT", "/triggers/t1", "DELETE, GET, HEAD, PATCH", id="put-trigger"),
        pytest.param("GET", "/completion", "POST", id="get-completion"),
        pytest.param("OPTIONS", "/sessions", "GET, HEAD", id="options"),
        pytest.param("DELETE", "/openapi.json", "GET, HEAD", id="openapi"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    http: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await http.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert error_json(response) == {"error": "Method Not Allowed"}


async def test_head_works_wherever_get_does(http: httpx.AsyncClient) -> None:
    get = await http.get("/health")
    head = await http.head("/health")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert (await http.head("/sessions/NOT_FOUND")).status_code == 404


async def test_one_trailing_slash_is_tolerated(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health/")).json() == {"status": "ok"}
    assert (await http.get("/sessions/abc/")).json()["session_id"] == "abc"


async def test_openapi_document_is_served(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")
    assert "/sessions/{session_id}/tail" in response.json()["paths"]


# --- body limit ----------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    body = json.dumps({"prompt": "x" * MAX_BODY_BYTES}).encode()
    response = await http.post("/completion", content=body, headers=JSON)
    assert response.status_code == 413
    assert error_json(response) == {
        "error": f"Request body exceeds {MAX_BODY_BYTES} bytes",
        "code": "PAYLOAD_TOO_LARGE",
    }
    assert "Complete" not in upstream.calls


async def test_a_body_at_the_limit_is_read(http: httpx.AsyncClient) -> None:
    prefix, suffix = b'{"prompt": "', b'"}'
    body = prefix + b"x" * (MAX_BODY_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(body) == MAX_BODY_BYTES
    assert (await http.post("/completion", content=body, headers=JSON)).status_code == 200


async def test_a_chunked_body_is_counted_and_cut_off(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(4):
            yield b"x" * 1024
        yield b'"}'

    response = await http.post("/completion", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert "Complete" not in upstream.calls


async def test_a_declared_length_over_the_limit_is_refused_without_reading(
    scripted_bridge_url: str,
) -> None:
    # The body is never sent: the answer must come from the header alone.
    request = (
        b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\nConnection: close\r\n\r\n"
    )
    status, response = await exchange(scripted_bridge_url, request)
    assert status == 413
    assert json.loads(body_of(response))["code"] == "PAYLOAD_TOO_LARGE"


# --- hostile requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        pytest.param(b"GET /health HTTP/1.1\r\nHost: a b\r\n", 200, id="host-with-space"),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: [\r\n", 200, id="host-bracket"),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: a:b:c:99999\r\n", 200, id="host-ports"),
        pytest.param(b"GET /health HTTP/1.1\r\n", 200, id="no-host"),
        pytest.param(b"GET /sessions/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n", 400, id="bad-escape"),
        pytest.param(b"GET /sessions/% HTTP/1.1\r\nHost: 127.0.0.1\r\n", 400, id="lone-percent"),
        pytest.param(b"GET /sessions/%ff%fe HTTP/1.1\r\nHost: 127.0.0.1\r\n", 400, id="not-utf-8"),
        pytest.param(b"GET /sessions/a%00b HTTP/1.1\r\nHost: 127.0.0.1\r\n", 200, id="encoded-nul"),
        pytest.param(b"GET /%00 HTTP/1.1\r\nHost: 127.0.0.1\r\n", 404, id="nul-route"),
        pytest.param(b"GET //sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n", 404, id="double-slash"),
        pytest.param(
            b"GET /" + b"a" * 60_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n", 431, id="long"
        ),
        pytest.param(
            b"GET /sessions?limit=%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n", 400, id="query-esc"
        ),
        pytest.param(
            b"GET http://x/health HTTP/1.1\r\nHost: 127.0.0.1\r\n", 200, id="absolute-form"
        ),
        pytest.param(b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n", 404, id="asterisk"),
        pytest.param(
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\r\n",
            400,
            id="non-ascii-credential",
        ),
    ],
)
async def test_hostile_requests_never_crash_or_500(
    scripted_bridge_url: str, http: httpx.AsyncClient, request_bytes: bytes, expected: int
) -> None:
    status, response = await exchange(
        scripted_bridge_url, request_bytes + b"Connection: close\r\n\r\n"
    )
    assert status == expected, response[:300]
    assert (await http.get("/health")).status_code == 200  # still serving


# --- metadata ------------------------------------------------------------------------------------


async def test_credentials_and_request_id_are_forwarded_as_metadata(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    response = await http.get(
        "/health?secure_token=from-query",
        headers={
            "Authorization": "Bearer api-token",
            "X-Codex-Secure-Token": "codex-token",
            "X-Secure-Token": "secure-token",
            "X-Request-Id": "req-1",
            "Cookie": "not=forwarded",
        },
    )
    assert response.status_code == 200
    forwarded = {k: v for k, v in upstream.metadata["Health"] if k.startswith(("x-", "auth"))}
    assert forwarded == {
        "authorization": "Bearer api-token",
        "x-codex-secure-token": "codex-token",
        "x-secure-token": "secure-token",
        "x-request-id": "req-1",
        "x-secure-token-query": "from-query",
    }
    assert "cookie" not in dict(upstream.metadata["Health"])


# --- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "rpc"),
    [
        pytest.param("GET", "/sessions", "ListSessions", id="get"),
        pytest.param("DELETE", "/triggers/t1", "DeleteTrigger", id="delete"),
    ],
)
async def test_unavailable_is_retried_for_idempotent_calls(
    http: httpx.AsyncClient, upstream: ScriptedUpstream, method: str, path: str, rpc: str
) -> None:
    upstream.unavailable_before_success = 2
    response = await http.request(method, path)
    assert response.status_code == 200
    assert upstream.calls[rpc] == 3


async def test_retries_are_bounded(http: httpx.AsyncClient, upstream: ScriptedUpstream) -> None:
    upstream.unavailable_before_success = 100
    started = time.monotonic()
    response = await http.get("/sessions")
    assert response.status_code == 503
    assert response.json()["code"] == "UNAVAILABLE"
    assert upstream.calls["ListSessions"] == 4
    assert time.monotonic() - started < 3


async def test_unavailable_is_not_retried_for_post(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    response = await http.post("/completion", json={"prompt": "unavailable"})
    assert response.status_code == 503
    assert upstream.calls["Complete"] == 1


async def test_an_unreachable_upstream_is_503() -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{reserved.getsockname()[1]}"  # bound, never listening
        async with (
            running_bridge(target) as url,
            httpx.AsyncClient(base_url=url, timeout=20, trust_env=False) as client,
        ):
            started = time.monotonic()
            response = await client.get("/health")
            assert response.status_code == 503
            assert response.json()["code"] == "UNAVAILABLE"
            assert time.monotonic() - started < 5
            assert (await client.post("/completion", json={})).status_code == 503


async def test_concurrent_requests_share_the_channel(http: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(*(http.get("/health") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}


async def test_a_response_that_cannot_be_json_is_a_logged_500(
    http: httpx.AsyncClient, upstream: ScriptedUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # Only a misbehaving upstream reaches this: a Struct number that JSON cannot carry.
    upstream.poison = True
    response = await http.get("/status")
    assert response.status_code == 500
    assert error_json(response) == {"error": "Internal Server Error"}
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)
    assert (await http.get("/health")).status_code == 200


async def test_serve_bridge_on_a_port_in_use_raises() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            await serve_bridge(
                "127.0.0.1:1",
                "127.0.0.1",
                taken.getsockname()[1],
                max_body_bytes=10,
                shutdown=asyncio.Event(),
            )
