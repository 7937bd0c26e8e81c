"""The gRPC server restarting under the bridge: `python -m gateway grpc` killed (SIGKILL, then
SIGTERM) and started again on the same port, while probers call through the REST bridge.

GET /status is idempotent: the bridge retries UNAVAILABLE (four attempts, ~0.8 s of backoff), so
it succeeds when the upstream is back in time, else it is a clean 503 after its retries. (Whether
a given restart fits in that window is timing; tests/bridge/test_http.py pins the retry itself
against a scripted upstream.) POST /completion is not retried: a clean 503 at once while the
upstream is down. Never a 500, never a hang, and both work again afterwards.

A call the stopping upstream had received but not yet taken up is cancelled by grpc (CANCELLED,
no status of the gateway's): the bridge answers it 503 like the rest of the restart, never 499
(the caller did not leave). The restart test met that race by chance under load; the held
gateway (tests/faults/held.py) stops the server at exactly that point, for a unary call and a
stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bridge.upstream import RETRY_ATTEMPTS, RETRY_BASE_S
from tests.fakes import AGENTS_DIR
from tests.faults.held import held_gateway
from tests.faults.spawned import Spawned, gateway_env, spawn, until_serving
from tests.harness import base_config, free_port, running_bridge

HANG_S = 10.0  # no answer within this is a hang


@dataclass
class Probe:
    path: str
    started: float
    elapsed: float
    status: int | str  # the HTTP status, or the client error's name


async def probe(client: httpx.AsyncClient, method: str, path: str, log: list[Probe]) -> None:
    started = time.monotonic()
    try:
        response = await client.request(
            method, path, json={"prompt": "probe"} if method == "POST" else None
        )
        status: int | str = response.status_code
        if status >= 400:
            assert "error" in response.json(), response.text
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    log.append(Probe(path, started, time.monotonic() - started, status))


async def probers(client: httpx.AsyncClient, stop: asyncio.Event, log: list[Probe]) -> None:
    while not stop.is_set():
        await asyncio.gather(
            probe(client, "GET", "/status", log), probe(client, "POST", "/completion", log)
        )
        await asyncio.sleep(0.02)


async def test_the_bridge_rides_out_an_upstream_restart(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, "echo_agent.py", CODEX_GATEWAY_MAX_CONCURRENT="8")
    grpc_port = free_port()

    def start() -> Spawned:
        return spawn(env, tmp_path / "grpc.log", command="grpc", grpc_port=grpc_port)

    upstream = start()
    log: list[Probe] = []
    downtimes: list[tuple[float, float]] = []
    try:
        await until_serving(upstream)
        async with (
            running_bridge(f"127.0.0.1:{grpc_port}") as url,
            httpx.AsyncClient(base_url=url, timeout=HANG_S, trust_env=False) as client,
        ):
            stop = asyncio.Event()
            prober = asyncio.ensure_future(probers(client, stop, log))
            try:
                await asyncio.sleep(0.5)
                for how in ("kill", "stop"):
                    down = time.monotonic()
                    await asyncio.to_thread(getattr(upstream, how))
                    await asyncio.sleep(0.3)  # stay down a little: calls must meet the gap
                    upstream = start()
                    await until_serving(upstream)
                    downtimes.append((down, time.monotonic()))
                    await asyncio.sleep(1.0)
            finally:
                stop.set()
                await prober
            after = [await client.get("/status"), await client.post("/completion", json={})]
            assert after[0].status_code == 200
            assert after[1].status_code == 400  # reached the gateway: a missing prompt
    finally:
        await asyncio.to_thread(upstream.stop)

    summary = Counter((p.path, p.status) for p in log)
    assert all(isinstance(p.status, int) for p in log), f"a dropped or hung call: {summary}"
    assert {p.status for p in log} <= {200, 503}, summary
    assert max(p.elapsed for p in log) < 5, max(log, key=lambda p: p.elapsed)
    # A GET gave up only after its retries (~0.8 s of backoff); a POST was never retried.
    gave_up = [p for p in log if p.path == "/status" and p.status == 503]
    assert all(p.elapsed > 0.3 for p in gave_up), gave_up
    refused = [p for p in log if p.path == "/completion" and p.status == 503]
    # (Not a wall-clock target: a POST retried to the end would have slept at least this long.)
    least_backoff_s = sum(RETRY_BASE_S * 2**n for n in range(RETRY_ATTEMPTS - 1))
    assert all(p.elapsed < least_backoff_s for p in refused), refused

    def during(p: Probe) -> bool:
        return any(start <= p.started <= end for start, end in downtimes)

    assert any(p in refused and during(p) for p in log), summary  # the gap was met
    last = {p.path: p.status for p in sorted(log, key=lambda p: p.started)}
    assert last == {"/status": 200, "/completion": 200}, summary


@pytest.mark.parametrize(
    "path",
    [pytest.param("/completion", id="unary"), pytest.param("/completion/stream", id="stream")],
)
async def test_a_call_the_stopping_upstream_never_took_up_is_a_503(
    tmp_path: Path, path: str
) -> None:
    config = base_config(tmp_path, codex_bin=AGENTS_DIR / "echo_agent.py")
    with held_gateway(config) as upstream:
        async with (
            running_bridge(upstream.target) as url,
            httpx.AsyncClient(base_url=url, timeout=HANG_S, trust_env=False) as client,
        ):
            assert (await client.get("/health")).status_code == 200
            received = upstream.calls_started()
            upstream.hold()
            # grpc's core hands this one to the held loop (which asked for a call of this
            # method in advance)...
            taken = asyncio.ensure_future(client.post(path, json={"prompt": "taken up"}))
            await upstream.until_calls_started(received + 1)
            # ...and keeps this one pending: the stop cancels it.
            pending = asyncio.ensure_future(client.post(path, json={"prompt": "never run"}))
            await upstream.until_calls_started(received + 2)
            stopped = upstream.stop_and_release()
            response = await pending
            await asyncio.wrap_future(stopped)
            assert (await taken).status_code == 200
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "UNAVAILABLE", body
    assert "shutting down" in body["error"], body
