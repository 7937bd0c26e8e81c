"""Resuming a tail: a gRPC follower that drops and comes back with `after_seq` during a long run.

The gateway's codex is bench/agents/stamp_agent.py writing `RESUME_LINES` lines 1 ms apart. A
follower reads a random number of items (50-500), drops the call, stays away 5-20 ms (items
pile up meanwhile), and reconnects with `TailSession(after_seq=<last seq seen>, follow=true)`,
until the run's `run_finished` notice. Measured:

- lost and duplicated items: what the follower received, against the whole run read again at
  the end (`after_seq = first_seq - 1`, not following); both must be 0;
- resume latency: from opening the resumed call to its first item (the items written while it
  was away, read from the session's log). Baseline: the same follower opening an ordinary tail
  (`tail_lines=1`, not following) and receiving its first message, in the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path

import grpc
import httpx

from bench.results import Result, latency_summary
from bench.server import running_gateway
from bench.sizes import Context
from codex_gateway.v1 import gateway_pb2_grpc, sessions_pb2

STAMP_AGENT = Path(__file__).resolve().parent / "agents" / "stamp_agent.py"
RESUME_LINES = 10_000
P50_TARGET_MS = 5.0
RUN_TIMEOUT_S = 180.0


def _key(message: sessions_pb2.TailSessionResponse) -> tuple[int, str]:
    return message.seq, message.SerializeToString(deterministic=True).hex()


async def _follow(
    stub: gateway_pb2_grpc.GatewayServiceStub, session_id: str, after: int, seed: int
) -> tuple[list[tuple[int, str]], list[int], list[int]]:
    """Follow, dropping and resuming, until the run ends: the items received, the resume
    latencies and the plain-tail latencies (ns)."""
    chance = random.Random(seed)  # noqa: S311  # when to drop, not a secret
    received: list[tuple[int, str]] = []
    resumed: list[int] = []
    plain: list[int] = []
    while True:
        # The baseline: an ordinary tail's first message.
        opened = time.perf_counter_ns()
        call = stub.TailSession(
            sessions_pb2.TailSessionRequest(session_id=session_id, tail_lines=1)
        )
        await call.read()
        plain.append(time.perf_counter_ns() - opened)
        call.cancel()
        opened = time.perf_counter_ns()
        request = sessions_pb2.TailSessionRequest(
            session_id=session_id,
            follow=True,
            include_events=True,
            after_seq=received[-1][0] if received else after,
        )
        call = stub.TailSession(request)
        budget = chance.randint(50, 500)
        first = True
        async for message in call:
            if not message.HasField("seq"):
                continue  # following
            if first and received:  # a resume (the first call waits for the run to start)
                resumed.append(time.perf_counter_ns() - opened)
            first = False
            received.append(_key(message))
            if message.WhichOneof("kind") == "notice" and message.notice.kind == "run_finished":
                call.cancel()
                return received, resumed, plain
            budget -= 1
            if budget == 0:
                break
        call.cancel()
        await asyncio.sleep(chance.uniform(0.005, 0.020))


async def resume_latency(ctx: Context) -> list[Result]:
    env = {"FAKE_AGENT_LINES": str(RESUME_LINES), "FAKE_AGENT_PAUSE_MS": "1"}
    async with (
        running_gateway(ctx.workdir / "resume", codex_bin=STAMP_AGENT, max_concurrent=2) as gw,
        httpx.AsyncClient(base_url=gw.rest_url, timeout=RUN_TIMEOUT_S) as client,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)  # type: ignore[no-untyped-call]  # generated
        first = await client.post(
            "/completion", json={"prompt": "start", "env": {"FAKE_AGENT_LINES": "1"}}
        )
        if first.status_code != 200:
            raise RuntimeError(f"POST /completion: {first.status_code} {first.text[:300]}")
        session_id, after = first.json()["session_id"], first.json()["last_seq"]
        follower = asyncio.create_task(_follow(stub, session_id, after, seed=13))
        body = {"prompt": "go", "session_id": session_id, "env": env}
        async with asyncio.timeout(RUN_TIMEOUT_S):
            run = await client.post("/completion", json=body)
            received, resumed, plain = await follower
        if run.status_code != 200:
            raise RuntimeError(f"POST /completion: {run.status_code} {run.text[:300]}")
        result = run.json()
        whole_call = stub.TailSession(
            sessions_pb2.TailSessionRequest(
                session_id=session_id, include_events=True, after_seq=result["first_seq"] - 1
            )
        )
        whole = [_key(m) async for m in whole_call if m.HasField("seq")]
    seqs = [seq for seq, _ in received]
    duplicated = len(seqs) - len(set(seqs))
    lost = len(set(whole) - set(received))
    resume_stats, plain_stats = latency_summary(resumed), latency_summary(plain)
    details = {
        "resume": resume_stats,
        "plain_tail": plain_stats,
        "items": len(whole),
        "received": len(received),
        "reconnects": len(resumed),
        "in_order": seqs == sorted(seqs),
        "lines": RESUME_LINES,
        "loadavg": os.getloadavg()[0],
    }
    ctx.log(f"resume: {json.dumps(details)}")
    return [
        Result(
            f"tail resumed with after_seq: items lost or repeated ({len(resumed)} resumes, "
            f"{len(whole)} items)",
            "items",
            float(lost + duplicated + (0 if details["in_order"] else 1)),
            0.0,
            details=details,
        ),
        Result(
            "tail resume latency p50 (reconnect to first missed item), gRPC",
            "ms",
            resume_stats["p50_ms"],
            P50_TARGET_MS,
            baseline=plain_stats["p50_ms"],
            baseline_label="plain tail_lines=1 p50",
        ),
    ]
