"""Every failure is one clear line, never a traceback, and the REPL goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from codex_gateway.v1 import runs_pb2
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, free_port, running_bridge, running_gateway
from tests.repl.terminal import Terminal, piped, repl_env


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_an_unreachable_gateway_is_one_line_and_the_repl_goes_on(
    spawn: Callable[..., Terminal], protocol: str
) -> None:
    target = f"127.0.0.1:{free_port()}"
    term = spawn(*(["--grpc", target] if protocol == "grpc" else [f"http://{target}"]))
    shown = target if protocol == "grpc" else f"http://{target}"
    for command in ("list", "run hello", "show abc events", "prompt abc more"):
        await term.line(command)
        await term.expect(f"\n✗ cannot reach the gateway at {shown}: connection refused\n")
    await term.line("mode compact")
    await term.expect("mode: compact")
    await term.line("exit")
    assert await term.exit_status() == 0
    assert "Traceback" not in term.screen


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_the_api_token_comes_from_the_flag_or_the_environment(
    config_for: Callable[..., Config], tmp_path: Path, protocol: str
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", api_token="tok")
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        where = ["--grpc", gw.target] if protocol == "grpc" else [url]
        denied = await piped(where, "list\n", repl_env(tmp_path))
        status = "401 Unauthorized" if protocol == "rest" else "UNAUTHENTICATED"
        assert denied.returncode == 1
        assert denied.stderr.startswith(f"✗ {status}: ")
        assert denied.stderr.endswith(
            " · pass --key or set CODEX_GATEWAY_API_KEY (an API key or the API token)\n"
        )
        assert denied.stderr.count("\n") == 1
        by_flag = await piped([*where, "--token", "tok"], "list\n", repl_env(tmp_path))
        by_env = await piped(where, "list\n", repl_env(tmp_path, CODEX_GATEWAY_API_TOKEN="tok"))
        assert (by_flag.returncode, by_env.returncode) == (0, 0)
        assert "No sessions." in by_flag.stdout and "No sessions." in by_env.stdout


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_secure_sessions_need_the_secure_token(
    config_for: Callable[..., Config], tmp_path: Path, protocol: str
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", secure_token="sec")
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        secure = await gw.stub.Complete(
            runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="x", secure=True)),
            metadata=(("x-codex-secure-token", "sec"),),
        )
        script = f"mode compact\nshow {secure.result.session_id}\n"
        where = ["--grpc", gw.target] if protocol == "grpc" else [url]
        denied = await piped(where, script, repl_env(tmp_path))
        status = "403 Forbidden" if protocol == "rest" else "PERMISSION_DENIED"
        assert denied.stderr.startswith(f"✗ {status}: ")
        assert denied.stderr.endswith(" · pass --secure-token or set CODEX_GATEWAY_SECURE_TOKEN\n")
        allowed = await piped(where, script, repl_env(tmp_path, CODEX_GATEWAY_SECURE_TOKEN="sec"))
        assert allowed.returncode == 0, allowed.stderr
        assert secure.result.session_id in allowed.stdout and "1 run(s)" in allowed.stdout


async def test_the_concurrency_limit_shows_the_gateways_answer_and_retry_after(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "slow_agent.py", max_concurrent=1)
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        busy = asyncio.ensure_future(
            gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="x", env={"FAKE_AGENT_SECONDS": "3"})
                )
            )
        )
        await asyncio.sleep(0.3)
        rest, grpc = await asyncio.gather(
            piped([url], "run x\n", repl_env(tmp_path)),
            piped(["--grpc", gw.target], "run x\n", repl_env(tmp_path)),
        )
        await busy
    limit = "Too many concurrent requests (1 of 1 runs active) · retry after 5 s\n"
    assert rest.stderr == f"✗ 429 Too Many Requests: {limit}"
    assert grpc.stderr == f"✗ RESOURCE_EXHAUSTED: {limit}"


async def test_a_run_past_its_timeout_is_408_with_a_hint(bridge_url: str, tmp_path: Path) -> None:
    script = "timeout 1\nrun [[scenario:stall]] wait forever\n"
    answer = await piped([bridge_url, "--mode", "compact"], script, repl_env(tmp_path))
    assert answer.returncode == 1
    assert answer.stderr == (
        "✗ 408 Request Timeout: Codex run timed out after 1000ms"
        " · failure: timeout · raise the run timeout with: timeout <seconds>\n"
    )


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_failed_run_shows_its_kind_and_when_the_provider_says_to_retry(
    gateway: RunningGateway, bridge_url: str, tmp_path: Path, protocol: str
) -> None:
    where = ["--grpc", gateway.target] if protocol == "grpc" else [bridge_url]
    script = "run [[scenario:ratelimited]] [[reset:90]] go\nrun [[scenario:http401]] go\n"
    answer = await piped([*where, "--mode", "compact"], script, repl_env(tmp_path))
    assert answer.returncode == 1
    status = "500 Internal Server Error" if protocol == "rest" else "INTERNAL"
    limited, refused = answer.stderr.splitlines()
    assert limited.startswith(f"✗ {status}: rate limit exceeded: ")
    assert limited.endswith(
        "Please try again in 90s. · failure: rate_limited, the provider says retry after 1 min 30 s"
    )
    assert refused.startswith(f"✗ {status}: unexpected status 401 Unauthorized: ")
    assert refused.endswith(" · failure: auth")
