"""A run the stall watchdog stopped is one line that says so, not "raise the run timeout"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from gateway.config import Config
from tests.harness import running_bridge, running_gateway
from tests.repl.terminal import piped, repl_env


async def test_a_stalled_run_says_it_stalled_over_both_protocols(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    async with (
        running_gateway(config_for(stall_timeout_ms=1500)) as gw,
        running_bridge(gw.target) as url,
    ):
        script = "run [[scenario:stall]] wait forever\n"
        rest, grpc = await asyncio.gather(
            piped([url, "--mode", "compact"], script, repl_env(tmp_path)),
            piped(["--grpc", gw.target, "--mode", "compact"], script, repl_env(tmp_path)),
        )
    line = (
        "Codex was silent for 1500ms: the run was stopped as stalled · failure: stalled"
        " · the gateway's CODEX_GATEWAY_STALL_TIMEOUT_MS stopped it, not the run timeout\n"
    )
    assert (rest.returncode, rest.stderr) == (1, f"✗ 408 Request Timeout: {line}")
    assert (grpc.returncode, grpc.stderr) == (1, f"✗ DEADLINE_EXCEEDED: {line}")
