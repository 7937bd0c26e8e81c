"""SIGTERM with runs in flight: the gateway drains gracefully and in bounded time. Runs that end
within CODEX_GATEWAY_SHUTDOWN_GRACE_MS complete; the others are stopped and recorded
`interrupted`; every in-flight REST caller gets an answer, not a dropped connection; new runs
asked for during the drain get 503; the process exits 0 with nothing left running.

tests/gateway/test_shutdown.py drains an in-process gateway over gRPC; this is the real process,
its signal handler and the REST bridge in front of it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from tests.faults.spawned import (
    agents_of,
    gateway_env,
    kill_pids,
    session_metas,
    spawn,
    until_serving,
)
from tests.processes import alive

GRACE_MS = 2000
SLACK_S = 4.0  # the stop grace of the agents (1 s) plus process and bridge shutdown


async def test_sigterm_drains_in_flight_runs_and_exits_zero(tmp_path: Path) -> None:
    env = gateway_env(
        tmp_path,
        "slow_agent.py",
        CODEX_GATEWAY_MAX_CONCURRENT="4",
        CODEX_GATEWAY_SHUTDOWN_GRACE_MS=str(GRACE_MS),
    )
    gateway = spawn(env, tmp_path / "gateway.log")
    agent_pids: set[int] = set()
    calls: list[asyncio.Task[httpx.Response]] = []
    try:
        await until_serving(gateway)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60, trust_env=False) as client:

            def run(seconds: int) -> asyncio.Task[httpx.Response]:
                body = {"prompt": f"{seconds}s", "env": {"FAKE_AGENT_SECONDS": str(seconds)}}
                calls.append(asyncio.ensure_future(client.post("/completion", json=body)))
                return calls[-1]

            short = run(1)
            long = [run(60) for _ in range(3)]
            deadline = time.monotonic() + 15
            while len(agent_pids) < 4 and time.monotonic() < deadline:
                agent_pids |= agents_of(gateway.pid, "slow_agent")
                await asyncio.sleep(0.02)
            assert len(agent_pids) == 4, gateway.log_tail()

            gateway.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await asyncio.sleep(0.2)
            refused = await client.post("/completion", json={"prompt": "too late"})
            assert refused.status_code == 503, refused.text
            assert "shutting down" in refused.json()["error"]
            assert (await client.get("/health")).status_code == 200  # still answering meanwhile

            answers = await asyncio.wait_for(
                asyncio.gather(short, *long), GRACE_MS / 1000 + SLACK_S
            )
            answered = time.monotonic() - signalled
        finished = await asyncio.to_thread(gateway.process.wait, GRACE_MS / 1000 + 2 * SLACK_S)
        exited = time.monotonic() - signalled

        assert answers[0].status_code == 200, answers[0].text  # done within the grace
        for answer in answers[1:]:
            assert answer.status_code == 503, answer.text  # an answer (CONTRACT: shutting down)
            assert "interrupted" in answer.json()["error"]
        assert answered < GRACE_MS / 1000 + SLACK_S
        assert finished == 0, gateway.log_tail()
        assert exited < GRACE_MS / 1000 + 2 * SLACK_S
        assert not any(alive(pid) for pid in agent_pids)

        statuses = sorted(meta["status"] for meta in session_metas(tmp_path / "sessions").values())
        assert statuses == ["completed", "interrupted", "interrupted", "interrupted"]
        for meta in session_metas(tmp_path / "sessions").values():
            assert meta["runs"][-1]["status"] == meta["status"]
            assert "agent_pid" not in meta["runs"][-1]
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        if gateway.running():
            gateway.kill()
        kill_pids(agent_pids)
