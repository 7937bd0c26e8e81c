"""Side by side with the reference Node gateway (`scripts/codex_gateway.js` of the public
DeepBlueDynamics/codex-container repository) on the same fake agent: REST completion overhead
and throughput, ours over the reference's. Beside the overhead: a REST call of ours with no run
in it (GET /health), as a share of the reference's completion overhead, the part of that target
the two processes take before any run.

`BENCH_REFERENCE_JS=<path to codex_gateway.js>` turns the rows on (node from PATH, or
`BENCH_REFERENCE_NODE`); without it they say skipped. The reference is never part of this
repository. It spawns `codex` from its PATH: a directory holding only `codex`, a link to the
tiny agent our gateway runs too. Its spawn throttle is off (`CODEX_GATEWAY_SPAWN_MIN_GAP_MS=0`,
8 s by default), its triggers too, and both gateways are their own sessions (scheduling groups),
started once and measured alternately, so that drift hits both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bench.completion import Call, agent_argv, direct_spawn, throughput, timed
from bench.rawhttp import RawClient
from bench.results import Result, latency_summary
from bench.server import cpu_seconds, free_ports, running_gateway
from bench.sizes import Context

REFERENCE_JS_ENV = "BENCH_REFERENCE_JS"
REFERENCE_NODE_ENV = "BENCH_REFERENCE_NODE"
OVERHEAD_RATIO_TARGET = 0.67
THROUGHPUT_RATIO_TARGET = 1.2
ROUNDS = 5
"""Sequential samples are taken in rounds (direct, ours, reference, direct, ...)."""
THROUGHPUT_ROUNDS = 2
"""Throughput is measured ours, reference, ours, reference; each side's figure is its best."""
# Both answer a `messages` body (the reference reads nothing else) with `content`.
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
STARTUP_TIMEOUT_S = 20.0

OVERHEAD_ROW = "completion overhead p50, REST, ours / reference"
THROUGHPUT_ROW = "throughput, REST, {clients} clients, ours / reference"


async def side_by_side(ctx: Context) -> list[Result]:
    script = os.environ.get(REFERENCE_JS_ENV, "")
    node = os.environ.get(REFERENCE_NODE_ENV) or shutil.which("node")
    throughput_row = THROUGHPUT_ROW.format(clients=ctx.sizes.concurrency)
    if not script or node is None:
        why = f"skipped: {REFERENCE_JS_ENV} is not set" if not script else "skipped: no node"
        return [
            Result(OVERHEAD_ROW, "x", None, OVERHEAD_RATIO_TARGET, skipped=why),
            Result(
                throughput_row,
                "x",
                None,
                THROUGHPUT_RATIO_TARGET,
                higher_is_better=True,
                skipped=why,
            ),
        ]
    workdir = ctx.workdir / "reference"
    sizes = ctx.sizes
    async with (
        running_gateway(
            workdir / "ours", codex_bin=ctx.tiny_agent, max_concurrent=sizes.concurrency
        ) as ours,
        running_reference(
            Path(node), Path(script), workdir / "reference", ctx.tiny_agent, sizes.concurrency
        ) as (reference_port, reference_pid),
    ):
        direct = direct_spawn(
            agent_argv(ctx.tiny_agent, ours.workspace), ours.agent_env, ours.workspace
        )
        ports = {"ours": ours.rest_address[1], "reference": reference_port}
        async with contextlib.AsyncExitStack() as stack:
            sequential = {
                name: await stack.enter_async_context(RawClient("127.0.0.1", port))
                for name, port in ports.items()
            }
            paths: dict[str, Call] = {
                "direct": direct,
                **{name: completion(client) for name, client in sequential.items()},
                # What any REST call costs ours with no run in it: the bridge, the gRPC hop and
                # the gateway's RPC machinery, a floor under the completion overhead.
                "ours, no run": health(sequential["ours"]),
            }
            for call in paths.values():
                await timed(call, sizes.warmup, [])
            samples: dict[str, list[int]] = {name: [] for name in paths}
            for round_ in range(ROUNDS):
                share = sizes.iterations // ROUNDS + (round_ < sizes.iterations % ROUNDS)
                for name, call in paths.items():
                    await timed(call, share, samples[name])
        rates: dict[str, list[float]] = {name: [] for name in ports}
        # CPU per completion under load: our two processes, the reference's one.
        pids = {"ours": ours.pids, "reference": (reference_pid,)}
        cpu_ms: dict[str, list[float]] = {name: [] for name in ports}
        for _ in range(THROUGHPUT_ROUNDS):
            for name, port in ports.items():
                # Connections of their own: Node closes one idle for 5 s (keepAliveTimeout).
                async with contextlib.AsyncExitStack() as stack:
                    calls = [
                        completion(await stack.enter_async_context(RawClient("127.0.0.1", port)))
                        for _ in range(sizes.concurrency)
                    ]
                    await throughput(calls, sizes.warmup)
                    before = cpu_seconds(*pids[name])
                    rate, _ = await throughput(calls, sizes.requests)
                    rates[name].append(rate)
                    spent = cpu_seconds(*pids[name]) - before
                    cpu_ms[name].append(round(spent * 1000 / sizes.requests, 2))
    stats = {name: latency_summary(values) for name, values in samples.items()}
    overhead = {
        name: stats[name]["p50_ms"] - stats["direct"]["p50_ms"] for name in ("ours", "reference")
    }
    floor_ms = stats["ours, no run"]["p50_ms"]
    best = {name: max(values) for name, values in rates.items()}
    ctx.log(f"reference side by side: {stats} overhead={overhead} rates={rates}")
    details = {
        "ours_overhead_ms": round(overhead["ours"], 2),
        "reference_overhead_ms": round(overhead["reference"], 2),
        "ours_no_run_p50_ms": round(floor_ms, 2),
        "latency": stats,
        "rates_per_s": {
            name: [round(rate, 1) for rate in values] for name, values in rates.items()
        },
        "cpu_ms_per_call_under_load": cpu_ms,
        "reference": str(script),
    }
    return [
        Result(
            OVERHEAD_ROW,
            "x",
            _ratio(overhead["ours"], overhead["reference"]),
            OVERHEAD_RATIO_TARGET,
            # How much of the target a REST call with no run in it takes up already.
            baseline=_ratio(floor_ms, overhead["reference"]),
            baseline_label="GET /health p50, ours / reference overhead",
            details=details,
        ),
        Result(
            throughput_row,
            "x",
            _ratio(best["ours"], best["reference"]),
            THROUGHPUT_RATIO_TARGET,
            higher_is_better=True,
            details=details,
        ),
    ]


