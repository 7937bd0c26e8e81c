"""The request guard over real sockets: bodies only as declared JSON (415), answers only for the
hosts the bridge serves (421, a foreign browser Origin 403), so no web page can drive a gateway
that has no API token (a form or a text/plain fetch needs no CORS preflight; DNS rebinding makes
a page "same-origin" with 127.0.0.1)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridge.guard import HostPolicy, json_content_type, normalize_host
from tests.bridge.rawhttp import body_of, exchange
from tests.bridge.scripted_upstream import ScriptedUpstream
from tests.harness import running_bridge
from tests.requestids import without_request_id

PROMPT = b'{"prompt": "hi"}'


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        pytest.param("application/json", PROMPT, 200, id="json"),
        pytest.param("application/json; charset=utf-8", PROMPT, 200, id="json-utf8"),
        pytest.param("Application/JSON;Charset=UTF-8", PROMPT, 200, id="json-case"),
        pytest.param("application/merge-patch+json", PROMPT, 200, id="suffix-json"),
        pytest.param("text/plain", PROMPT, 415, id="text-plain"),
        pytest.param("text/plain;charset=UTF-8", PROMPT, 415, id="fetch-text"),
        pytest.param("application/x-www-form-urlencoded", PROMPT, 415, id="form"),
        pytest.param("multipart/form-data; boundary=x", PROMPT, 415, id="multipart"),
        pytest.param("application/json; charset=latin-1", PROMPT, 415, id="other-charset"),
        pytest.param("application/jsonx", PROMPT, 415, id="json-prefix"),
        pytest.param("", PROMPT, 415, id="empty-header"),
        pytest.param(None, PROMPT, 415, id="no-header"),
        pytest.param(None, b"", 200, id="no-header-no-body"),
        pytest.param("text/plain", b"", 415, id="text-plain-no-body"),
    ],
)
async def test_a_body_must_be_declared_json(
    scripted_bridge_url: str,
    upstream: ScriptedUpstream,
    content_type: str | None,
    body: bytes,
    expected: int,
) -> None:
    header = b"" if content_type is None else b"Content-Type: %s\r\n" % content_type.encode()
    request = (
        b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (header, len(body), body)
    )
    status, response = await exchange(scripted_bridge_url, request)
    assert status == expected, response[:400]
    if expected == 415:
        assert without_request_id(httpx.Response(200, content=body_of(response)).json()) == {
            "error": "Request bodies must be JSON: send Content-Type: application/json",
            "code": "INVALID_ARGUMENT",
        }
        assert "Complete" not in upstream.calls


async def test_a_declared_non_json_body_is_refused_before_it_is_read(
    scripted_bridge_url: str,
) -> None:
    # The body is never sent: the answer must come from the headers alone.
    request = (
        b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 1000\r\nConnection: close\r\n\r\n"
    )
    status, _ = await exchange(scripted_bridge_url, request)
    assert status == 415


async def test_every_body_binding_refuses_a_form_and_body_less_ones_ignore_it(
    http: httpx.AsyncClient, upstream: ScriptedUpstream
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for method, path in [
        ("POST", "/completion"),
        ("POST", "/completion/stream"),
        ("POST", "/sessions/s1/prompt"),
        ("POST", "/sessions/s1/nudge"),
        ("POST", "/sessions/s1/cancel"),
        ("POST", "/triggers"),
        ("PATCH", "/triggers/t1"),
    ]:
        response = await http.request(method, path, content=b"prompt=x", headers=form)
        assert response.status_code == 415, (method, path, response.text)
    assert not upstream.calls
    # GET and DELETE take no body: a Content-Type there changes nothing.
    assert (await http.get("/status", headers=form)).status_code == 200
    assert (await http.delete("/triggers/t1", headers=form)).status_code == 200


async def test_an_empty_post_without_content_type_still_works(http: httpx.AsyncClient) -> None:
    # `curl -X POST .../cancel` sends neither a body nor a Content-Type.
    assert (await http.post("/sessions/s1/cancel")).status_code == 200


# --- Host and Origin -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param(b"127.0.0.1", 200, id="bound"),
        pytest.param(b"127.0.0.1:4000", 200, id="bound-any-port"),
        pytest.param(b"localhost", 200, id="localhost"),
        pytest.param(b"LOCALHOST.:80", 200, id="localhost-dot-case"),
        pytest.param(b"[::1]:4000", 200, id="ipv6-loopback"),
        pytest.param(b"evil.example", 421, id="rebinding"),
        pytest.param(b"evil.example:4000", 421, id="rebinding-port"),
        pytest.param(b"localhost.evil.example", 421, id="suffix"),
        pytest.param(b"127.0.0.1.evil.example", 421, id="ip-prefix"),
        pytest.param(b"10.0.0.1", 421, id="other-address"),
        pytest.param(b"", 421, id="empty"),
        pytest.param(b"\xff\xfe", 421, id="binary"),
    ],
)
async def test_only_served_hosts_are_answered(
    scripted_bridge_url: str, upstream: ScriptedUpstream, host: bytes, expected: int
) -> None:
    for path in (b"/status", b"/sessions/s1", b"/openapi.json"):
        status, response = await exchange(
            scripted_bridge_url,
            b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host),
        )
        assert status == expected, (path, response[:300])
        if expected == 421:
            body = httpx.Response(200, content=body_of(response)).json()
            assert body["code"] == "PERMISSION_DENIED"
            assert "CODEX_GATEWAY_ALLOWED_HOSTS" in body["error"]
    if expected == 421:
        assert not upstream.calls


async def test_a_foreign_host_can_start_no_run(
    scripted_bridge_url: str, upstream: ScriptedUpstream
) -> None:
    status, _ = await exchange(
        scripted_bridge_url,
        b"POST /completion HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(PROMPT), PROMPT),
    )
    assert status == 421
    assert "Complete" not in upstream.calls


async def test_health_answers_any_host(scripted_bridge_url: str) -> None:
    status, _ = await exchange(
        scripted_bridge_url,
        b"GET /health HTTP/1.1\r\nHost: pod-10-0-0-7.probe\r\nConnection: close\r\n\r\n",
    )
    assert status == 200


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        pytest.param("http://localhost:3000", 200, id="loopback-page"),
        pytest.param("http://127.0.0.1:4000", 200, id="same-origin"),
        pytest.param("http://evil.example", 403, id="foreign-page"),
        pytest.param("null", 403, id="sandboxed-or-file"),
        pytest.param("http://[::1", 403, id="malformed"),
    ],
)
async def test_a_browser_origin_must_be_a_served_host(
    http: httpx.AsyncClient, upstream: ScriptedUpstream, origin: str, expected: int
) -> None:
    # An empty POST without Content-Type passes the body check; the Origin stops a page.
    response = await http.post("/sessions/s1/nudge", headers={"Origin": origin})
    assert response.status_code == expected, response.text
    if expected == 403:
        assert response.json()["code"] == "PERMISSION_DENIED"
        assert "NudgeSession" not in upstream.calls


@pytest.mark.parametrize(
    ("options", "host", "expected"),
    [
        pytest.param({"allowed_hosts": ["gw.example"]}, b"gw.example:443", 200, id="configured"),
        pytest.param({"allowed_hosts": ["GW.example."]}, b"gw.example", 200, id="normalized"),
        pytest.param({"allowed_hosts": ["gw.example"]}, b"evil.example", 421, id="others-not"),
        pytest.param({"allowed_hosts": ["*"]}, b"anything.example", 200, id="star"),
        pytest.param({"check_host": False}, b"anything.example", 200, id="check-off"),
    ],
)
async def test_allowed_hosts_are_configurable(
    scripted: tuple[ScriptedUpstream, str], options: dict[str, Any], host: bytes, expected: int
) -> None:
    async with running_bridge(scripted[1], **options) as url:
        status, response = await exchange(
            url, b"GET /status HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host
        )
    assert status == expected, response[:300]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        pytest.param("Example.COM:80", "example.com", id="port-case"),
        pytest.param("[::1]:4000", "::1", id="bracketed-v6"),
        pytest.param("::1", "::1", id="bare-v6"),
        pytest.param("0:0:0:0:0:0:0:1", "::1", id="long-v6"),
        pytest.param("example.com.", "example.com", id="trailing-dot"),
        pytest.param("[::1", "[::1", id="unclosed"),
    ],
)
def test_normalize_host(raw: str, normalized: str) -> None:
    assert normalize_host(raw) == normalized


def test_a_star_or_no_check_serves_any_host() -> None:
    assert HostPolicy.of(check=True, bound="127.0.0.1", extra=["*"]).admits("x")
    assert HostPolicy.of(check=False, bound="127.0.0.1").admits("x")
    assert not HostPolicy.of(check=True, bound="0.0.0.0").admits("x")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([], None, id="none"),
        pytest.param([(b"content-type", b"application/json")], True, id="json"),
        pytest.param(
            [(b"content-type", b"application/json"), (b"content-type", b"text/plain")],
            False,
            id="two",
        ),
        pytest.param([(b"content-type", b'application/json; charset="utf-8"')], True, id="q"),
        pytest.param([(b"content-type", b"application/json+x")], False, id="json-plus"),
    ],
)
def test_json_content_type(headers: list[tuple[bytes, bytes]], expected: bool | None) -> None:
    assert json_content_type(headers) is expected
