"""The REST bridge hardened, through a real `python -m gateway serve` (issue 12, findings 3, 7
and 18): a web page cannot drive a token-less gateway (a form or text/plain body is 415, a
rebinding Host 421), the bridge's guards are configured from the gateway's environment, and the
OpenAPI document needs the API token like every endpoint but /health."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from gateway.config import Config, ConfigError
from tests.bridge.rawhttp import exchange
from tests.faults.spawned import Spawned, agents_of, gateway_env, running
from tests.hostile.live import status_of

TOKEN = "hardening-token"
PROMPT = b'{"prompt": "rm -rf ~"}'


async def raw(gateway: Spawned, request: bytes) -> bytes:
    """The whole answer (every request here ends its connection)."""
    if b"Connection: close" not in request:
        request = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    _, answer = await exchange(gateway.url, request)
    return answer


def post_completion(host: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /completion HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (host, content_type, extra, len(PROMPT), PROMPT)
    )


async def session_count(gateway: Spawned, headers: dict[str, str] | None = None) -> int:
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, timeout=20) as client:
        listed = await client.get("/sessions", headers=headers)
        assert listed.status_code == 200, listed.text
        return len(listed.json())


async def test_a_web_page_cannot_drive_a_gateway_without_a_token(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, CODEX_GATEWAY_ALLOWED_HOSTS="gw.example, other.example")
    async with running(env, tmp_path) as gateway:
        port = str(gateway.rest_port).encode()
        same_host = b"127.0.0.1:" + port
        # What an HTML form or a no-preflight fetch can send: refused, no run started.
        for content_type in (b"text/plain", b"application/x-www-form-urlencoded"):
            answer = await raw(gateway, post_completion(same_host, content_type))
            assert status_of(answer) == 415, answer[:300]
        # DNS rebinding: the page's own name in Host.
        answer = await raw(gateway, post_completion(b"evil.example:" + port, b"application/json"))
        assert status_of(answer) == 421, answer[:300]
        assert b'"code":"PERMISSION_DENIED"' in answer
        answer = await raw(
            gateway,
            post_completion(same_host, b"application/json", b"Origin: http://evil.example\r\n"),
        )
        assert status_of(answer) == 403, answer[:300]
        assert await session_count(gateway) == 0
        assert agents_of(gateway.pid, "echo_agent") == set()
        # What a real client sends works, for the configured hosts too.
        for host in (same_host, b"localhost:" + port, b"gw.example", b"other.example:8443"):
            answer = await raw(gateway, post_completion(host, b"application/json"))
            assert status_of(answer) == 200, (host, answer[:300])


@pytest.mark.parametrize(
    ("variables", "foreign_host"),
    [
        pytest.param({}, 421, id="checked-by-default"),
        pytest.param({"CODEX_GATEWAY_HOST_CHECK_WITH_TOKEN": "false"}, 200, id="turned-off"),
    ],
)
async def test_with_a_token_the_host_check_is_configurable(
    tmp_path: Path, variables: dict[str, str], foreign_host: int
) -> None:
    env = gateway_env(tmp_path, CODEX_GATEWAY_API_TOKEN=TOKEN, **variables)
    async with running(env, tmp_path) as gateway:
        request = b"GET /status HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n"
        answer = await raw(gateway, request % (b"proxy.example", TOKEN.encode()))
        assert status_of(answer) == foreign_host, answer[:300]
        answer = await raw(gateway, request % (b"localhost", TOKEN.encode()))
        assert status_of(answer) == 200, answer[:300]
        # A body is JSON or nothing, token or not.
        answer = await raw(
            gateway,
            post_completion(
                b"localhost", b"text/plain", b"Authorization: Bearer %s\r\n" % TOKEN.encode()
            ),
        )
        assert status_of(answer) == 415, answer[:300]


async def test_the_openapi_document_needs_the_api_token(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, CODEX_GATEWAY_API_TOKEN=TOKEN)
    async with (
        running(env, tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, trust_env=False, timeout=20) as client,
    ):
        for method in ("GET", "HEAD"):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                refused = await client.request(method, "/openapi.json", headers=headers)
                assert refused.status_code == 401, (method, headers, refused.text)
            served = await client.request(
                method, "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert served.status_code == 200, served.text
        document = (
            await client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
        ).json()
        assert document["openapi"].startswith("3.")
        refused = await client.get("/openapi.json")
        assert refused.json()["code"] == "UNAUTHENTICATED"
        assert (await client.get("/health")).status_code == 200


async def test_the_connection_limits_come_from_the_environment(tmp_path: Path) -> None:
    env = gateway_env(
        tmp_path,
        CODEX_GATEWAY_MAX_HEADER_BYTES="2048",
        CODEX_GATEWAY_MAX_HEADERS="20",
        CODEX_GATEWAY_HEADER_TIMEOUT_MS="500",
    )
    async with running(env, tmp_path) as gateway:
        big = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: %s\r\n\r\n" % (b"a" * 4096)
        assert status_of(await raw(gateway, big)) == 431
        many = b"GET /health HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % b"".join(
            b"X-%d: a\r\n" % n for n in range(30)
        )
        assert status_of(await raw(gateway, many)) == 431
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.rest_port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        try:
            async with asyncio.timeout(30):
                assert await reader.read(-1) == b""  # closed, the head never finished
        finally:
            writer.close()
        async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, timeout=20) as client:
            settings = (await client.get("/")).json()
        shown = str(settings)
        for name in ("CODEX_GATEWAY_MAX_HEADER_BYTES", "CODEX_GATEWAY_ALLOWED_HOSTS"):
            assert name in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("CODEX_GATEWAY_MAX_HEADER_BYTES", "100", id="header-bytes-too-small"),
        pytest.param("CODEX_GATEWAY_MAX_HEADERS", "0", id="no-headers"),
        pytest.param("CODEX_GATEWAY_HEADER_TIMEOUT_MS", "soon", id="timeout-not-a-number"),
        pytest.param("CODEX_GATEWAY_MAX_CONNECTIONS", "0", id="no-connections"),
        pytest.param("CODEX_GATEWAY_HOST_CHECK_WITH_TOKEN", "maybe", id="not-a-flag"),
    ],
)
def test_bad_bridge_limits_stop_startup_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value}, cwd=Path("/tmp"))  # only read, not written


def test_the_host_check_applies_without_a_token_whatever_the_setting() -> None:
    env = {"CODEX_GATEWAY_HOST_CHECK_WITH_TOKEN": "false"}
    config = Config.from_env(env, cwd=Path("/tmp"))  # only read, not written
    assert config.bridge.check_host(False)
    assert not config.bridge.check_host(True)
    assert Config.from_env({}, cwd=Path("/tmp")).bridge.check_host(True)