def _ratio(ours: float, reference: float) -> float | None:
    return round(ours / reference, 2) if reference > 0 else None


def health(client: RawClient) -> Call:
    """GET /health on one keep-alive connection: through the bridge and the gateway, no run."""

    async def call() -> None:
        status, body = await client.request(b"GET", "/health")
        if status != 200:
            raise RuntimeError(f"GET /health: {status} {body[:200]!r}")

    return call


def completion(client: RawClient) -> Call:
    """POST /completion with a `messages` body on one keep-alive connection."""

    async def call() -> None:
        status, body = await client.post_json("/completion", BODY)
        if status != 200 or json.loads(body).get("content") != "ok":
            raise RuntimeError(f"POST /completion: {status} {body[:200]!r}")

    return call


@contextlib.asynccontextmanager
async def running_reference(
    node: Path, script: Path, workdir: Path, agent: Path, max_concurrent: int
) -> AsyncIterator[tuple[int, int]]:
    """The reference gateway on a free loopback port, rooted in `workdir`, running `agent` as
    its `codex`; yields its port and pid, stops it after."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "codex").symlink_to(agent)
    (port,) = free_ports(1)
    env = {
        "PATH": os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]),
        "HOME": str(workdir / "home"),
        "LANG": "C.UTF-8",
        "CODEX_GATEWAY_PORT": str(port),
        "CODEX_GATEWAY_BIND": "127.0.0.1",
        "CODEX_GATEWAY_SPAWN_MIN_GAP_MS": "0",
        "CODEX_GATEWAY_DISABLE_TRIGGERS": "1",
        "CODEX_GATEWAY_LOG_LEVEL": "0",
        "CODEX_GATEWAY_MAX_CONCURRENT": str(max_concurrent),
        "CODEX_GATEWAY_CODEX_HOME": str(workdir / "codex-home"),
        "CODEX_GATEWAY_SESSION_DIRS": str(workdir / "sessions"),
        "CODEX_GATEWAY_SECURE_SESSION_DIR": str(workdir / "sessions-secure"),
        "CODEX_GATEWAY_TRIGGER_FILE": str(workdir / "triggers.json"),
        "CODEX_DISABLE_DEFAULT_PROMPT": "1",
    }
    with (workdir / "reference.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(node),
            str(script),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=workdir,
            start_new_session=True,  # its own scheduling group, as our gateway gets
        )
    try:
        await _until_answering(process, port)
        yield port, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _until_answering(process: asyncio.subprocess.Process, port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"the reference gateway exited with {process.returncode}")
        with contextlib.suppress(OSError):
            async with RawClient("127.0.0.1", port) as client:
                status, _ = await client.request(b"GET", "/health")
                if status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the reference gateway did not answer on port {port}")
