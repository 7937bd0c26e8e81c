"""Completion cost with a near-zero-cost agent: the gateway's overhead per run over spawning the
agent directly (REST and gRPC, sequential), throughput at N concurrent clients, and the gateway's
RSS idle and at the peak of that load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
import httpx

from bench.rawhttp import RawClient
from bench.results import Result, latency_summary
from bench.server import GatewayProcess, cpu_seconds, cpu_split, rss_kib, running_gateway
from bench.sizes import Context
from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2

REST_OVERHEAD_TARGET_MS = 2.0
GRPC_OVERHEAD_TARGET_MS = 1.5
THROUGHPUT_TARGET = 400.0
IDLE_RSS_TARGET_MIB = 150.0
PEAK_RSS_TARGET_MIB = 200.0
ROUNDS = 5
"""Overhead samples are taken in rounds (direct, REST, gRPC, direct, ...) so drift hits all."""
PROMPT = "hi"
REST_BODY = b'{"prompt": "hi"}'
JSON_HEADERS = {"content-type": "application/json"}

Call = Callable[[], Awaitable[None]]


def agent_argv(agent: Path, workspace: Path) -> list[str]:
    """The argv the gateway gives codex for a plain run (gateway/agent/codex.py `argv`)."""
    return [
        str(agent),
        *("exec", "--json", "--color", "never", "--skip-git-repo-check"),
        *("--sandbox", "workspace-write", "--cd", str(workspace), "--", "-"),
    ]


def direct_spawn(argv: list[str], env: dict[str, str], cwd: Path) -> Call:
    """Spawn the agent as the gateway does (pipes, own session, prompt on stdin, stderr drained,
    stdout read to EOF), without the gateway."""
    stdin = PROMPT.encode()

    async def feed(proc: asyncio.subprocess.Process) -> None:
        if proc.stdin is not None:
            proc.stdin.write(stdin)
            await proc.stdin.drain()
            proc.stdin.close()
            await proc.stdin.wait_closed()

    async def drain(stream: asyncio.StreamReader | None) -> bytes:
        data = bytearray()
        while stream is not None and (chunk := await stream.read(65_536)):
            data += chunk
        return bytes(data)

    async def call() -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            limit=65_536,
        )
        _, out, _ = await asyncio.gather(feed(proc), drain(proc.stdout), drain(proc.stderr))
        if await proc.wait() != 0 or b"turn.completed" not in out:
            raise RuntimeError(f"the agent failed: exit {proc.returncode}")

    return call


def rest_completion(client: RawClient) -> Call:
    """POST /completion on one keep-alive connection of the lean client (bench/rawhttp.py)."""

    async def call() -> None:
        status, body = await client.post_json("/completion", REST_BODY)
        if status != 200 or json.loads(body).get("output") != "ok":
            raise RuntimeError(f"POST /completion: {status} {body[:200]!r}")

    return call


def httpx_completion(client: httpx.AsyncClient) -> Call:
    """The same through httpx, whose own cost (~1 ms of CPU a request) is in its latency."""

    async def call() -> None:
        response = await client.post("/completion", content=REST_BODY, headers=JSON_HEADERS)
        if response.status_code != 200 or response.json().get("output") != "ok":
            raise RuntimeError(f"POST /completion: {response.status_code} {response.text[:200]}")

    return call


def grpc_completion(stub: gateway_pb2_grpc.GatewayServiceStub) -> Call:
    request = runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=PROMPT))

    async def call() -> None:
        response = await stub.Complete(request)
        if response.result.output != "ok":
            raise RuntimeError(f"Complete answered {response.result.output!r}")

    return call


async def timed(call: Call, count: int, into: list[int]) -> None:
    for _ in range(count):
        start = time.perf_counter_ns()
        await call()
        into.append(time.perf_counter_ns() - start)


async def throughput(calls: Sequence[Call], total: int) -> tuple[float, list[int]]:
    """Completions per second of one client per call (each sequential) sharing `total` calls,
    and each latency."""
    remaining = total
    latencies: list[int] = []

    async def client(call: Call) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter_ns()
            await call()
            latencies.append(time.perf_counter_ns() - start)

    start = time.perf_counter_ns()
    async with asyncio.TaskGroup() as group:
        for call in calls:
            group.create_task(client(call))
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    return total / elapsed_s, latencies


def _http_client(gateway: GatewayProcess, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=gateway.rest_url, limits=limits, timeout=60)


TMPFS = Path("/dev/shm")  # noqa: S108  # a RAM filesystem, not a shared temporary file


async def overhead(ctx: Context) -> list[Result]:
    """The overhead rows with the sessions on the benchmark's disk, and again on tmpfs: the
    gateway's own cost apart from the filesystem's (this VM's ext4 has no journal, and its file
    creations slow down for minutes after many deletions; see BENCHMARKS.md)."""
    rows = await overhead_rows(ctx, ctx.workdir / "overhead", "")
    if TMPFS.is_dir() and not ctx.workdir.is_relative_to(TMPFS):  # noqa: ASYNC240  # one stat
        scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-", dir=TMPFS))
        try:
            rows += await overhead_rows(ctx, scratch, ", sessions on tmpfs")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return rows


async def overhead_rows(
    ctx: Context,
    workdir: Path,
    label: str,
    *,
    settings: dict[str, str] | None = None,
    targets: tuple[float, float] = (REST_OVERHEAD_TARGET_MS, GRPC_OVERHEAD_TARGET_MS),
) -> list[Result]:
    """The REST and gRPC rows (`targets`) of one gateway (`settings`: more of its variables)."""
    sizes = ctx.sizes
    async with running_gateway(
        workdir, codex_bin=ctx.tiny_agent, max_concurrent=2, settings=settings
    ) as gateway:
        direct = direct_spawn(
            agent_argv(ctx.tiny_agent, gateway.workspace), gateway.agent_env, gateway.workspace
        )
        host, port = gateway.rest_address
        async with (
            RawClient(host, port) as raw,
            _http_client(gateway, 4) as client,
            grpc.aio.insecure_channel(gateway.grpc_target) as channel,
        ):
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)  # type: ignore[no-untyped-call]  # generated
            paths = {
                "direct": direct,
                "rest": rest_completion(raw),
                "grpc": grpc_completion(stub),
                "rest_httpx": httpx_completion(client),
            }
            samples: dict[str, list[int]] = {name: [] for name in paths}
            for call in paths.values():
                await timed(call, sizes.warmup, [])
            health: list[int] = []
            # CPU seconds per path: the gateway's (user, system), and this client's.
            cpu = {name: [0.0, 0.0, 0.0] for name in paths}
            for round_ in range(ROUNDS):
                share = sizes.iterations // ROUNDS + (round_ < sizes.iterations % ROUNDS)
                for name, call in paths.items():
                    user, system = cpu_split(*gateway.pids)
                    client_before = time.process_time()
                    await timed(call, share, samples[name])
                    user_after, system_after = cpu_split(*gateway.pids)
                    cpu[name][0] += user_after - user
                    cpu[name][1] += system_after - system
                    cpu[name][2] += time.process_time() - client_before
            await timed(_health(client), min(sizes.iterations, 300), health)
    stats: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        user, system, client_cpu = (seconds * 1000 / len(values) for seconds in cpu[name])
        stats[name] = {
            **latency_summary(values),
            "gateway_cpu_ms_per_call": round(user + system, 2),
            "gateway_system_cpu_ms_per_call": round(system, 2),
            "client_cpu_ms_per_call": round(client_cpu, 2),
        }
    health_stats = latency_summary(health)
    ctx.log(f"overhead{label}: {stats} health={health_stats}")
    direct_p50 = stats["direct"]["p50_ms"]

    def row(name: str, path: str, target: float) -> Result:
        return Result(
            name + label,
            "ms",
            round(stats[path]["p50_ms"] - direct_p50, 2),
            target,
            baseline=direct_p50,
            baseline_label="direct spawn p50",
            details={
                path: stats[path],
                "direct": stats["direct"],
                "rest_httpx": stats["rest_httpx"],
                "rest_health": health_stats,
                "client": "bench/rawhttp.py (REST), grpc.aio (gRPC); httpx in rest_httpx",
                "scratch": str(workdir),
            },
        )

    return [
        row("completion overhead p50, REST", "rest", targets[0]),
        row("completion overhead p50, gRPC", "grpc", targets[1]),
    ]


METRICS_COST_TARGET_MS = 0.1


async def metrics_cost(ctx: Context) -> list[Result]:
    """The overhead rows of one build with metrics on and off (CODEX_GATEWAY_METRICS), and the
    cost of metrics: the difference of the two p50s (issue 16: within 0.1 ms). Tracing is off."""
    rows: dict[str, list[Result]] = {}
    for state in ("off", "on", "off again"):  # off twice: how far the same build drifts
        settings = {"CODEX_GATEWAY_METRICS": "false" if state != "on" else "true"}
        found = await overhead_rows(
            ctx,
            ctx.workdir / f"metrics-{state.replace(' ', '-')}",
            f", metrics {state}",
            settings=settings,
        )
        rows[state] = found
    results = [*rows["off"], *rows["on"], *rows["off again"]]
    for index, protocol in enumerate(("REST", "gRPC")):
        off = min(rows["off"][index].measured or 0.0, rows["off again"][index].measured or 0.0)
        on = rows["on"][index].measured or 0.0
        results.append(
            Result(
                f"metrics cost p50, {protocol} (metrics on - off)",
                "ms",
                round(on - off, 2),
                METRICS_COST_TARGET_MS,
                baseline=off,
                baseline_label="overhead p50, metrics off (the lower of two)",
            )
        )
    return results


def _health(client: httpx.AsyncClient) -> Call:
    async def call() -> None:
        response = await client.get("/health")
        if response.status_code != 200:
            raise RuntimeError(f"GET /health: {response.status_code}")

    return call


async def load(ctx: Context) -> list[Result]:
    """Throughput at `concurrency` REST clients, and the gateway's RSS idle and at its peak."""
    sizes = ctx.sizes
    async with running_gateway(
        ctx.workdir / "throughput", codex_bin=ctx.tiny_agent, max_concurrent=sizes.concurrency
    ) as gateway:
        await asyncio.sleep(1.0)  # let startup settle before reading the idle figure
        idle_kib = rss_kib(gateway.pids, "VmRSS")
        direct = direct_spawn(
            agent_argv(ctx.tiny_agent, gateway.workspace), gateway.agent_env, gateway.workspace
        )
        host, port = gateway.rest_address
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(RawClient(host, port))
                for _ in range(sizes.concurrency)
            ]
            rest = [rest_completion(client) for client in clients]
            directs = [direct] * sizes.concurrency
            await throughput(rest, sizes.warmup)
            await throughput(directs, sizes.warmup)
            direct_rate, direct_latencies = await throughput(directs, sizes.requests)
            server_before, client_before = cpu_seconds(*gateway.pids), time.process_time()
            rest_rate, rest_latencies = await throughput(rest, sizes.requests)
            server_cpu = cpu_seconds(*gateway.pids) - server_before
            client_cpu = time.process_time() - client_before
        peak_kib = rss_kib(gateway.pids, "VmHWM")
        after_kib = rss_kib(gateway.pids, "VmRSS")
    details = {
        "concurrency": sizes.concurrency,
        "requests": sizes.requests,
        "rest_latency": latency_summary(rest_latencies),
        "direct_latency": latency_summary(direct_latencies),
        "gateway_cpu_ms_per_call": round(server_cpu * 1000 / sizes.requests, 2),
        "client_cpu_ms_per_call": round(client_cpu * 1000 / sizes.requests, 2),
    }
    ctx.log(f"throughput: rest {rest_rate:.1f}/s direct {direct_rate:.1f}/s {details}")
    idle_mib, peak_mib = idle_kib / 1024, peak_kib / 1024
    ctx.log(f"gateway RSS: idle {idle_mib:.1f} MiB, peak {peak_mib:.1f} MiB")
    return [
        Result(
            f"throughput, REST, {sizes.concurrency} clients",
            "/s",
            round(rest_rate, 1),
            THROUGHPUT_TARGET,
            baseline=round(direct_rate, 1),
            baseline_label="direct spawn",
            higher_is_better=True,
            details=details,
        ),
        Result("gateway RSS idle", "MiB", round(idle_mib, 2), IDLE_RSS_TARGET_MIB),
        Result(
            f"gateway peak RSS (VmHWM), {sizes.concurrency} clients",
            "MiB",
            round(peak_mib, 2),
            PEAK_RSS_TARGET_MIB,
            baseline=round(idle_mib, 2),
            baseline_label="idle",
            details={"rss_after_load_mib": round(after_kib / 1024, 2)},
        ),
    ]
