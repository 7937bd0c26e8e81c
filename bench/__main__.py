"""`python -m bench`: run the benchmarks, print one table, write bench-results/<UTC>.json.

    python -m bench                  # --quick sizes, every benchmark (about 1.5 minutes)
    python -m bench --full           # bigger samples (or BENCH_MODE=full), about 6 minutes
    python -m bench --only overhead  # one benchmark (repeatable)

Each size can be overridden by env (`BENCH_ITERATIONS`, `BENCH_REQUESTS`, see bench/sizes.py).
BENCH_SCRATCH=DIR puts the gateways' sessions and workspaces there (default bench-results/tmp),
e.g. /dev/shm to take the disk out of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import (
    auth,
    changes,
    cluster,
    completion,
    lines,
    memory,
    reference,
    responsiveness,
    resume,
    search,
    sessions,
    tail,
    tracing,
)
from bench.results import Result, failed, table
from bench.sizes import Context, sizes_for
from tests.fakes.agents.build import build_tiny_agent

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench-results"
Benchmark = Callable[[Context], Awaitable[list[Result]]]
BENCHMARKS: dict[str, Benchmark] = {
    "overhead": completion.overhead,
    "metrics-cost": completion.metrics_cost,  # overhead with metrics on vs off (issue 16)
    "throughput": completion.load,  # also the gateway's idle and peak RSS
    # Beside the reference Node gateway, when BENCH_REFERENCE_JS names it (else skipped).
    "reference": reference.side_by_side,
    "tracing": tracing.tracing_overhead,  # tracing exporting to a local collector vs off
    "codex-memory": memory.codex_memory,
    "sessions": sessions.session_store,  # startup, listing and detail throughput at 10k
    "history": sessions.session_history,  # prompt latency with 1,500 runs behind it
    "search": search.search_big_log,
    "tail": tail.tail_latency,
    "resume": resume.resume_latency,  # a follower that drops and resumes with after_seq
    "health-codex": responsiveness.health_under_codex,
    "health-stress": responsiveness.health_under_load,
    "cancel-stress": responsiveness.cancel_under_load,  # a cancel's answer under the stress
    "triggers": responsiveness.health_under_triggers,
    # The gateway's CPU per agent output line, now and before issue 18 (bench/lines.py)
    "line-cost": lines.line_cost,  # /health while 10k cron triggers load
    "changes": changes.changes_of_a_run,  # a run's changes in 10,000 files, the snapshot before
    "auth": auth.auth_cost,  # API keys: 10,000 keys with quotas vs the token alone (issue 17)
    # Cluster mode on a local PostgreSQL, each beside its embedded baseline (bench/cluster.py).
    "cluster-overhead": cluster.overhead,
    "cluster-list": cluster.listing,  # 10k sessions in the database, through a replica of none
    "cluster-tail": cluster.relayed_tail,  # through a non-home replica, and a 1,000-line burst
    "cluster-death": cluster.replica_death,  # SIGKILL mid-run to `interrupted`
}
TIME_LIMIT_S = {"quick": 180.0, "full": 900.0}
"""Per benchmark: past it, the benchmark is cancelled (its gateway stopped) and reported broken."""
BUSY_LOADAVG = 0.5


def _log(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kib = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    return {
        "nproc": os.cpu_count(),
        "cpu": models[0] if models else platform.processor(),
        "ram_gib": round(total_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def filesystem(path: Path) -> str:
    """The type of the filesystem `path` is on (the sessions' writes cost what it costs)."""
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603  # fixed argv
            ["git", *args],  # noqa: S607  # git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


async def _run(names: list[str], ctx: Context, limit_s: float) -> list[Result]:
    results: list[Result] = []
    for name in names:
        ctx.log(f"{name}: running")
        start = time.monotonic()
        try:
            async with asyncio.timeout(limit_s):
                results += await BENCHMARKS[name](ctx)
        except Exception as exc:  # a broken benchmark is reported; the others still run
            ctx.log(f"{name}: FAILED: {exc!r}")
            results.append(failed(name, "", 0.0, f"{type(exc).__name__}: {exc}"))
        ctx.log(f"{name}: {time.monotonic() - start:.1f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", dest="mode", action="store_const", const="quick", help="small sizes (default)"
    )
    mode.add_argument(
        "--full", dest="mode", action="store_const", const="full", help="big sizes (BENCH_MODE)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run this benchmark only (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    run_mode = args.mode or os.environ.get("BENCH_MODE", "quick")
    if run_mode not in TIME_LIMIT_S:
        parser.error(f"BENCH_MODE must be quick or full, not {run_mode!r}")
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    sizes = sizes_for(run_mode)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    scratch = RESULTS_DIR / "tmp"
    workdir = Path(os.environ.get("BENCH_SCRATCH") or scratch).resolve() / f"run-{stamp}"
    workdir.mkdir(parents=True)
    load_before = os.getloadavg()
    started = time.monotonic()
    try:
        ctx = Context(sizes, workdir, build_tiny_agent(scratch / "bin"), RESULTS_DIR, _log)
        results = asyncio.run(_run(names, ctx, TIME_LIMIT_S[run_mode]))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    host = {
        **machine(),
        "loadavg_at_start": list(load_before),
        "loadavg_at_end": list(os.getloadavg()),
        "scratch": str(workdir.parent),
        "scratch_filesystem": filesystem(workdir.parent),
    }
    report = {
        "timestamp": stamp,
        "mode": run_mode,
        "benchmarks": names,
        "sizes": dataclasses.asdict(sizes),
        "machine": host,
        "git": _git(),
        "duration_s": round(elapsed, 1),
        "results": [result.as_dict() for result in results],
    }
    text = json.dumps(report, indent=2) + "\n"
    (RESULTS_DIR / f"{stamp}.json").write_text(text)
    (RESULTS_DIR / "latest.json").write_text(text)
    print(table(results))
    print(f"\n{run_mode} run, {elapsed:.1f} s; results in {RESULTS_DIR / (stamp + '.json')}")
    if load_before[0] > BUSY_LOADAVG:
        print(
            f"note: the 1-minute load average was {load_before[0]:.2f} at the start on "
            f"{os.cpu_count()} CPUs (other work, or a previous run): expect noisy latencies"
        )
    verdicts = {result.verdict for result in results}
    return 1 if "error" in verdicts or (args.strict and "fail" in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
