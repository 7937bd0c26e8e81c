"""Memory bounded in bytes: clients that never read, huge lines, huge searches (issue 12, #6).

A real gateway process (`serve`: gRPC and its REST bridge) runs bigevents_agent.py, whose runs
print many lines of about 1 MiB. Against it: followers of a session's tail that never read
(gRPC and REST), streamed completions that never read (gRPC and REST), and parallel searches
over the whole log. The gateway's peak RSS (VmHWM) must stay under a stated bound, whatever the
number of lines, and every stalled client, once it reads again, finds it was told it lagged.

Measured (80 lines of 1 MB per run, the fast version): the unfixed gateway peaked at 1517 MiB
(its prompt answered 429, its stalled followers never told anything); after the fix at about
220 MiB (224 MiB with 400 lines), the bridge at about 120 MiB.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, sessions_pb2
from tests.faults.spawned import (
    Spawned,
    bridges_of,
    gateway_env,
    proc_status_kib,
    running,
)

LINE_BYTES = 1_000_000
MIB = 1024 * 1024
# The stated bound of the gateway's peak RSS under every attack below (it idles near 70 MiB).
RSS_BOUND_MIB = 400
FOLLOWER_BUFFER_BYTES = 8 * MIB


@dataclass
class Stalled:
    """A client that stopped reading: a raw REST socket, or a gRPC call nobody reads."""

    name: str
    sock: socket.socket | None = None
    call: Any = None


async def _raw_request(gateway: Spawned, request: bytes, until: bytes) -> socket.socket:
    """Send a request on a socket with a small receive buffer; read until `until` is seen, then
    stop reading (the caller keeps the socket open)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", gateway.rest_port))
    await loop.sock_sendall(sock, request)
    seen = b""
    while until not in seen:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65_536), 20)
        assert chunk, f"connection closed before {until!r}: {seen[:300]!r}"
        seen += chunk
    return sock


async def _read_rest_to_end(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 30)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def _post(path: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def big_prompt(lines: int, **extra: str) -> str:
    words = " ".join(f"{k}={v}" for k, v in extra.items())
    return f"count={lines} bytes={LINE_BYTES} {words}".strip()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Spawned]:
    env = gateway_env(tmp_path, "bigevents_agent.py", CODEX_GATEWAY_MAX_CONCURRENT="8")
    async with running(env, tmp_path) as spawned:
        yield spawned
        assert spawned.running(), spawned.log_tail()


@pytest.fixture
async def client(gateway: Spawned) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=120, trust_env=False) as http:
        yield http


@pytest.fixture
async def stub(gateway: Spawned) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    options = [("grpc.max_receive_message_length", 64 * MIB)]
    async with grpc.aio.insecure_channel(gateway.target, options=options) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def peak_mib(pid: int) -> float:
    return proc_status_kib(pid, "VmHWM") / 1024


async def _stall_followers(
    gateway: Spawned, stub: gateway_pb2_grpc.GatewayServiceStub, session_id: str
) -> list[Stalled]:
    stalled = []
    for n in range(2):
        call = stub.TailSession(
            sessions_pb2.TailSessionRequest(
                session_id=session_id, follow=True, include_events=True, tail_lines=1
            )
        )
        while True:
            message = await call.read()
            if message.WhichOneof("kind") == "notice" and message.notice.kind == "following":
                break
        stalled.append(Stalled(f"grpc tail {n}", call=call))
    sock = await _raw_request(
        gateway, _get(f"/sessions/{session_id}/tail?follow=true&include_events=true"), b"following"
    )
    stalled.append(Stalled("rest tail", sock=sock))
    return stalled


