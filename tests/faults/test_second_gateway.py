"""A second gateway started by mistake on the same sessions or ports exits 2 with a message naming
the conflict, before it reads a session: the first gateway's running run (which the second would
otherwise take for a crash's leftover, and stop) completes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.faults.spawned import gateway_env, run_in_flight, spawn, until_serving
from tests.harness import free_port


@pytest.mark.parametrize(
    ("same", "needle"),
    [
        pytest.param("sessions", "is in use by another gateway (pid", id="same-sessions"),
        pytest.param("rest-port", "CODEX_GATEWAY_PORT: cannot listen", id="same-rest-port"),
        pytest.param("grpc-port", "CODEX_GATEWAY_GRPC_PORT: cannot listen", id="same-grpc-port"),
    ],
)
async def test_a_second_gateway_leaves_the_first_ones_run_alone(
    tmp_path: Path, same: str, needle: str
) -> None:
    env = gateway_env(tmp_path, "slow_agent.py")
    first = spawn(env, tmp_path / "first.log")
    try:
        await until_serving(first)
        async with httpx.AsyncClient(base_url=first.url, timeout=30, trust_env=False) as client:
            call = await run_in_flight(client, first, 2)
            ports = {
                "CODEX_GATEWAY_PORT": str(first.rest_port if same == "rest-port" else free_port()),
                "CODEX_GATEWAY_GRPC_PORT": str(
                    first.grpc_port if same == "grpc-port" else free_port()
                ),
            }
            second = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "gateway", "serve"],
                env={**os.environ, **env, **ports},
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            answer = await asyncio.wait_for(call, 15)
        assert second.returncode == 2, second.stderr
        assert needle in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert answer.status_code == 200, answer.text
    finally:
        first.stop()
