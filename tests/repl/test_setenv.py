"""`setenv` overrides reach the agent's environment, over REST and over gRPC."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import running_bridge, running_gateway
from tests.repl.terminal import Terminal

# env_agent answers with json.dumps(os.environ); full mode prints that text as a JSON string.
# TASK_*: a name the gateway's default CODEX_GATEWAY_REQUEST_ENV_ALLOW lets through.
PROBE = '\\"TASK_REPL_PROBE\\": \\"hello from the repl\\"'


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_setenv_reaches_the_run_and_setenv_clear_stops_it(
    config_for: Callable[..., Config], spawn: Callable[..., Terminal], protocol: str
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "env_agent.py")
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        term = spawn(*(["--grpc", gw.target] if protocol == "grpc" else [url]))
        await term.line("setenv TASK_REPL_PROBE hello from the repl")
        await term.expect("env overrides: TASK_REPL_PROBE=hello from the repl")
        await term.line("run show me your environment")
        await term.expect(PROBE)
        await term.expect("→ pinned session")
        await term.line("setenv clear")
        await term.expect("env overrides: none")
        await term.line("run and now")
        shown = await term.expect("→ usage:")
        assert '"output":' in shown and "TASK_REPL_PROBE" not in shown
        await term.line("setenv PATH /tmp")
        await term.line("run blocked")
        await term.expect("Bad Request: " if protocol == "rest" else "INVALID_ARGUMENT: ")
        await term.expect("PATH")
        await term.line("exit")
        assert await term.exit_status() == 0
