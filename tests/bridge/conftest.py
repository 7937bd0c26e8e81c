"""Fixtures for the bridge's end-to-end tests: a ScriptedUpstream on a loopback port and the real
bridge (uvicorn on port 0) in front of it, called with httpx over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from codex_gateway.v1 import gateway_pb2_grpc
from tests.bridge.scripted_upstream import ScriptedUpstream
from tests.harness import running_bridge

# Small, so the body-limit tests need no large payloads.
MAX_BODY_BYTES = 4096


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedUpstream, str]]:
    """A ScriptedUpstream gRPC server on 127.0.0.1 and its target."""
    servicer = ScriptedUpstream()
    server = grpc.aio.server()
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


@pytest.fixture
def upstream(scripted: tuple[ScriptedUpstream, str]) -> ScriptedUpstream:
    return scripted[0]


@pytest.fixture
async def scripted_bridge_url(scripted: tuple[ScriptedUpstream, str]) -> AsyncIterator[str]:
    async with running_bridge(scripted[1], max_body_bytes=MAX_BODY_BYTES) as url:
        yield url


@pytest.fixture
async def http(scripted_bridge_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: no proxy from the environment; only loopback is ever contacted.
    async with httpx.AsyncClient(base_url=scripted_bridge_url, timeout=20, trust_env=False) as c:
        yield c
