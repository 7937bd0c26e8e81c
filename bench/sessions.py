"""The session store at scale: the gateway started on 10,000 sessions in the reference layout
(startup to a healthy `GET /health`, against an empty session directory), then
`GET /sessions?limit=50` latency (against `GET /health`) and `GET /sessions/:id` throughput
(against `GET /health` throughput) through REST, with the lightweight client of bench/rawhttp.py.

`session_history`: prompt latency on a session with 1,500 runs behind it against a fresh
session's, in the same gateway."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fixtures import ensure_session_store
from bench.rawhttp import RawClient, rate
from bench.results import Result, latency_summary
from bench.server import GatewayProcess, cpu_seconds, rss_kib, running_gateway
from bench.sizes import Context

HISTORY_RUNS = 1500
HISTORY_PROMPT_TARGET_MS = 10.0
STARTUP_TARGET_S = 3.0
LIST_P50_TARGET_MS = 10.0
GET_RATE_TARGET = 1500.0
ROUNDS = 5
"""Latency samples are taken in rounds (list, health, list, ...) so drift hits both."""
WARMUP = 20


async def _sequential(client: RawClient, target: str, count: int, into: list[int]) -> bytes:
    body = b""
    for _ in range(count):
        start = time.perf_counter_ns()
        status, body = await client.get(target)
        elapsed = time.perf_counter_ns() - start
        if status != 200:
            raise RuntimeError(f"GET {target}: {status} {body[:200]!r}")
        into.append(elapsed)
    return body


async def session_store(ctx: Context) -> list[Result]:
    sizes = ctx.sizes
    started = time.perf_counter()
    store, ids, generated = await asyncio.to_thread(
        ensure_session_store, ctx.data_dir, sizes.sessions
    )
    written_s = time.perf_counter() - started
    ctx.log(f"sessions: {len(ids)} sessions in {store} ({'written' if generated else 'reused'})")
    empty_starts: list[float] = []
    store_starts: list[float] = []
    rss: dict[str, Any] = {}
    measured: _Figures | None = None
    for round_ in range(sizes.startup_rounds):
        async with running_gateway(
            ctx.workdir / f"empty-{round_}", codex_bin=ctx.tiny_agent, max_concurrent=2
        ) as gateway:
            empty_starts.append(gateway.startup_s)
            rss["empty_idle_mib"] = round(rss_kib(gateway.pids, "VmRSS") / 1024, 2)
        last = round_ == sizes.startup_rounds - 1
        async with running_gateway(
            ctx.workdir / f"store-{round_}",
            codex_bin=ctx.tiny_agent,
            max_concurrent=2,
            sessions=store,
        ) as gateway:
            store_starts.append(gateway.startup_s)
            rss["store_idle_mib"] = round(rss_kib(gateway.pids, "VmRSS") / 1024, 2)
            if last:
                measured = await _requests(ctx, gateway, ids)
    ctx.log(f"sessions: startup empty {empty_starts} store {store_starts}")
    if measured is None:
        raise RuntimeError("startup_rounds must be at least 1")
    list_stats, health_stats = measured.list, measured.health
    count = f"{sizes.sessions:,}"
    return [
        Result(
            f"gateway startup, {count} sessions on disk",
            "s",
            round(statistics.median(store_starts), 2),
            STARTUP_TARGET_S,
            baseline=round(statistics.median(empty_starts), 2),
            baseline_label="empty session dir",
            details={
                "sessions": sizes.sessions,
                "store_startups_s": [round(s, 3) for s in store_starts],
                "empty_startups_s": [round(s, 3) for s in empty_starts],
                "store": str(store),
                "store_written_now": generated,
                "prepare_store_s": round(written_s, 2),
                "note": "median of the rounds; page cache warm (the first round reads the store)",
                **rss,
            },
        ),
        Result(
            f"GET /sessions?limit=50 p50, {count} sessions",
            "ms",
            list_stats["p50_ms"],
            LIST_P50_TARGET_MS,
            baseline=health_stats["p50_ms"],
            baseline_label="GET /health p50",
            details={
                "list": list_stats,
                "health": health_stats,
                "list_body_bytes": measured.list_bytes,
                "gateway_cpu_ms_per_list": measured.list_cpu_ms,
            },
        ),
        Result(
            f"GET /sessions/:id throughput, {sizes.concurrency} clients",
            "/s",
            round(measured.get_rate, 1),
            GET_RATE_TARGET,
            baseline=round(measured.health_rate, 1),
            baseline_label="GET /health",
            higher_is_better=True,
            details={
                "requests": sizes.get_requests,
                "concurrency": sizes.concurrency,
                "get_latency": measured.get_latency,
                "health_latency": measured.health_latency,
                "get_body_bytes": measured.get_bytes,
                "gateway_cpu_ms_per_get": measured.get_cpu_ms,
                "gateway_cpu_ms_per_health": measured.health_cpu_ms,
                "client_cpu_ms_per_get": measured.client_cpu_ms,
            },
        ),
    ]


@dataclass(frozen=True)
class _Figures:
    list: dict[str, float]
    health: dict[str, float]
    list_bytes: int
    list_cpu_ms: float
    get_rate: float
    health_rate: float
    get_latency: dict[str, float]
    health_latency: dict[str, float]
    get_bytes: int
    get_cpu_ms: float
    health_cpu_ms: float
    client_cpu_ms: float


async def _requests(ctx: Context, gateway: GatewayProcess, ids: list[str]) -> _Figures:
    sizes = ctx.sizes
    host, port = gateway.rest_address
    listing, health = "/sessions?limit=50", "/health"
    list_samples: list[int] = []
    health_samples: list[int] = []
    list_cpu = 0.0
    async with RawClient(host, port) as client:
        body = await _sequential(client, listing, WARMUP, [])
        listed = json.loads(body)
        if not isinstance(listed, list) or len(listed) != 50:
            raise RuntimeError(f"GET {listing} answered {str(listed)[:200]}")
        await _sequential(client, health, WARMUP, [])
        for round_ in range(ROUNDS):
            share = sizes.list_samples // ROUNDS + (round_ < sizes.list_samples % ROUNDS)
            before = cpu_seconds(*gateway.pids)
            await _sequential(client, listing, share, list_samples)
            list_cpu += cpu_seconds(*gateway.pids) - before
            await _sequential(client, health, share, health_samples)
        status, detail = await client.get(f"/sessions/{ids[0]}")
        if status != 200 or json.loads(detail).get("session_id") != ids[0]:
            raise RuntimeError(f"GET /sessions/:id answered {status} {detail[:200]!r}")
    shuffled = [f"/sessions/{session_id}" for session_id in ids]
    random.Random(3).shuffle(shuffled)  # noqa: S311  # which sessions, not secrets
    concurrency, total = sizes.concurrency, sizes.get_requests
    await rate(host, port, shuffled, min(total, 300), concurrency)  # warm-up
    await rate(host, port, [health], min(total, 300), concurrency)
    before, client_before = cpu_seconds(*gateway.pids), time.process_time()
    get_rate, get_latencies = await rate(host, port, shuffled, total, concurrency)
    get_cpu = cpu_seconds(*gateway.pids) - before
    client_cpu = time.process_time() - client_before
    before = cpu_seconds(*gateway.pids)
    health_rate, health_latencies = await rate(host, port, [health], total, concurrency)
    health_cpu = cpu_seconds(*gateway.pids) - before
    figures = _Figures(
        list=latency_summary(list_samples),
        health=latency_summary(health_samples),
        list_bytes=len(body),
        list_cpu_ms=round(list_cpu * 1000 / len(list_samples), 2),
        get_rate=get_rate,
        health_rate=health_rate,
        get_latency=latency_summary(get_latencies),
        health_latency=latency_summary(health_latencies),
        get_bytes=len(detail),
        get_cpu_ms=round(get_cpu * 1000 / total, 3),
        health_cpu_ms=round(health_cpu * 1000 / total, 3),
        client_cpu_ms=round(client_cpu * 1000 / total, 3),
    )
    ctx.log(f"sessions: {asdict(figures)}")
    return figures


async def session_history(ctx: Context) -> list[Result]:
    """Prompts (REST, sequential) on a session whose meta.json holds 1,500 run records, as the
    reference and the gateway before runs.jsonl wrote it, and on a fresh session, in rounds."""
    sizes = ctx.sizes
    workdir = ctx.workdir / "history"
    sessions_dir = workdir / "sessions"
    meta_path = _history_session(sessions_dir / "session-history", HISTORY_RUNS)
    meta_bytes_before = meta_path.stat().st_size
    samples: dict[str, list[int]] = {"history": [], "fresh": []}
    async with running_gateway(
        workdir, codex_bin=ctx.tiny_agent, max_concurrent=2, sessions=sessions_dir
    ) as gateway:
        host, port = gateway.rest_address
        async with RawClient(host, port) as client:
            status, body = await client.post_json("/completion", b'{"prompt": "hi"}')
            if status != 200:
                raise RuntimeError(f"POST /completion: {status} {body[:200]!r}")
            fresh = json.loads(body)["session_id"]
            targets = {"history": "/sessions/history/prompt", "fresh": f"/sessions/{fresh}/prompt"}

            async def prompts(name: str, count: int, into: list[int]) -> None:
                for _ in range(count):
                    start = time.perf_counter_ns()
                    status, body = await client.post_json(targets[name], b'{"prompt": "hi"}')
                    into.append(time.perf_counter_ns() - start)
                    if status != 200:
                        raise RuntimeError(f"POST {targets[name]}: {status} {body[:200]!r}")

            first: list[int] = []
            await prompts("history", 1, first)  # the one that moves the old records
            for name in targets:
                await prompts(name, sizes.warmup, [])
            count = max(sizes.iterations // 3, ROUNDS)
            for round_ in range(ROUNDS):
                share = count // ROUNDS + (round_ < count % ROUNDS)
                for name in targets:
                    await prompts(name, share, samples[name])
    stats = {name: latency_summary(values) for name, values in samples.items()}
    ctx.log(f"history: {stats}")
    return [
        Result(
            f"prompt p50, session with {HISTORY_RUNS:,} runs",
            "ms",
            stats["history"]["p50_ms"],
            HISTORY_PROMPT_TARGET_MS,
            baseline=stats["fresh"]["p50_ms"],
            baseline_label="fresh session p50",
            details={
                "history": stats["history"],
                "fresh": stats["fresh"],
                "first_prompt_ms": round(first[0] / 1e6, 2),
                "meta_json_bytes_before": meta_bytes_before,
                "meta_json_bytes_after": meta_path.stat().st_size,
                "note": "the history session starts with every record in meta.json; its first "
                "prompt (first_prompt_ms, not in the figure) moves them to runs.jsonl",
            },
        )
    ]


def _history_session(directory: Path, runs: int) -> Path:
    """A session in the reference's layout whose meta.json holds `runs` finished run records."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    stamp = "2025-01-01T00:00:00.000Z"
    records = [
        {
            "run_id": f"run-{n:05d}",
            "status": "completed",
            "started_at": stamp,
            "prompt_preview": f"prompt {n}: " + "p" * 380,
            "timeout_ms": 120000,
            "resume_session_id": None,
            "completed_at": stamp,
            "duration_ms": 1000,
            "content_preview": "c" * 300,
            "usage": {"input_tokens": 1000, "output_tokens": 100},
        }
        for n in range(runs)
    ]
    meta = {
        "session_id": "history",
        "codex_session_id": None,
        "created_at": stamp,
        "updated_at": stamp,
        "last_activity_at": stamp,
        "status": "idle",
        "model": None,
        "runs": records,
        "secure": False,
    }
    path = directory / "meta.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    for name in ("stdout.log", "stderr.log", "events.jsonl"):
        (directory / name).touch()
    return path
