"""The cost of traces: completion overhead with tracing exporting every span to a local
collector stand-in (bench/collector.py) beside the same build with tracing off (no OTEL_*
variables: the no-op tracer). The issue's bound: <= 0.5 ms more, REST and gRPC."""

from __future__ import annotations

from dataclasses import replace

from bench.collector import Collector
from bench.completion import GRPC_OVERHEAD_TARGET_MS, REST_OVERHEAD_TARGET_MS, overhead_rows
from bench.results import Result
from bench.sizes import Context

EXTRA_TARGET_MS = 0.5


async def tracing_overhead(ctx: Context) -> list[Result]:
    off = await overhead_rows(ctx, ctx.workdir / "tracing-off", ", tracing off")
    with Collector() as collector:
        on = await overhead_rows(
            ctx,
            ctx.workdir / "tracing-on",
            ", tracing exporting",
            settings={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint},
            targets=(
                off[0].measured or REST_OVERHEAD_TARGET_MS,
                off[1].measured or GRPC_OVERHEAD_TARGET_MS,
            ),
        )
        received = len(collector.spans())
    ctx.log(f"tracing: the collector received {received} spans")
    if received == 0:
        return [*off, *(replace(row, error="no span reached the collector") for row in on)]
    # Tracing on is bound by tracing off plus 0.5 ms, and compared with it.
    on = [
        replace(
            row,
            target=round((base.measured or 0.0) + EXTRA_TARGET_MS, 2),
            baseline=base.measured,
            baseline_label="tracing off",
            details={**row.details, "spans_received": received},
        )
        for row, base in zip(on, off, strict=True)
    ]
    return [*off, *on]
