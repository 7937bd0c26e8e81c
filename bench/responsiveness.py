"""The event loop is never blocked: GET /health latency through REST while N real codex runs
stream (the target), while N runs stream as fast as a chatty fake agent can print (a stress
test), and while the gateway loads and lists a trigger file of 10,000 cron triggers, each
against the same probe with no load.

The probe runs in a process of its own (bench/probe.py): the client reading N NDJSON streams at
full speed in this process's event loop would otherwise delay its own probes and charge the
gateway for it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.probe import Prober, ProbeRun
from bench.results import Result, latency_summary
from bench.server import Contention, GatewayProcess, process_tree, running_gateway
from bench.sizes import Context
from gateway.atomic import write_atomic
from tests.fakes import AGENTS_DIR, CODEX_BIN
from tests.fakes.model_server import ModelServer, write_codex_home

HEALTH_P99_TARGET_MS = 50.0
HEALTH_MAX_TARGET_MS = 250.0
"""Not in the issue: the worst probe, which a p99 over a thousand samples can hide."""
CHATTY_AGENT = AGENTS_DIR / "endless_agent.py"
CODEX_PROMPT = "[[scenario:tool]] [[cmd:for i in $(seq 1 200); do echo line $i; done]] go"
"""Keeps each real codex busy: a model turn, a shell command printing 200 lines, a second turn."""
DRAIN_LIMIT_S = 30.0
"""How long past their timeout the streams may take to end before they are abandoned."""


class _Stream:
    """One streaming run, read to its end; counts what arrived and keeps the last line."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.bytes = 0
        self.last = b""
        self.ended_after_s: float | None = None
        self.last_byte_at = time.monotonic()

    async def run(self, client: httpx.AsyncClient, body: dict[str, object], t0: float) -> None:
        async with client.stream("POST", "/completion/stream", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"POST /completion/stream: {response.status_code}")
            current: list[bytes] = []  # the line being received, in pieces
            previous = b""  # the last complete non-empty line
            async for chunk in response.aiter_raw():
                self.started.set()
                self.bytes += len(chunk)
                self.last_byte_at = time.monotonic()
                pieces = chunk.split(b"\n")
                if len(pieces) > 1:
                    line = b"".join([*current, pieces[0]])
                    previous = line or previous
                    for middle in reversed(pieces[1:-1]):
                        if middle:
                            previous = middle
                            break
                    current = []
                current.append(pieces[-1])
            self.last = b"".join(current) or previous
        self.ended_after_s = round(time.monotonic() - t0, 2)

    def outcome(self, task: asyncio.Task[None]) -> str:
        """`completed`, the HTTP status of the in-stream error (408 for a timeout), or what
        went wrong on the client's side."""
        if not task.done() or task.cancelled():
            return "unfinished"
        if task.exception() is not None:
            return type(task.exception()).__name__
        try:
            line = json.loads(self.last)
        except ValueError:
            return "unreadable"
        if "error" in line:
            return str(line["error"].get("http_status", line["error"].get("code")))
        return "completed" if "completed" in line.get("result", {}) else "other"


def corrected(samples_ns: list[int], interval_ns: int) -> list[int]:
    """The samples plus those a prober on a fixed schedule would have taken during each slow
    probe (HdrHistogram's correction for coordinated omission): a probe of L ns adds L - I,
    L - 2I, ... down to I, so a 2 s stall weighs as the 2 s of probes it held back, not as one
    sample among thousands."""
    result = list(samples_ns)
    for sample in samples_ns:
        missed = sample - interval_ns
        while missed >= interval_ns:
            result.append(missed)
            missed -= interval_ns
    return result


async def _idle(prober: Prober, ctx: Context) -> None:
    """A window of probes with nothing else running: the baseline."""
    sizes = ctx.sizes
    prober.begin("idle")
    await asyncio.sleep(sizes.health_samples * (sizes.health_interval_ms + 1) / 1000)
    prober.end("idle")


def _figures(probes: ProbeRun, windows: list[str], ctx: Context) -> dict[str, Any]:
    """Idle and loaded probe statistics; the loaded ones corrected for coordinated omission."""
    idle = latency_summary(probes.latencies("idle"))
    loaded = [latency for window in windows for latency in probes.latencies(window)]
    interval_ns = int((ctx.sizes.health_interval_ms + idle["p50_ms"]) * 1e6)
    return {
        "loaded": latency_summary(corrected(loaded, interval_ns)),
        "loaded_uncorrected": latency_summary(loaded),
        "idle": idle,
        "probe_timeouts": probes.timeouts,
        "slowest_probes": probes.slowest(windows),
    }


