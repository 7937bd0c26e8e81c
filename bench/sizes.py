"""What every benchmark gets: its sizes (quick and full presets, each overridable by env), a
scratch directory, the tiny agent."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "BENCH_"
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    iterations: int
    """Sequential completions per path (direct, REST, gRPC) for the overhead figures."""
    warmup: int
    """Unmeasured completions per path before measuring."""
    requests: int
    """Completions per throughput measurement (gateway and direct)."""
    concurrency: int
    """Concurrent clients for throughput, memory and streaming load."""
    codex_rounds: int
    """Rounds of `concurrency` concurrent real-codex runs per binary (the peak is over all)."""
    codex_sleep_s: float
    """How long the scripted model stays silent per run (under the fake's 3 s idle timeout)."""
    stream_timeout_ms: int
    """`timeout_ms` of each chatty streaming run; /health is probed until they end."""
    health_samples: int
    """About this many GET /health probes with no load (the responsiveness baselines): the idle
    window lasts `health_samples * (health_interval_ms + 1)` ms."""
    health_interval_ms: int
    """Pause between /health probes (the probe process's)."""
    codex_stream_rounds: int
    """Rounds of `concurrency` concurrent real-codex streaming runs while /health is probed."""
    sessions: int
    """Sessions written on disk for the session-store benchmark."""
    startup_rounds: int
    """Gateway startups per session directory (empty, and the big one); the figure is the median."""
    list_samples: int
    """Sequential `GET /sessions?limit=50` (and as many `GET /health`) on the big store."""
    get_requests: int
    """`GET /sessions/:id` (and as many `GET /health`) for the throughput figure."""
    search_mib: int
    """Size of the searched stdout.log (generated once into bench-results/, then reused)."""
    search_exact_rounds: int
    """Exact searches of the big log (and as many `grep -c -i` baselines); the figure is the p50."""
    search_fuzzy_rounds: int
    """Fuzzy searches of the big log (and as many reference runs); the figure is the p50."""
    tail_lines: int
    """Lines the timestamping agent writes while a gRPC follower tails its session."""
    tail_pause_ms: int
    """Pause between those lines."""
    tail_rounds: int
    """Followed runs (and as many plain pipe readings for the baseline)."""
    triggers: int
    """Cron triggers in the trigger file the gateway loads while /health is probed."""
    trigger_rounds: int
    """Rounds of loading that file, listing it (`GET /triggers`) and emptying it."""
    cancel_rounds: int
    """Rounds of cancelling each of `concurrency` streaming runs, quiet then chatty."""
    line_cost_lines: int
    """Lines of the recorded codex mix replayed per run for the per-line cost (bench/lines.py)."""
    line_cost_rounds: int
    """Rounds of that run (and of an empty one), alternating the trees; the figure is the median."""


QUICK = Sizes(
    iterations=300,
    warmup=30,
    requests=1000,
    concurrency=8,
    codex_rounds=1,
    codex_sleep_s=2.0,
    stream_timeout_ms=3000,
    health_samples=300,
    health_interval_ms=10,
    codex_stream_rounds=5,
    sessions=10_000,
    startup_rounds=2,
    list_samples=300,
    get_requests=2000,
    search_mib=100,
    search_exact_rounds=5,
    search_fuzzy_rounds=3,
    tail_lines=500,
    tail_pause_ms=5,
    tail_rounds=1,
    triggers=10_000,
    trigger_rounds=3,
    cancel_rounds=2,
    line_cost_lines=40_000,
    line_cost_rounds=3,
)
FULL = Sizes(
    iterations=2000,
    warmup=100,
    requests=5000,
    concurrency=8,
    codex_rounds=3,
    codex_sleep_s=2.5,
    stream_timeout_ms=15_000,
    health_samples=1500,
    health_interval_ms=10,
    codex_stream_rounds=10,
    sessions=10_000,
    startup_rounds=5,
    list_samples=2000,
    get_requests=20_000,
    search_mib=100,
    search_exact_rounds=20,
    search_fuzzy_rounds=5,
    tail_lines=2000,
    tail_pause_ms=5,
    tail_rounds=3,
    triggers=10_000,
    trigger_rounds=10,
    cancel_rounds=5,
    line_cost_lines=100_000,
    line_cost_rounds=5,
)


def sizes_for(mode: str, environ: Mapping[str, str] = os.environ) -> Sizes:
    """The preset for `mode` ("quick" or "full"), then any `BENCH_<FIELD>` from the environment
    (`BENCH_ITERATIONS=1000`, `BENCH_REQUESTS=3000`, ...)."""
    sizes = FULL if mode == "full" else QUICK
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(Sizes):
        raw = environ.get(ENV_PREFIX + field.name.upper(), "").strip()
        if not raw:
            continue
        kind = float if field.type in ("float", float) else int
        try:
            changes[field.name] = kind(raw)
        except ValueError:
            raise SystemExit(
                f"{ENV_PREFIX}{field.name.upper()} must be a number, not {raw!r}"
            ) from None
    return dataclasses.replace(sizes, **changes)


@dataclass(frozen=True)
class Context:
    """What every benchmark gets: its sizes, a scratch directory, the tiny agent's binary."""

    sizes: Sizes
    workdir: Path
    tiny_agent: Path
    data_dir: Path
    """Where data generated once and reused across runs lives (bench-results/)."""
    log: LogFn
    """Progress lines (stderr)."""
