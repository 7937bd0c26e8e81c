"""Live tail latency: from an agent writing a line to a gRPC `TailSession(follow=true)` follower
receiving it, against the same agent's lines read straight from a pipe.

The gateway's codex is bench/agents/stamp_agent.py: every line carries `time.time_ns()` taken
just before it is written and flushed; the follower (grpc.aio, in this process, which does
nothing else meanwhile but await the run's `POST /completion`) takes `time.time_ns()` when each
line arrives. Both clocks are the same CLOCK_REALTIME of one machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path

import grpc
import httpx

from bench.results import Result, latency_summary
from bench.server import running_gateway
from bench.sizes import Context
from codex_gateway.v1 import gateway_pb2_grpc, sessions_pb2

STAMP_AGENT = Path(__file__).resolve().parent / "agents" / "stamp_agent.py"
P50_TARGET_MS = 5.0
P99_TARGET_MS = 20.0
_STAMP = re.compile(rb"stamp (\d+) n (\d+)")
RUN_TIMEOUT_S = 120.0


def _pipe_latencies(env: dict[str, str], lines: int) -> list[int]:
    """The baseline: the agent run directly, its stdout read line by line as it arrives."""
    latencies: list[int] = []
    with subprocess.Popen(  # noqa: S603  # our own agent, fixed argv
        [str(STAMP_AGENT), "exec", "--json", "-"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=env,
    ) as process:
        assert process.stdout is not None  # noqa: S101  # piped
        for line in process.stdout:
            received = time.time_ns()
            found = _STAMP.search(line)
            if found:
                latencies.append(received - int(found.group(1)))
    if process.returncode != 0 or len(latencies) != lines:
        raise RuntimeError(f"stamp agent: exit {process.returncode}, {len(latencies)} lines")
    return latencies


async def follow_run(
    client: httpx.AsyncClient,
    stub: gateway_pb2_grpc.GatewayServiceStub,
    session_id: str,
    env: dict[str, str],
    lines: int,
) -> list[int]:
    """One run continuing the session while a follower tails it: each line's latency (ns)."""
    call = stub.TailSession(
        sessions_pb2.TailSessionRequest(session_id=session_id, tail_lines=1, follow=True)
    )
    latencies: list[int] = []
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            messages = aiter(call)
            async for message in messages:  # the tail of the file, then `following`
                if message.WhichOneof("kind") == "notice" and message.notice.kind == "following":
                    break
            body = {"prompt": "go", "session_id": session_id, "env": env}
            run = asyncio.create_task(client.post("/completion", json=body))
            async for message in messages:
                received = time.time_ns()
                kind = message.WhichOneof("kind")
                if kind == "line":
                    found = _STAMP.search(message.line.text.encode())
                    if found:
                        latencies.append(received - int(found.group(1)))
                elif kind == "notice" and message.notice.kind in ("run_finished", "lagged"):
                    break
            response = await run
    finally:
        call.cancel()
    if response.status_code != 200:
        raise RuntimeError(f"POST /completion: {response.status_code} {response.text[:300]}")
    if len(latencies) != lines:
        raise RuntimeError(f"the follower received {len(latencies)} of {lines} lines")
    return latencies


async def tail_latency(ctx: Context) -> list[Result]:
    sizes = ctx.sizes
    env = {
        "FAKE_AGENT_LINES": str(sizes.tail_lines),
        "FAKE_AGENT_PAUSE_MS": str(sizes.tail_pause_ms),
    }
    followed: list[int] = []
    piped: list[int] = []
    async with running_gateway(
        ctx.workdir / "tail", codex_bin=STAMP_AGENT, max_concurrent=2
    ) as gateway:
        pipe_env = {**gateway.agent_env, **env}
        async with (
            httpx.AsyncClient(base_url=gateway.rest_url, timeout=RUN_TIMEOUT_S) as client,
            grpc.aio.insecure_channel(gateway.grpc_target) as channel,
        ):
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)  # type: ignore[no-untyped-call]  # generated
            first = await client.post(
                "/completion", json={"prompt": "start", "env": {"FAKE_AGENT_LINES": "1"}}
            )
            if first.status_code != 200:
                raise RuntimeError(f"POST /completion: {first.status_code} {first.text[:300]}")
            session_id = first.json()["session_id"]
            await follow_run(client, stub, session_id, {"FAKE_AGENT_LINES": "50"}, 50)  # warm-up
            for _ in range(sizes.tail_rounds):
                piped += await asyncio.to_thread(_pipe_latencies, pipe_env, sizes.tail_lines)
                followed += await follow_run(client, stub, session_id, env, sizes.tail_lines)
            detail = (await client.get(f"/sessions/{session_id}")).json()
    follow_stats, pipe_stats = latency_summary(followed), latency_summary(piped)
    details = {
        "follower": follow_stats,
        "pipe": pipe_stats,
        "lines_per_run": sizes.tail_lines,
        "pause_ms": sizes.tail_pause_ms,
        "runs": sizes.tail_rounds,
        "session_runs": detail.get("runs"),
        "loadavg": os.getloadavg()[0],
    }
    ctx.log(f"tail: {json.dumps(details)}")
    label = f"{sizes.tail_lines} lines {sizes.tail_pause_ms} ms apart"
    return [
        Result(
            f"live tail latency p50, gRPC follower ({label})",
            "ms",
            follow_stats["p50_ms"],
            P50_TARGET_MS,
            baseline=pipe_stats["p50_ms"],
            baseline_label="pipe reader p50",
            details=details,
        ),
        Result(
            "live tail latency p99, gRPC follower",
            "ms",
            follow_stats["p99_ms"],
            P99_TARGET_MS,
            baseline=pipe_stats["p99_ms"],
            baseline_label="pipe reader p99",
        ),
    ]