async def health_under_codex(ctx: Context) -> list[Result]:
    """GET /health while N real codex runs stream against the scripted model server."""
    sizes = ctx.sizes
    async with ModelServer() as model:
        codex_env = write_codex_home(ctx.workdir / "codex-home-health", model.base_url)
        async with running_gateway(
            ctx.workdir / "health-codex",
            codex_bin=CODEX_BIN,
            max_concurrent=sizes.concurrency,
            extra_env=codex_env,
            child_env_names=["FAKE_API_KEY"],
        ) as gateway:
            limits = httpx.Limits(max_connections=sizes.concurrency + 4)
            async with (
                httpx.AsyncClient(base_url=gateway.rest_url, limits=limits, timeout=60) as client,
                Prober(gateway.rest_url, sizes.health_interval_ms) as prober,
            ):
                warm = await client.post("/completion", json={"prompt": "[[scenario:message]]"})
                if warm.status_code != 200:
                    raise RuntimeError(f"POST /completion: {warm.status_code} {warm.text[:300]}")
                await _idle(prober, ctx)
                windows, outcomes, durations = [], [], []
                machine = Contention(gateway.pids, prober.pid)
                for round_ in range(sizes.codex_stream_rounds):
                    streams = [_Stream() for _ in range(sizes.concurrency)]
                    body = {"prompt": CODEX_PROMPT, "timeout_ms": 60_000}
                    name = f"codex-{round_}"
                    machine.start()
                    prober.begin(name)
                    t0 = time.monotonic()
                    tasks = [asyncio.create_task(s.run(client, body, t0)) for s in streams]
                    await asyncio.wait(tasks, timeout=90)
                    prober.end(name)
                    windows.append(name)
                    durations.append(round(time.monotonic() - t0, 2))
                    machine.stop()
                    outcomes += [s.outcome(t) for s, t in zip(streams, tasks, strict=True)]
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                probes = await prober.stop()
        if model.errors:
            raise RuntimeError(f"the model server failed: {model.errors[:3]}")
    details = {
        **_figures(probes, windows, ctx),
        "prompt": CODEX_PROMPT,
        "rounds": sizes.codex_stream_rounds,
        "round_durations_s": durations,
        "stream_outcomes": sorted(outcomes),
        **machine.figures(),
    }
    ctx.log(f"health-codex: {details}")
    if any(outcome != "completed" for outcome in outcomes):
        raise RuntimeError(f"not every codex run completed: {sorted(outcomes)}")
    return [
        Result(
            f"GET /health p99, {sizes.concurrency} real codex streaming (corrected)",
            "ms",
            details["loaded"]["p99_ms"],
            HEALTH_P99_TARGET_MS,
            baseline=details["idle"]["p99_ms"],
            baseline_label="no load",
            details=details,
        )
    ]


