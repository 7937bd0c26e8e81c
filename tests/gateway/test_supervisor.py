"""The supervisor of the background loops: what it remembers of failures stays bounded."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from gateway.supervisor import MAX_TRACEBACKS, supervise


@pytest.mark.parametrize(
    ("failures", "distinct"),
    [(10, 10), (MAX_TRACEBACKS * 3, MAX_TRACEBACKS * 3), (MAX_TRACEBACKS * 3, 1)],
    ids=["few", "many-distinct", "many-same"],
)
async def test_tracebacks_logged_are_capped(
    caplog: pytest.LogCaptureFixture, failures: int, distinct: int
) -> None:
    """Every failure is logged (one line), but tracebacks only for the first MAX_TRACEBACKS
    distinct ones: a failure whose text changes each time cannot grow what is remembered."""
    stop = asyncio.Event()
    counter = itertools.count()

    async def failing(stop: asyncio.Event) -> None:
        n = next(counter)
        if n + 1 >= failures:
            stop.set()
        raise RuntimeError(f"failure {n % distinct} at /some/path/{n % distinct}")

    caplog.set_level(logging.WARNING, logger="gateway.supervisor")
    await asyncio.wait_for(
        supervise("failing", failing, stop, initial_backoff_s=0, max_backoff_s=0), 30
    )
    records = [r for r in caplog.records if r.name == "gateway.supervisor"]
    assert len(records) == failures
    traced = [r for r in records if r.exc_info is not None]
    assert len(traced) == min(distinct, MAX_TRACEBACKS)
