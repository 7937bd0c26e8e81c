"""Fixtures for the REST regression tests: one gateway process per module (echo agent, two
slots, a 64 KiB body limit, an API token and a secure token) started with 230 sessions and one
corrupt session already on disk; every test that uses it ends with the process alive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.faults.spawned import Spawned, gateway_env, spawn, until_serving_sync
from tests.hostile.live import (
    API_TOKEN,
    AUTH,
    MAX_BODY_BYTES,
    MAX_CONCURRENT,
    SECURE_TOKEN,
    seed_sessions,
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawned]:
    root = tmp_path_factory.mktemp("reference-defects")
    seed_sessions(root / "sessions")
    env = gateway_env(
        root,
        "echo_agent.py",
        CODEX_GATEWAY_MAX_CONCURRENT=str(MAX_CONCURRENT),
        CODEX_GATEWAY_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        CODEX_GATEWAY_API_TOKEN=API_TOKEN,
        CODEX_GATEWAY_SECURE_TOKEN=SECURE_TOKEN,
    )
    gateway = spawn(env, root / "gateway.log")
    try:
        until_serving_sync(gateway)
        yield gateway
    finally:
        assert gateway.stop() == 0, gateway.log_tail()


@pytest.fixture
async def gateway(shared: Spawned) -> AsyncIterator[Spawned]:
    assert shared.running(), f"an earlier test killed the gateway:\n{shared.log_tail()}"
    yield shared
    assert shared.running(), f"the gateway died:\n{shared.log_tail()}"


@pytest.fixture
async def client(gateway: Spawned) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=AUTH, timeout=30, trust_env=False
    ) as http:
        yield http