async def health_under_load(ctx: Context) -> list[Result]:
    """The stress test: fake agents that print as fast as they can."""
    sizes = ctx.sizes
    async with running_gateway(
        ctx.workdir / "responsiveness", codex_bin=CHATTY_AGENT, max_concurrent=sizes.concurrency
    ) as gateway:
        limits = httpx.Limits(max_connections=sizes.concurrency + 4)
        async with (
            httpx.AsyncClient(base_url=gateway.rest_url, limits=limits, timeout=60) as client,
            Prober(gateway.rest_url, sizes.health_interval_ms) as prober,
        ):
            await _idle(prober, ctx)
            streams = [_Stream() for _ in range(sizes.concurrency)]
            body = {"prompt": "talk", "timeout_ms": sizes.stream_timeout_ms}
            t0 = time.monotonic()
            tasks = [asyncio.create_task(stream.run(client, body, t0)) for stream in streams]
            deadline = t0 + sizes.stream_timeout_ms / 1000 + DRAIN_LIMIT_S
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.gather(*(stream.started.wait() for stream in streams)), 30
                    )
                machine = Contention(gateway.pids, prober.pid)
                machine.start()
                prober.begin("loaded")
                agents_ended_after_s = await _wait_streams(gateway, tasks, t0, deadline)
                prober.end("loaded")
                machine.stop()
            finally:
                window_s = round(time.monotonic() - t0, 2)
                silent_s = [
                    round(time.monotonic() - stream.last_byte_at, 1)
                    for stream, task in zip(streams, tasks, strict=True)
                    if not task.done()
                ]
                outcomes = sorted(
                    stream.outcome(task) for stream, task in zip(streams, tasks, strict=True)
                )
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            probes = await prober.stop()
    figures = _figures(probes, ["loaded"], ctx)
    details = {
        **figures,
        "stream_timeout_ms": sizes.stream_timeout_ms,
        "stream_outcomes": outcomes,
        "streams_ended_after_s": sorted(s.ended_after_s or -1.0 for s in streams),
        "probe_window_s": window_s,
        "unfinished_silent_for_s": silent_s,
        "agents_ended_after_s": agents_ended_after_s,
        "streamed_mib": round(sum(stream.bytes for stream in streams) / 2**20, 2),
        **machine.figures(),
    }
    ctx.log(f"health-stress: {details}")
    load_stats, idle_stats = figures["loaded"], figures["idle"]
    return [
        Result(
            f"stress: GET /health p99, {sizes.concurrency} chatty fake agents (corrected)",
            "ms",
            load_stats["p99_ms"],
            HEALTH_P99_TARGET_MS,
            baseline=idle_stats["p99_ms"],
            baseline_label="no load",
            details=details,
        ),
        Result(
            f"stress: GET /health max, {sizes.concurrency} chatty fake agents",
            "ms",
            load_stats["max_ms"],
            HEALTH_MAX_TARGET_MS,
            baseline=idle_stats["max_ms"],
            baseline_label="no load",
        ),
    ]


async def _wait_streams(
    gateway: GatewayProcess, tasks: list[asyncio.Task[None]], t0: float, deadline: float
) -> float | None:
    """Until every stream ended or the deadline; when the agents were gone (s after t0)."""
    agents_ended_after_s = None
    while not all(task.done() for task in tasks) and time.monotonic() < deadline:
        if agents_ended_after_s is None and process_tree(gateway.pid) <= set(gateway.pids):
            agents_ended_after_s = round(time.monotonic() - t0, 2)
        await asyncio.sleep(0.05)
    return agents_ended_after_s


TRIGGER_LIST_TARGET_MS = 2000.0
"""Not in the issue: `GET /triggers` of the whole file (about 2.5 MB of JSON) within 2 s."""
TRIGGER_LOAD_LIMIT_S = 60.0
"""How long the scheduler may take to show a written trigger file in /status."""
TRIGGER_TIMEZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Pacific/Auckland")


def cron_triggers(count: int, today: dt.date) -> dict[str, Any]:
    """`count` cron triggers, none of which fires within months of `today` (they name the
    month half a year ahead), so no run disturbs the probes."""
    month = (today.month + 5) % 12 + 1
    return {
        "triggers": [
            {
                "id": f"bench-cron-{n}",
                "prompt_text": f"scheduled task {n}",
                "schedule": {
                    "mode": "cron",
                    "cron": f"{n % 60} {n % 24} {n % 28 + 1} {month} *",
                    "timezone": TRIGGER_TIMEZONES[n % len(TRIGGER_TIMEZONES)],
                },
                "created_at": "2026-01-01T00:00:00Z",
            }
            for n in range(count)
        ]
    }


async def _scheduled(client: httpx.AsyncClient, path: Path) -> int | None:
    """How many triggers of `path` the scheduler holds, by /status (None: not scheduled)."""
    response = await client.get("/status")
    response.raise_for_status()
    for entry in response.json()["triggers"]["files"]:
        if Path(entry["path"]) == path:
            if entry.get("error"):
                raise RuntimeError(f"the trigger file was refused: {entry['error']}")
            return int(entry.get("triggers", 0))
    return None