async def _stall_streams(
    gateway: Spawned, stub: gateway_pb2_grpc.GatewayServiceStub, lines: int
) -> list[Stalled]:
    call = stub.StreamCompletion(
        runs_pb2.StreamCompletionRequest(run=runs_pb2.RunInput(prompt=big_prompt(lines)))
    )
    first = await call.read()
    assert first.WhichOneof("kind") == "started"
    sock = await _raw_request(
        gateway, _post("/completion/stream", {"prompt": big_prompt(lines)}), b"started"
    )
    return [Stalled("grpc stream", call=call), Stalled("rest stream", sock=sock)]


async def _until_idle(client: httpx.AsyncClient) -> None:
    async def idle() -> bool:
        return (await client.get("/status")).json()["concurrency"]["active"] == 0

    for _ in range(1200):
        if await idle():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("runs still active")


async def _searches(
    client: httpx.AsyncClient, stub: gateway_pb2_grpc.GatewayServiceStub, session_id: str
) -> None:
    rest = [
        client.get(
            f"/sessions/{session_id}/search",
            params={"q": "zzzz", "tail_lines": 1_000_000, "max_results": 1000, "fuzzy": fuzzy},
        )
        for fuzzy in ("false", "true", "false")
    ]
    grpc_calls = [
        stub.SearchSession(
            sessions_pb2.SearchSessionRequest(
                session_id=session_id, q="zzzz", tail_lines=1_000_000, max_results=1000, fuzzy=f
            )
        )
        for f in (False, True, False)
    ]
    answers = await asyncio.gather(*rest, *grpc_calls)
    for answer in answers[:3]:
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["signals"]
    for message in answers[3:]:
        assert message.signals


async def _lag_seen(stalled: Stalled) -> str:
    """Read what the stalled client was sent; the kind of its last item that mattered."""
    if stalled.sock is not None:
        data = await _read_rest_to_end(stalled.sock)
        told = b'"kind":"lagged"' in data[-4096:] or b'"type":"gateway.lagged"' in data
        return "lagged" if told else data[-300:].decode(errors="replace")
    messages = []
    while (message := await stalled.call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        messages.append(message)
    kinds = [m.WhichOneof("kind") for m in messages]
    if "notice" in kinds and messages[-1].notice.kind == "lagged":
        return "lagged"
    events = [m.event for m in messages if m.WhichOneof("kind") == "event"]
    if any(e.fields["type"].string_value == "gateway.lagged" for e in events):
        return "lagged"
    return f"no lag notice in {kinds[-5:]}"


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(80, id="80-lines", marks=pytest.mark.timeout(180)),
        pytest.param(400, id="400-lines", marks=[pytest.mark.slow, pytest.mark.timeout(600)]),
    ],
)
async def test_stalled_followers_streams_and_huge_searches_keep_the_gateway_small(
    gateway: Spawned,
    client: httpx.AsyncClient,
    stub: gateway_pb2_grpc.GatewayServiceStub,
    lines: int,
) -> None:
    first = (await client.post("/completion", json={"prompt": big_prompt(1)})).json()
    session_id = first["session_id"]
    stalled: list[Stalled] = []
    try:
        stalled += await _stall_followers(gateway, stub, session_id)
        stalled += await _stall_streams(gateway, stub, lines)
        answer = await client.post(
            f"/sessions/{session_id}/prompt", json={"prompt": big_prompt(lines, last="done")}
        )
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["status"] == "completed"
        await _until_idle(client)
        await _searches(client, stub, session_id)
        peak = peak_mib(gateway.pid)
        bridge = max(peak_mib(pid) for pid in bridges_of(gateway.pid))
        print(f"gateway VmHWM {peak:.0f} MiB, bridge VmHWM {bridge:.0f} MiB")

        assert [await _lag_seen(s) for s in stalled] == ["lagged"] * len(stalled)
    finally:
        for each in stalled:
            if each.sock is not None:
                each.sock.close()
            if each.call is not None:
                each.call.cancel()
    assert peak < RSS_BOUND_MIB
    # The bridge relays one message at a time and waits for its client (uvicorn's flow
    # control), so grpc's flow control stops the gateway's writes too.
    assert bridge < RSS_BOUND_MIB
