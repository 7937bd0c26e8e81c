"""Benchmark results: one row per figure, its verdict against a target, the table and the JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    """One figure: what was measured, the bound it must meet, and a baseline from the same run.

    `higher_is_better` turns the target into a lower bound (throughput); otherwise it is an upper
    bound. `error` replaces the figure when the benchmark could not measure it; `skipped` says
    why it was not measured on purpose (e.g. an optional comparison with nothing to compare).
    """

    name: str
    unit: str
    measured: float | None
    target: float
    baseline: float | None = None
    baseline_label: str = ""
    higher_is_better: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None

    @property
    def verdict(self) -> str:
        if self.skipped is not None:
            return "skipped"
        if self.error is not None or self.measured is None:
            return "error"
        ok = self.measured >= self.target if self.higher_is_better else self.measured <= self.target
        return "pass" if ok else "fail"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def failed(name: str, unit: str, target: float, error: str, *, higher: bool = False) -> Result:
    return Result(name, unit, None, target, higher_is_better=higher, error=error)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between the closest ranks."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50, p99, mean and max in milliseconds (2 decimals), and the sample count."""
    ms = [sample / 1e6 for sample in samples_ns]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
        "max_ms": round(max(ms), 2),
    }


def _number(value: float, unit: str) -> str:
    return f"{value:.2f} {unit}" if unit != "/s" else f"{value:.1f} /s"


def _row(result: Result) -> list[str]:
    measured = _number(result.measured, result.unit) if result.measured is not None else "-"
    bound = ">=" if result.higher_is_better else "<="
    baseline = "-"
    if result.baseline is not None:
        baseline = _number(result.baseline, result.unit)
        if result.baseline_label:
            baseline = f"{baseline} ({result.baseline_label})"
    verdict = result.verdict
    if result.skipped is not None:
        verdict = result.skipped
    elif result.error is not None:
        verdict = f"error: {result.error.splitlines()[0][:70]}" if result.error else "error"
    return [
        result.name,
        measured,
        f"{bound} {_number(result.target, result.unit)}",
        baseline,
        verdict,
    ]


def table(results: Sequence[Result]) -> str:
    """A Markdown table (it reads fine in a terminal too)."""
    header = ["benchmark", "measured", "target", "baseline (same run)", "verdict"]
    rows = [header, *(_row(result) for result in results)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows[1:])])