async def _until_scheduled(client: httpx.AsyncClient, path: Path, count: int) -> float:
    """Poll /status until the scheduler holds `count` triggers of `path`; seconds it took."""
    t0 = time.monotonic()
    while (await _scheduled(client, path) or 0) != count:
        if time.monotonic() - t0 > TRIGGER_LOAD_LIMIT_S:
            raise RuntimeError(f"{count} triggers not scheduled after {TRIGGER_LOAD_LIMIT_S} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def _write(path: Path, text: str) -> None:
    """Whole or not at all, as an editor saves: the watcher never reads half a file."""
    write_atomic(path, text.encode(), mode=0o666)


async def health_under_triggers(ctx: Context) -> list[Result]:
    """GET /health while the gateway loads, lists and drops a trigger file of N cron triggers
    (the watcher reloads the file when it changes), against the same probe with no load."""
    sizes = ctx.sizes
    trigger_file = (ctx.workdir / "triggers" / "triggers.json").resolve()
    trigger_file.parent.mkdir(parents=True)
    empty = json.dumps({"triggers": []})
    full = json.dumps(cron_triggers(sizes.triggers, dt.datetime.now(dt.UTC).date()))
    trigger_file.write_text(empty)
    async with (
        running_gateway(
            ctx.workdir / "health-triggers",
            codex_bin=ctx.tiny_agent,
            max_concurrent=sizes.concurrency,
            settings={"CODEX_GATEWAY_TRIGGER_FILE": str(trigger_file)},
        ) as gateway,
        httpx.AsyncClient(base_url=gateway.rest_url, timeout=60) as client,
        Prober(gateway.rest_url, sizes.health_interval_ms) as prober,
    ):
        await _until_scheduled(client, trigger_file, 0)
        await _idle(prober, ctx)
        machine = Contention(gateway.pids, prober.pid)
        windows: list[str] = []
        load_s: list[float] = []
        list_ms: list[float] = []
        unload_s: list[float] = []
        for round_ in range(sizes.trigger_rounds):
            name = f"triggers-{round_}"
            machine.start()
            prober.begin(name)
            await asyncio.to_thread(_write, trigger_file, full)
            load_s.append(await _until_scheduled(client, trigger_file, sizes.triggers))
            t0 = time.perf_counter()
            listing = await client.get("/triggers")
            list_ms.append((time.perf_counter() - t0) * 1000)
            if listing.status_code != 200:
                raise RuntimeError(f"GET /triggers: {listing.status_code} {listing.text[:300]}")
            if len(listing.json()["triggers"]) != sizes.triggers:
                raise RuntimeError("GET /triggers did not list every trigger")
            await asyncio.to_thread(_write, trigger_file, empty)
            unload_s.append(await _until_scheduled(client, trigger_file, 0))
            prober.end(name)
            windows.append(name)
            machine.stop()
        probes = await prober.stop()
    figures = _figures(probes, windows, ctx)
    details = {
        **figures,
        "triggers": sizes.triggers,
        "rounds": sizes.trigger_rounds,
        "file_mib": round(len(full) / 2**20, 2),
        "listing_mib": round(len(listing.content) / 2**20, 2),
        "load_s": [round(s, 2) for s in load_s],
        "unload_s": [round(s, 2) for s in unload_s],
        "list_ms": [round(ms, 1) for ms in list_ms],
        **machine.figures(),
    }
    ctx.log(f"triggers: {details}")
    loaded, idle = figures["loaded"], figures["idle"]
    return [
        Result(
            f"GET /health p99, {sizes.triggers:,} cron triggers loaded and listed (corrected)",
            "ms",
            loaded["p99_ms"],
            HEALTH_P99_TARGET_MS,
            baseline=idle["p99_ms"],
            baseline_label="no load",
            details=details,
        ),
        Result(
            f"GET /health max, {sizes.triggers:,} cron triggers loaded and listed",
            "ms",
            loaded["max_ms"],
            HEALTH_MAX_TARGET_MS,
            baseline=idle["max_ms"],
            baseline_label="no load",
        ),
        Result(
            f"GET /triggers of {sizes.triggers:,} cron triggers, median",
            "ms",
            round(statistics.median(list_ms), 2),
            TRIGGER_LIST_TARGET_MS,
        ),
    ]


CANCEL_TARGET_MS = 100.0
COUNTER_AGENT = AGENTS_DIR / "counter_agent.py"
CANCEL_LOAD_S = 1.0
"""How long the runs print before the first cancel."""
CANCEL_PAUSE_S = 0.2
"""Between one stream's end and the next cancel."""
CHATTY = {"FAKE_AGENT_LINES": "1000000000", "FAKE_AGENT_PAUSE_MS": "0"}
QUIET = {"FAKE_AGENT_LINES": "1000000000", "FAKE_AGENT_PAUSE_MS": "200"}


async def _session_of(response: httpx.Response, opened: asyncio.Future[str]) -> None:
    """Read a streamed completion to its end; its session id (the `started` line) into
    `opened` as soon as it comes."""
    pending = b""
    async for chunk in response.aiter_raw():
        if not opened.done():
            pending += chunk
            if b"\n" in pending:
                first = json.loads(pending.split(b"\n", 1)[0])
                opened.set_result(first["result"]["started"]["session_id"])


async def _cancels(
    client: httpx.AsyncClient, env: dict[str, str], ctx: Context
) -> tuple[list[float], list[float]]:
    """`concurrency` streaming runs of the counter agent with `env`; once they have printed for
    a while, each cancelled in turn: how long each cancel took to be answered, and how long its
    stream then took to end (ms)."""
    answered_ms: list[float] = []
    ended_ms: list[float] = []
    body = {"prompt": "talk", "timeout_ms": 120_000, "env": env}
    async with contextlib.AsyncExitStack() as stack:
        readers: list[tuple[asyncio.Task[None], asyncio.Future[str]]] = []
        for _ in range(ctx.sizes.concurrency):
            response = await stack.enter_async_context(
                client.stream("POST", "/completion/stream", json=body)
            )
            if response.status_code != 200:
                raise RuntimeError(f"POST /completion/stream: {response.status_code}")
            opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            readers.append((asyncio.create_task(_session_of(response, opened)), opened))
        try:
            sessions = [await asyncio.wait_for(opened, 30) for _, opened in readers]
            await asyncio.sleep(CANCEL_LOAD_S)
            for (reader, _), session in zip(readers, sessions, strict=True):
                t0 = time.perf_counter()
                answer = await client.post(f"/sessions/{session}/cancel", json={})
                answered_ms.append((time.perf_counter() - t0) * 1000)
                if answer.status_code != 200 or not answer.json().get("cancelled"):
                    raise RuntimeError(f"cancel: {answer.status_code} {answer.text[:200]}")
                await asyncio.wait_for(reader, 30)
                ended_ms.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(CANCEL_PAUSE_S)
        finally:
            for reader, _ in readers:
                reader.cancel()
            await asyncio.gather(*(reader for reader, _ in readers), return_exceptions=True)
    return answered_ms, ended_ms


async def cancel_under_load(ctx: Context) -> list[Result]:
    """A cancel's answer while `concurrency` agents print as fast as they can, beside the same
    with agents that print a line every 200 ms."""
    sizes = ctx.sizes
    figures: dict[str, dict[str, list[float]]] = {"quiet": {}, "chatty": {}}
    async with running_gateway(
        ctx.workdir / "cancel-stress", codex_bin=COUNTER_AGENT, max_concurrent=sizes.concurrency
    ) as gateway:
        limits = httpx.Limits(max_connections=sizes.concurrency + 4)
        async with httpx.AsyncClient(
            base_url=gateway.rest_url, limits=limits, timeout=60
        ) as client:
            machine = Contention(gateway.pids, gateway.pid)
            for _ in range(sizes.cancel_rounds):
                for name, env in (("quiet", QUIET), ("chatty", CHATTY)):
                    if name == "chatty":
                        machine.start()
                    answered, ended = await _cancels(client, env, ctx)
                    if name == "chatty":
                        machine.stop()
                    figures[name].setdefault("answered_ms", []).extend(answered)
                    figures[name].setdefault("ended_ms", []).extend(ended)
    details = {
        name: {key: [round(value, 1) for value in values] for key, values in found.items()}
        for name, found in figures.items()
    }
    # (No probe process here: Contention's probe figures would repeat the gateway's.)
    machine_figures = {k: v for k, v in machine.figures().items() if not k.startswith("probe")}
    details["machine"] = machine_figures  # type: ignore[assignment]  # figures, not lists
    ctx.log(f"cancel-stress: {details}")
    chatty, quiet = figures["chatty"]["answered_ms"], figures["quiet"]["answered_ms"]
    return [
        Result(
            f"stress: cancel answered, max of {len(chatty)}, "
            f"{sizes.concurrency} chatty fake agents",
            "ms",
            round(max(chatty), 2),
            CANCEL_TARGET_MS,
            baseline=round(max(quiet), 2),
            baseline_label="quiet agents",
            details=details,
        ),
        Result(
            f"stress: cancel to the stream's end, p50, {sizes.concurrency} chatty fake agents",
            "ms",
            round(statistics.median(figures["chatty"]["ended_ms"]), 2),
            1000.0 + CANCEL_TARGET_MS,
            baseline=round(statistics.median(figures["quiet"]["ended_ms"]), 2),
            baseline_label="quiet agents",
        ),
    ]
