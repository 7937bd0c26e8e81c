"""Request limits of a real bridge process (`python -m bridge`) over real sockets, past the head:
a body that stalls or trickles holds its connection only until the request deadline (408), so
connections stuck in their bodies cannot keep every client out at the connection cap; the
trailer fields of a chunked body count against the head's limits, and a trailer value that
never ends is cut off without the process's memory following it; blank lines between requests
do not hold a connection past the keep-alive timeout. Through `python -m gateway serve`, the
deadline comes from CODEX_GATEWAY_REQUEST_READ_TIMEOUT_MS and a chunked body in tiny chunks
with a trailer is still served."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest

from gateway.bridge_process import bridge_guard_args
from gateway.config import Config, ConfigError
from tests.bridge.scripted_upstream import ScriptedUpstream
from tests.bridge.test_connections import bridge_process, closed_by_server, health
from tests.faults.spawned import gateway_env, proc_status_kib, running
from tests.hostile.live import status_of

CHUNKED_HEAD = (
    b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n"
)
STALLED = (
    b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


@pytest.mark.timeout(120)
async def test_stalled_bodies_are_closed_at_the_request_deadline_and_free_the_cap(
    scripted: tuple[ScriptedUpstream, str], tmp_path: Path
) -> None:
    cap = 20
    # A long head deadline: only the request deadline can close these (their heads are whole).
    options = ("--max-connections", str(cap), "--header-timeout-ms", "120000")
    options += ("--request-read-timeout-ms", "1500", "--log-level", "INFO")
    async with bridge_process(scripted[1], tmp_path, *options) as bridge:
        stalled = []

        async def stall() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
            writer.write(STALLED)
            stalled.append((reader, writer))

        for _ in range(cap - 1):
            await stall()

        async def drip() -> None:  # half of them send a body byte now and then, never the end
            while True:
                for _, writer in stalled[::2]:
                    if not writer.is_closing():
                        with contextlib.suppress(ConnectionError):
                            writer.write(b" ")
                await asyncio.sleep(0.2)

        dripping = asyncio.ensure_future(drip())
        try:
            assert await health(bridge.url) == 200  # served while they hang on
            await stall()  # the cap is full now
            answers = await asyncio.gather(*(closed_by_server(reader, 60) for reader, _ in stalled))
        finally:
            dripping.cancel()
            for _, writer in stalled:
                writer.close()
        for answer in answers:
            assert answer is not None, "a stalled body was kept open"
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert b'"code":"DEADLINE_EXCEEDED"' in answer
        assert await health(bridge.url) == 200  # a new client is served again
    assert "Traceback" not in bridge.log_text()


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            CHUNKED_HEAD + b"\r\n" + chunked(b"{}") + b"X-T: " + b"a" * 70_000 + b"\r\n\r\n",
            id="64k-trailer",
        ),
        pytest.param(
            CHUNKED_HEAD
            + b"\r\n"
            + chunked(b"{}")
            + b"".join(b"X-%d: c\r\n" % i for i in range(150))
            + b"\r\n",
            id="150-trailers",
        ),
        pytest.param(
            CHUNKED_HEAD
            + b"X-Head: "
            + b"h" * 20_000
            + b"\r\n\r\n"
            + chunked(b"{}")
            + b"X-T: "
            + b"t" * 20_000
            + b"\r\n\r\n",
            id="head-plus-trailer",
        ),
    ],
)
async def test_trailers_count_against_the_head_limits(
    scripted: tuple[ScriptedUpstream, str], tmp_path: Path, request_bytes: bytes
) -> None:
    async with bridge_process(scripted[1], tmp_path) as bridge:
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(request_bytes)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        answer = await closed_by_server(reader, 20)
        writer.close()
        assert answer is not None
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert await health(bridge.url) == 200


@pytest.mark.timeout(120)
async def test_a_trailer_flood_does_not_grow_the_process(
    scripted: tuple[ScriptedUpstream, str], tmp_path: Path
) -> None:
    """The review's trailer of 300 x 1 MiB took the bridge from 66 MB to 601 MB: httptools
    buffers a trailer field's value until the next field, out of sight of the head's count."""
    async with bridge_process(scripted[1], tmp_path) as bridge:
        assert await health(bridge.url) == 200
        before = proc_status_kib(bridge.pid, "VmRSS")

        async def send_flood() -> bytes | None:
            reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
            writer.write(CHUNKED_HEAD + b"\r\n" + chunked(b"{}") + b"X-T: ")
            piece = b"a" * 1_048_576
            with contextlib.suppress(ConnectionError):
                for _ in range(64):
                    writer.write(piece)
                    await asyncio.wait_for(writer.drain(), 20)
            answer = await closed_by_server(reader, 20)
            writer.close()
            return answer

        answers = await asyncio.gather(*(send_flood() for _ in range(8)))
        peak = proc_status_kib(bridge.pid, "VmHWM")
        assert all(answer is not None for answer in answers), "a trailer flood was kept open"
        assert peak - before < 64 * 1024, f"RSS grew by {(peak - before) // 1024} MiB"
        assert await health(bridge.url) == 200
    assert "Traceback" not in bridge.log_text()


@pytest.mark.timeout(90)
async def test_blank_lines_between_requests_do_not_hold_the_connection(
    scripted: tuple[ScriptedUpstream, str], tmp_path: Path
) -> None:
    """uvicorn renews its keep-alive timeout on any byte; a CRLF starts no request."""
    async with bridge_process(scripted[1], tmp_path, "--header-timeout-ms", "120000") as bridge:
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")

        async def drip() -> None:
            while True:
                with contextlib.suppress(ConnectionError):
                    writer.write(b"\r\n")
                await asyncio.sleep(0.5)

        dripping = asyncio.ensure_future(drip())
        try:
            # The keep-alive timeout is 5 s; 60 s is far past it on any machine.
            assert await closed_by_server(reader, 60) is not None, "held by blank lines"
        finally:
            dripping.cancel()
            writer.close()


async def test_the_request_deadline_comes_from_the_environment(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, CODEX_GATEWAY_REQUEST_READ_TIMEOUT_MS="500")
    async with running(env, tmp_path) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.rest_port)
        writer.write(STALLED)
        try:
            answer = await closed_by_server(reader, 30)
        finally:
            writer.close()
        assert answer is not None and status_of(answer) == 408, answer
        # A chunked body in one-byte chunks with a trailer is served: chunk framing and
        # trailers within the limits are not the head's.
        body = b'{"prompt": "hello"}'
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.rest_port)
        writer.write(
            CHUNKED_HEAD.replace(b"127.0.0.1", b"127.0.0.1:%d" % gateway.rest_port)
            + b"Connection: close\r\n\r\n"
            + chunked(*(body[i : i + 1] for i in range(len(body))))
            + b"X-Checksum: none\r\n\r\n"
        )
        try:
            answer = await closed_by_server(reader, 60)
        finally:
            writer.close()
        assert answer is not None and status_of(answer) == 200, answer
        async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, timeout=20) as client:
            settings = (await client.get("/")).json()
        assert "CODEX_GATEWAY_REQUEST_READ_TIMEOUT_MS" in str(settings)


@pytest.mark.parametrize("value", ["soon", "0", "99"])
def test_a_bad_request_deadline_stops_startup_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="CODEX_GATEWAY_REQUEST_READ_TIMEOUT_MS"):
        Config.from_env({"CODEX_GATEWAY_REQUEST_READ_TIMEOUT_MS": value}, cwd=Path("/tmp"))


def test_the_request_deadline_is_passed_to_the_bridge_process() -> None:
    env = {"CODEX_GATEWAY_REQUEST_READ_TIMEOUT_MS": "4500"}
    guards = Config.from_env(env, cwd=Path("/tmp")).bridge  # only read, not written
    args = bridge_guard_args(guards, check_host=True)
    assert args[args.index("--request-read-timeout-ms") + 1] == "4500"
