"""Searching a big session log through REST: exact and fuzzy latency, the gateway's memory
growth meanwhile, and `GET /health` (probed from another process) while a fuzzy search runs.

The log is bench-results/search-corpus-v1-<N>mib.log (bench/fixtures.py): runs of codex JSON
events between RUN START/END markers, as a long-lived session's stdout.log holds them, with one
line matching the query at 99.5 % of the file. Generated once, then reused; the session's
stdout.log is a hard link to it (a symbolic link when the scratch directory is on another
filesystem)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.fixtures import FUZZY_QUERY, NEEDLE, ensure_corpus
from bench.probe import Prober
from bench.responsiveness import corrected
from bench.results import Result, latency_summary
from bench.server import Contention, rss_kib, running_gateway
from bench.sizes import Context

EXACT_TARGET_S = 0.5
FUZZY_TARGET_S = 3.0
RSS_GROWTH_TARGET_MB = 50.0
HEALTH_P99_TARGET_MS = 50.0
SEARCH_TIMEOUT_S = 120.0

FUZZY_REFERENCE = """\
import sys, time
from rapidfuzz import fuzz, process, utils
path, query = sys.argv[1], sys.argv[2]
start = time.perf_counter()
with open(path, encoding="utf-8", errors="replace") as handle:
    lines = [line for line in handle.read().split("\\n") if line.strip()]
best = process.extract(
    utils.default_process(query), lines, scorer=fuzz.partial_ratio,
    processor=utils.default_process, limit=5, score_cutoff=60,
)
print(time.perf_counter() - start, best[0][2] if best else -1)
"""
"""The fuzzy reference: the same scorer of the same library over every non-blank line, the
whole file in memory at once, in a fresh process (timed inside it, without interpreter start)."""


class _RssSampler:
    """The gateway's VmRSS (both processes) every 20 ms from a thread; keeps the peak."""

    def __init__(self, pids: tuple[int, ...]) -> None:
        self._pids = pids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self.peak_kib = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, rss_kib(self._pids, "VmRSS"))
            self._stop.wait(0.02)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _session(root: Path, corpus: Path) -> str:
    """A finished session whose stdout.log is the corpus."""
    session_id = str(uuid.uuid4())
    directory = root / f"session-{session_id}"
    directory.mkdir(parents=True)
    stamp = "2026-11-01T00:00:00.000Z"
    meta = {
        "session_id": session_id,
        "codex_session_id": str(uuid.uuid4()),
        "created_at": stamp,
        "updated_at": stamp,
        "last_activity_at": stamp,
        "status": "completed",
        "runs": [],
        "secure": False,
        "metadata": {},
    }
    (directory / "meta.json").write_text(json.dumps(meta) + "\n")
    try:
        os.link(corpus, directory / "stdout.log")
    except OSError:
        (directory / "stdout.log").symlink_to(corpus)
    for name in ("stderr.log", "events.jsonl"):
        (directory / name).write_text("")
    return session_id


