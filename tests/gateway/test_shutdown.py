"""Graceful shutdown: runs get their grace, then are stopped and recorded as interrupted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from codex_gateway.v1 import runs_pb2
from gateway.config import Config
from gateway.server import Gateway, drain, start_grpc
from tests.fakes import AGENTS_DIR
from tests.processes import running_below


async def test_shutdown_interrupts_runs_after_the_grace_and_refuses_new_ones(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "slow_agent.py", shutdown_grace_ms=500)
    gateway = Gateway.build(config)
    gateway.store.load()
    server = await start_grpc(gateway, "127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        from codex_gateway.v1 import gateway_pb2_grpc

        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = runs_pb2.CompleteRequest(
            run=runs_pb2.RunInput(prompt="long", env={"FAKE_AGENT_SECONDS": "30"})
        )
        running = asyncio.ensure_future(stub.Complete(request))
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        draining = asyncio.ensure_future(drain(gateway, server))
        await asyncio.sleep(0.1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Complete(request)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as interrupted:
            await running
        assert interrupted.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "interrupted" in (interrupted.value.details() or "")
        await draining
        assert loop.time() - started < 5
    await server.server.stop(grace=None)
    assert running_below() == {}
    (session_dir,) = Path(config.session_dirs[0]).glob("session-*")
    meta = json.loads((session_dir / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    assert meta["runs"][-1]["status"] == "interrupted"
    assert "[interrupted]" in (session_dir / "stdout.log").read_text()
