"""Load: 200 simultaneous POST /completion against CODEX_GATEWAY_MAX_CONCURRENT=4, each run taking
a second. /proc is sampled every ~20 ms throughout: never more than 4 agents are alive at once.
Every request is answered 200 or the documented 429, and afterwards every slot is free.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.faults.spawned import agents_of, gateway_env, running, sampling

REQUESTS = 200
MAX_CONCURRENT = 4


async def storms(tmp_path: Path, waves: int) -> None:
    """`waves` storms of REQUESTS simultaneous requests each, one after another."""
    env = gateway_env(tmp_path, "slow_agent.py", CODEX_GATEWAY_MAX_CONCURRENT=str(MAX_CONCURRENT))
    async with running(env, tmp_path) as gateway:
        limits = httpx.Limits(max_connections=REQUESTS + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=gateway.url, limits=limits, timeout=60, trust_env=False
        ) as client:
            body = {"prompt": "load", "env": {"FAKE_AGENT_SECONDS": "1"}}
            with sampling(0.02, lambda: len(agents_of(gateway.pid, "slow_agent"))) as alive:
                responses: list[httpx.Response] = []
                for _ in range(waves):
                    wave = (client.post("/completion", json=body) for _ in range(REQUESTS))
                    responses += await asyncio.wait_for(asyncio.gather(*wave), 60)
                for _ in range(100):  # until the last agents are gone
                    if not agents_of(gateway.pid, "slow_agent"):
                        break
                    await asyncio.sleep(0.05)
            status = (await client.get("/status")).json()

    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}, sorted(set(codes))
    assert codes.count(200) >= MAX_CONCURRENT
    for response in responses:
        if response.status_code == 429:
            body = response.json()
            assert {k: body[k] for k in ("error", "retry_after", "active", "max")} == {
                "error": "Too many concurrent requests",
                "retry_after": 5,
                "active": MAX_CONCURRENT,
                "max": MAX_CONCURRENT,
            }
            assert response.headers["retry-after"] == "5"
        else:
            assert response.json()["status"] == "completed"
    assert len(alive) > 20, "the sampler did not run"
    assert max(alive) == MAX_CONCURRENT, f"agents alive at once, sampled: {max(alive)}"
    assert status["concurrency"] == {
        "active": 0,
        "max": MAX_CONCURRENT,
        "available": MAX_CONCURRENT,
        "waiting": 0,
    }


async def test_a_storm_never_runs_more_agents_than_the_limit(tmp_path: Path) -> None:
    await storms(tmp_path, waves=1)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_storm_after_storm_never_runs_more_agents_than_the_limit(tmp_path: Path) -> None:
    await storms(tmp_path, waves=60)