async def _command(*argv: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    elapsed = time.perf_counter() - start
    if process.returncode not in (0, 1):  # grep answers 1 for no match
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {err[-500:]!r}")
    return elapsed, out


async def _needle_line(corpus: Path) -> int:
    _, out = await _command("grep", "-n", "-i", "-F", "-m", "1", NEEDLE, str(corpus))
    if not out:
        raise RuntimeError(f"{corpus} does not hold the needle: delete it to regenerate it")
    return int(out.split(b":", 1)[0])


async def search_big_log(ctx: Context) -> list[Result]:
    sizes = ctx.sizes
    started = time.perf_counter()
    corpus, generated = await asyncio.to_thread(ensure_corpus, ctx.data_dir, sizes.search_mib)
    if generated:
        ctx.log(f"search: generated {corpus} in {time.perf_counter() - started:.1f} s")
    corpus_bytes = corpus.stat().st_size
    needle_line = await _needle_line(corpus)  # also reads the file into the page cache
    workdir = ctx.workdir / "search"
    session_id = _session(workdir / "sessions", corpus)
    target = f"/sessions/{session_id}/search"
    exact_params = {"q": NEEDLE}
    fuzzy_params = {"q": FUZZY_QUERY, "fuzzy": "true"}
    exact_s: list[float] = []
    grep_s: list[float] = []
    fuzzy_s: list[float] = []
    reference_s: list[float] = []
    async with running_gateway(workdir, codex_bin=ctx.tiny_agent, max_concurrent=2) as gateway:
        await asyncio.sleep(1.0)  # let startup settle before reading the memory figure
        rss_before = rss_kib(gateway.pids, "VmRSS")
        hwm_before = rss_kib(gateway.pids, "VmHWM")
        async with (
            httpx.AsyncClient(base_url=gateway.rest_url, timeout=SEARCH_TIMEOUT_S) as client,
            Prober(gateway.rest_url, sizes.health_interval_ms) as prober,
        ):

            async def search(params: dict[str, str]) -> tuple[float, list[dict[str, Any]]]:
                start = time.perf_counter()
                response = await client.get(target, params=params)
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise RuntimeError(f"GET {target}: {response.status_code} {response.text}")
                signals = response.json().get("signals", [])
                if not signals or signals[0].get("line") != needle_line:
                    raise RuntimeError(f"{params}: wrong hits {str(signals)[:300]}")
                return elapsed, signals

            prober.begin("idle")
            await asyncio.sleep(sizes.health_samples * (sizes.health_interval_ms + 1) / 1000)
            prober.end("idle")
            machine = Contention(gateway.pids, prober.pid)
            with _RssSampler(gateway.pids) as sampler:
                await search(exact_params)  # warm-up
                for _ in range(sizes.search_exact_rounds):
                    exact_s.append((await search(exact_params))[0])
                    grep_s.append(
                        (await _command("grep", "-c", "-i", "-F", NEEDLE, str(corpus)))[0]
                    )
                for round_ in range(sizes.search_fuzzy_rounds):
                    machine.start()
                    prober.begin(f"fuzzy-{round_}")
                    elapsed, _ = await search(fuzzy_params)
                    prober.end(f"fuzzy-{round_}")
                    machine.stop()
                    fuzzy_s.append(elapsed)
                    _, out = await _command(
                        sys.executable, "-c", FUZZY_REFERENCE, str(corpus), FUZZY_QUERY
                    )
                    reference_s.append(float(out.split()[0]))
            probes = await prober.stop()
        hwm_after = rss_kib(gateway.pids, "VmHWM")
        rss_after = rss_kib(gateway.pids, "VmRSS")
    idle = probes.latencies("idle")
    during: list[int] = []
    for round_ in range(sizes.search_fuzzy_rounds):
        during += probes.latencies(f"fuzzy-{round_}")
    idle_stats = latency_summary(idle)
    interval_ns = int((sizes.health_interval_ms + idle_stats["p50_ms"]) * 1e6)
    during_stats = latency_summary(corrected(during, interval_ns))
    growth_mb = (hwm_after - rss_before) * 1024 / 1e6
    mib = f"{corpus_bytes / 2**20:.0f} MiB"
    details = {
        "corpus": str(corpus),
        "corpus_bytes": corpus_bytes,
        "corpus_generated_now": generated,
        "needle_line": needle_line,
        "exact_s": [round(s, 3) for s in exact_s],
        "grep_s": [round(s, 3) for s in grep_s],
        "fuzzy_s": [round(s, 3) for s in fuzzy_s],
        "fuzzy_reference_s": [round(s, 3) for s in reference_s],
        "rss_before_mib": round(rss_before / 1024, 2),
        "vmhwm_before_mib": round(hwm_before / 1024, 2),
        "vmhwm_after_mib": round(hwm_after / 1024, 2),
        "sampled_peak_rss_mib": round(sampler.peak_kib / 1024, 2),
        "rss_after_mib": round(rss_after / 1024, 2),
        "health_idle": idle_stats,
        "health_during_fuzzy": during_stats,
        "health_during_fuzzy_uncorrected": latency_summary(during),
        "probe_timeouts": probes.timeouts,
        "during_fuzzy": machine.figures(),
        "slowest_probes": probes.slowest(
            [f"fuzzy-{round_}" for round_ in range(sizes.search_fuzzy_rounds)]
        ),
    }
    ctx.log(f"search: {details}")
    with contextlib.suppress(OSError):
        (workdir / "sessions" / f"session-{session_id}" / "stdout.log").unlink()
    return [
        Result(
            f"search {mib} log, exact, p50 of {len(exact_s)}",
            "s",
            round(statistics.median(exact_s), 3),
            EXACT_TARGET_S,
            baseline=round(statistics.median(grep_s), 3),
            baseline_label="grep -c -i",
            details=details,
        ),
        Result(
            f"search {mib} log, fuzzy, p50 of {len(fuzzy_s)}",
            "s",
            round(statistics.median(fuzzy_s), 3),
            FUZZY_TARGET_S,
            baseline=round(statistics.median(reference_s), 3),
            baseline_label="rapidfuzz, all in memory",
        ),
        Result(
            "gateway peak RSS growth during the searches",
            "MB",
            round(growth_mb, 2),
            RSS_GROWTH_TARGET_MB,
            details={"measure": "VmHWM after the searches - VmRSS before them, in 10^6 bytes"},
        ),
        Result(
            "GET /health p99 during a fuzzy search (corrected)",
            "ms",
            during_stats["p99_ms"],
            HEALTH_P99_TARGET_MS,
            baseline=idle_stats["p99_ms"],
            baseline_label="idle",
        ),
    ]
