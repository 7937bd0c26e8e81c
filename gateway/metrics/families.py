"""The gateway's metric families, on a registry of its own (several gateways share a process in
tests). Names follow Prometheus conventions: `codex_gateway_` prefix, base units, `_total`.

Labels are bounded: `source` is one of SOURCES (a fork's source `completion` counts as `api`:
both are a client's request over the API), `status` one of the run statuses, `model` the first
MAX_MODELS distinct model names seen and `other` after them, RPC `method` one of the served
methods. Never a session id, a path or free user input.

Timeouts and cancels are `codex_gateway_runs_finished_total{status="timeout"|"cancelled"}`; of
the timeouts, those the stall watchdog stopped are also `codex_gateway_runs_stalled_total`. Why
runs did not complete is `codex_gateway_run_failures_total{kind}`, `kind` one of the failure
kinds (gateway/runs/failure.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from gateway.agent.events import Usage
from gateway.runs.failure import FailureKind

if TYPE_CHECKING:
    from gateway.runs.run import Run

METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
SOURCES: Final = frozenset({"api", "prompt", "nudge", "trigger", "watcher"})
# Run sources as recorded in a run's record, as counted here.
_SOURCE_ALIASES: Final = {"completion": "api", "fork": "api"}
MAX_MODELS: Final = 16
OTHER: Final = "other"
# A run that names no model gets codex's own default.
DEFAULT_MODEL: Final = "default"
# Seconds: from a millisecond to the gateway's longest run (30 minutes).
RUN_BUCKETS: Final = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800)
WAIT_BUCKETS: Final = (0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
RPC_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 300, 1800)


_FAILURE_KINDS: Final = frozenset(kind.value for kind in FailureKind)


def source_label(source: str) -> str:
    source = _SOURCE_ALIASES.get(source, source)
    return source if source in SOURCES else OTHER


class GatewayMetrics:
    """The families the gateway's code records into; `exposition()` is the scrape."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.runs_started = Counter(
            "codex_gateway_runs_started",
            "Runs started (a slot and the session held), by source.",
            ["source"],
            registry=registry,
        )
        self.runs_finished = Counter(
            "codex_gateway_runs_finished",
            "Runs finished, by source and final status.",
            ["source", "status"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "codex_gateway_run_duration_seconds",
            "Duration of finished runs, from start to recorded end.",
            ["source"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.runs_running = Gauge(
            "codex_gateway_runs_running", "Runs running now in this process.", registry=registry
        )
        self.slot_wait = Histogram(
            "codex_gateway_slot_wait_seconds",
            "Time a run request waited for a concurrency slot (0 when one was free).",
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.runs_stalled = Counter(
            "codex_gateway_runs_stalled",
            "Runs whose codex the stall watchdog stopped (silent for CODEX_GATEWAY_STALL_TIMEOUT_MS"
            " with no command running); they also finish with status timeout.",
            registry=registry,
        )
        self.runs_rejected = Counter(
            "codex_gateway_runs_rejected",
            "Run requests refused: concurrency_limit or rate_limited (429), session_busy (409).",
            ["reason"],
            registry=registry,
        )
        self.spawn_failures = Counter(
            "codex_gateway_agent_spawn_failures",
            "codex processes that could not be started.",
            registry=registry,
        )
        self.retries = Counter(
            "codex_gateway_run_retries",
            "Further attempts of runs whose attempt failed (CODEX_GATEWAY_MAX_RETRIES).",
            registry=registry,
        )
        self.run_failures = Counter(
            "codex_gateway_run_failures",
            "Runs that did not complete, by failure kind (auth, rate_limited, stalled, ...).",
            ["kind"],
            registry=registry,
        )
        self.tokens = Counter(
            "codex_gateway_tokens",
            "Tokens used by runs, by model and kind (input, cached_input, output).",
            ["model", "kind"],
            registry=registry,
        )
        self.rpcs = Counter(
            "codex_gateway_grpc_requests",
            "RPCs answered, by method and gRPC code (forwarded REST requests included).",
            ["method", "code"],
            registry=registry,
        )
        self.rpc_duration = Histogram(
            "codex_gateway_grpc_request_duration_seconds",
            "RPC latency, by method (a streaming RPC: until its stream ends).",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.auth_failures = Counter(
            "codex_gateway_auth_failures",
            "Calls refused for their API key, by reason (missing, unknown, expired, disabled).",
            ["reason"],
            registry=registry,
        )
        self.loop_lag = Gauge(
            "codex_gateway_event_loop_lag_seconds",
            "How late the event loop last ran a timer (sampled continuously).",
            registry=registry,
        )
        self._models: set[str] = set()
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def child(self, family: Any, *values: str) -> Any:
        """`family.labels(*values)`, looked up once per label set: labels() takes a lock and
        builds its key at every call, and a run asks for half a dozen. Every label here has a
        bounded set of values."""
        key = (family, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = family.labels(*values)
        return found

    def run_started(self, run: Run) -> None:
        self.child(self.runs_started, source_label(run.request.source)).inc()
        self.runs_running.inc()

    def run_finished(self, run: Run) -> None:
        """The run's end, once it is recorded: its status, duration, retries and tokens."""
        source = source_label(run.request.source)
        self.runs_running.dec()
        self.child(self.runs_finished, source, run.status).inc()
        self.child(self.run_duration, source).observe(run.duration_ms / 1000)
        attempts = run.record.attempts or 0
        if attempts > 1:
            self.retries.inc(attempts - 1)
        if run.failure is not None:
            kind = run.failure.kind
            self.run_failures.labels(kind if kind in _FAILURE_KINDS else OTHER).inc()
        usage = run.outcome.usage
        if usage is not None:
            self.count_tokens(run.model or DEFAULT_MODEL, usage.minus(run.usage_before))

    def model_label(self, model: str) -> str:
        """The model's own name for the first MAX_MODELS distinct names, `other` after."""
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODELS:
            return OTHER
        self._models.add(model)
        return model

    def count_tokens(self, model: str, usage: Usage) -> None:
        label = self.model_label(model)
        self.child(self.tokens, label, "input").inc(usage.input_tokens)
        self.child(self.tokens, label, "cached_input").inc(usage.cached_input_tokens)
        self.child(self.tokens, label, "output").inc(usage.output_tokens)

    def auth_failures_counter(self) -> Callable[[str], None]:
        """Counts one refused key by its reason (a bounded set: KeyRejected's and missing)."""
        return lambda reason: self.auth_failures.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
