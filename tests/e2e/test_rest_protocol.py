"""The REST surface as a whole: every RPC has one live route, and hostile HTTP is harmless."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from google.api import annotations_pb2

from codex_gateway.v1 import gateway_pb2

METHODS = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].methods


def bindings() -> list[tuple[str, str, str]]:
    found = []
    for method in METHODS:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        assert verb in ("get", "post", "patch", "put", "delete"), method.name
        assert not rule.additional_bindings, f"{method.name} has more than one route"
        found.append((method.name, verb.upper(), getattr(rule, verb)))
    return found


def test_every_rpc_has_exactly_one_route() -> None:
    routes = bindings()
    assert len(routes) == len(METHODS)
    assert len({(verb, path) for _, verb, path in routes}) == len(routes)


async def test_every_route_answers_without_a_server_error(rest: httpx.AsyncClient) -> None:
    for name, verb, path in bindings():
        concrete = re.sub(r"\{[^}]+\}", "missing-id", path)
        if name in ("StreamCompletion", "TailSession"):
            async with rest.stream(verb, concrete, json={} if verb == "POST" else None) as response:
                status = response.status_code
        else:
            kwargs = {"json": {}} if verb in ("POST", "PATCH") else {}
            status = (await rest.request(verb, concrete, **kwargs)).status_code
        assert status < 500 or status == 501, (name, status)
        assert status != 404 or "missing-id" in concrete, (name, status)


async def raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return data


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n", id="host-with-space"),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: [::1\r\n\r\n", id="host-bad-bracket"),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n", id="host-binary"),
        pytest.param(b"GET /sessions/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", id="bad-percent"),
        pytest.param(
            b"GET /sessions/%E0%A4%A HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", id="bad-utf8-percent"
        ),
        pytest.param(b"GET /sessions/a%00b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", id="nul-byte"),
        pytest.param(b"GET //sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", id="double-slash"),
        pytest.param(
            b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", id="long-path"
        ),
        pytest.param(
            b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999\r\n\r\n",
            id="huge-length",
        ),
        pytest.param(
            b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
            id="negative-length",
        ),
    ],
)
async def test_hostile_requests_get_a_4xx_and_the_server_lives(
    bridge_url: str, rest: httpx.AsyncClient, request_bytes: bytes
) -> None:
    answer = await raw(bridge_url, request_bytes)
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500 or status == 200, answer[:200]
    assert (await rest.get("/health")).json() == {"status": "ok"}


async def test_trailing_slash_and_unknown_routes(rest: httpx.AsyncClient) -> None:
    assert (await rest.get("/health/")).status_code == 200
    missing = await rest.get("/no/such/route")
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"
    wrong = await rest.delete("/completion")
    assert wrong.status_code == 405 and "POST" in wrong.headers["allow"]
