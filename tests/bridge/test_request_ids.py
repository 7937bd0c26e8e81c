"""Request ids over REST: `X-Request-Id` honoured when sane, else a new one (never the bad one
echoed); returned in the response header, in every error body, and passed to the gateway as
`x-request-id` metadata. Streams included."""

from __future__ import annotations

import json

import httpx
import pytest

from bridge.requestid import MAX_REQUEST_ID_CHARS, is_sane
from tests.bridge.rawhttp import body_of, exchange
from tests.bridge.scripted_upstream import ScriptedUpstream

JSON = {"Content-Type": "application/json"}


def _forwarded(upstream: ScriptedUpstream, method: str) -> list[str]:
    return [value for key, value in upstream.metadata[method] if key == "x-request-id"]


def _head(response: bytes) -> dict[bytes, list[bytes]]:
    headers: dict[bytes, list[bytes]] = {}
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers


async def test_a_sane_id_is_echoed_and_passed_to_the_gateway(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    response = await http.get("/health", headers={"X-Request-Id": "client-req_1.2:3/4=+"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-req_1.2:3/4=+"
    assert _forwarded(upstream, "Health") == ["client-req_1.2:3/4=+"]


async def test_a_request_without_one_gets_a_new_id_the_gateway_sees_too(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    first = await http.get("/health")
    second = await http.get("/health")
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    for request_id in ids:
        assert len(request_id) == 32 and int(request_id, 16) >= 0  # uuid4 hex
    assert ids[0] != ids[1]
    assert _forwarded(upstream, "Health") == [ids[1]]


@pytest.mark.parametrize(
    "offered",
    [
        pytest.param(b"x" * (MAX_REQUEST_ID_CHARS + 1), id="too-long"),
        pytest.param(b"v" * 3000, id="much-too-long"),
        pytest.param(b"a\x01b", id="control-character"),
        pytest.param(b"a\x7fb", id="delete"),
        pytest.param(b"a b", id="space"),
        pytest.param(b"a\tb", id="tab"),
        pytest.param(b"caf\xc3\xa9", id="non-ascii"),
        pytest.param(b"<script>alert(1)</script>", id="markup"),
        pytest.param(b'a"b', id="quote"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_a_hostile_id_is_replaced_and_never_echoed(
    scripted_bridge_url: str, upstream: ScriptedUpstream, offered: bytes
) -> None:
    status, response = await exchange(
        scripted_bridge_url,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: %s\r\n"
        b"Connection: close\r\n\r\n" % offered,
    )
    if status == 400:  # the HTTP parser's own refusal of a control character, before the app
        assert offered in (b"a\x01b", b"a\x7fb"), response[:300]
        assert offered not in response
        return
    assert status == 200, response[:300]
    [given] = _head(response)[b"x-request-id"]
    assert given != offered.strip() and is_sane(given.decode())
    assert len(given) == 32
    if offered.strip():
        assert offered.strip() not in response
    assert _forwarded(upstream, "Health") == [given.decode()]


async def test_two_ids_are_ambiguous_and_replaced(
    scripted_bridge_url: str, upstream: ScriptedUpstream
) -> None:
    status, response = await exchange(
        scripted_bridge_url,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: one\r\nX-Request-Id: two\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert status == 200
    [given] = _head(response)[b"x-request-id"]
    assert given not in (b"one", b"two")
    assert _forwarded(upstream, "Health") == [given.decode()]


async def test_a_folded_header_injects_nothing(scripted_bridge_url: str) -> None:
    # An obsolete line folding, the classic way to smuggle a CRLF into a header value.
    status, response = await exchange(
        scripted_bridge_url,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: abc\r\n X-Injected: 1\r\n"
        b"Connection: close\r\n\r\n",
    )
    head = response.split(b"\r\n\r\n", 1)[0]
    assert b"X-Injected" not in head and b"x-injected" not in head.lower()
    assert status in (200, 400)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("GET", "/nope", None, 404, id="no-route"),
        pytest.param("PUT", "/health", None, 405, id="wrong-method"),
        pytest.param("POST", "/completion", b'{"prompt": ', 400, id="invalid-json"),
        pytest.param("POST", "/completion", b'{"prompt": "' + b"x" * 5000 + b'"}', 413, id="big"),
        pytest.param("GET", "/sessions/NOT_FOUND", None, 404, id="upstream-error"),
        pytest.param("POST", "/completion", b'{"prompt": "busy"}', 429, id="busy"),
        pytest.param("GET", "/sessions/NOT_FOUND/tail", None, 404, id="stream-error"),
    ],
)
async def test_every_error_body_names_the_request(
    http: httpx.AsyncClient, method: str, path: str, body: bytes | None, status: int
) -> None:
    response = await http.request(
        method, path, content=body, headers={**JSON, "X-Request-Id": "err-req-7"}
    )
    assert response.status_code == status, response.text[:300]
    assert response.headers["x-request-id"] == "err-req-7"
    assert response.json()["request_id"] == "err-req-7"


async def test_a_refused_host_names_the_request_too(scripted_bridge_url: str) -> None:
    status, response = await exchange(
        scripted_bridge_url,
        b"GET /sessions HTTP/1.1\r\nHost: evil.example\r\nX-Request-Id: rebinding-1\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert status == 421
    assert _head(response)[b"x-request-id"] == [b"rebinding-1"]
    assert json.loads(body_of(response))["request_id"] == "rebinding-1"


@pytest.mark.parametrize("accept", [{}, {"Accept": "text/event-stream"}], ids=["ndjson", "sse"])
async def test_a_stream_carries_the_header(http: httpx.AsyncClient, accept: dict[str, str]) -> None:
    async with http.stream(
        "GET", "/sessions/s1/tail", headers={**accept, "X-Request-Id": "tail-req"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "tail-req"
        await response.aread()
