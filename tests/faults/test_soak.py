"""A soak: SOAK_SECONDS (default 600) of mixed traffic against one gateway (completions and
continued sessions with the echo agent, session lists and details, searches, tails, followed
tails that the client abandons, status) while the resident memory and open file descriptors of
both its processes (gRPC and the REST bridge) are sampled from /proc every second. Neither may
grow in either, and the bridge is never restarted: the peak of the last tenth of the run stays
within a margin of the peak of the second tenth (the first is warm-up). Every answer is a 200, or
a 409/429 where a run meets a busy session or the concurrency limit.

Runs are paced (about two a second) so that the data the gateway legitimately keeps (each
session's meta and run records live in its index) grows by well under the margin.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.faults.spawned import bridges_of, gateway_env, open_fds, proc_status_kib, running

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
POOL = 8
RSS_MARGIN_KIB = 12 * 1024
RSS_MARGIN_RATIO = 0.10
FD_MARGIN = 8


@pytest.mark.slow
@pytest.mark.timeout(int(SOAK_SECONDS) + 300)
async def test_memory_and_descriptors_stay_flat_under_mixed_traffic(tmp_path: Path) -> None:
    env = gateway_env(
        tmp_path, "echo_agent.py", CODEX_GATEWAY_MAX_CONCURRENT="4", CODEX_GATEWAY_LOG_LEVEL="0"
    )
    rng = random.Random(7)
    answers: Counter[tuple[str, int]] = Counter()
    # Per process: (seconds in, VmRSS KiB, open fds).
    samples: dict[str, list[tuple[float, int, int]]] = {"gateway": [], "bridge": []}
    async with (
        running(env, tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60, trust_env=False) as client,
    ):
        pool = []
        for n in range(POOL):
            created = await client.post("/completion", json={"prompt": f"pool {n} needle"})
            assert created.status_code == 200, created.text
            pool.append(created.json()["session_id"])
        started = time.monotonic()
        deadline = started + SOAK_SECONDS

        def record(kind: str, response: httpx.Response, allowed: tuple[int, ...] = (200,)) -> None:
            answers[(kind, response.status_code)] += 1
            assert response.status_code in allowed, (kind, response.status_code, response.text)

        (bridge,) = bridges_of(gateway.pid)
        processes = {"gateway": gateway.pid, "bridge": bridge}

        async def sample() -> None:
            while time.monotonic() < deadline:
                for name, pid in processes.items():
                    rss, fds = proc_status_kib(pid, "VmRSS"), open_fds(pid)
                    samples[name].append((time.monotonic() - started, rss, fds))
                await asyncio.sleep(1)

        async def runs() -> None:
            for n in itertools.count():
                if time.monotonic() >= deadline:
                    return
                if n % 4 == 0:
                    response = await client.post("/completion", json={"prompt": f"new {n}"})
                elif n % 4 == 1:
                    body = {"prompt": f"stream {n}", "session_id": rng.choice(pool)}
                    response = await client.post("/completion/stream", json=body)
                else:
                    path = f"/sessions/{rng.choice(pool)}/{rng.choice(['prompt', 'nudge'])}"
                    response = await client.post(path, json={"prompt": f"again {n} needle"})
                record("run", response, (200, 409, 429))
                await asyncio.sleep(0.5)

        async def reads() -> None:
            while time.monotonic() < deadline:
                sid = rng.choice(pool)
                kind, path, params = rng.choice(
                    [
                        ("list", "/sessions", {}),
                        ("detail", f"/sessions/{sid}", {"include_events": "true"}),
                        ("search", f"/sessions/{sid}/search", {"q": "needle"}),
                        ("fuzzy", f"/sessions/{sid}/search", {"q": "needel", "fuzzy": "true"}),
                        ("tail", f"/sessions/{sid}/tail", {"tail_lines": "20"}),
                        ("status", "/status", {}),
                        ("info", "/", {}),
                    ]
                )
                record(kind, await client.get(path, params=params))
                await asyncio.sleep(0.01)

        async def abandoned_follows() -> None:
            while time.monotonic() < deadline:
                path = f"/sessions/{rng.choice(pool)}/tail"
                params = {"follow": "true", "tail_lines": "5"}
                async with client.stream("GET", path, params=params) as response:
                    answers[("follow", response.status_code)] += 1
                    assert response.status_code == 200
                    with_timeout = asyncio.timeout(rng.uniform(0.2, 2.0))
                    try:
                        async with with_timeout:
                            async for _ in response.aiter_lines():
                                pass
                    except TimeoutError:
                        pass  # the client leaves a live tail, as clients do

        await asyncio.gather(sample(), runs(), reads(), reads(), abandoned_follows())
        assert gateway.running(), gateway.log_tail()
        assert bridges_of(gateway.pid) == {bridge}, "the bridge died and was restarted"

    for name, series in samples.items():
        warm, last = window(series, 0.1, 0.2), window(series, 0.9, 1.0)
        assert warm and last, series
        rss_warm, rss_last = max(s[1] for s in warm), max(s[1] for s in last)
        fds_warm, fds_last = max(s[2] for s in warm), max(s[2] for s in last)
        report = (
            f"{name}: VmRSS {rss_warm} -> {rss_last} KiB, fds {fds_warm} -> {fds_last}, "
            f"{sum(answers.values())} requests: {dict(answers)}"
        )
        assert rss_last <= rss_warm * (1 + RSS_MARGIN_RATIO) + RSS_MARGIN_KIB, report
        assert fds_last <= fds_warm + FD_MARGIN, report
    assert answers[("run", 200)] > SOAK_SECONDS / 2, dict(answers)


def window(
    series: list[tuple[float, int, int]], low: float, high: float
) -> list[tuple[float, int, int]]:
    """The samples taken between these fractions of the soak."""
    return [s for s in series if low * SOAK_SECONDS <= s[0] < high * SOAK_SECONDS]
