"""Supervision of the background loops: a loop that raises is logged and restarted, never the
end of the process.

The scheduler, the watcher and webhook delivery live in one TaskGroup beside the servers; an
exception escaping one of them would cancel the group and stop the gateway, and at the next start
the same input (a file on disk, an outbox entry) raises again. Each loop therefore runs under
`supervise`: an exception is logged with its traceback the first time it is seen (later repeats of
the same failure as one line, so a loop failing every second does not flood the log), then the
loop is started again after a backoff that doubles up to a cap and resets once a run of the loop
has lasted longer than the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
# Distinct failures logged with their traceback per loop; past it, every failure is one line
# (an exception text that changes each time, a path or a count in it, cannot grow the set).
MAX_TRACEBACKS = 64


async def supervise(
    name: str,
    loop: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    *,
    initial_backoff_s: float = INITIAL_BACKOFF_S,
    max_backoff_s: float = MAX_BACKOFF_S,
) -> None:
    """Run `loop(stop)` until it returns or `stop` is set, restarting it when it raises."""
    clock = asyncio.get_running_loop().time
    backoff = initial_backoff_s
    failures = 0
    seen: set[str] = set()
    while True:
        started = clock()
        try:
            await loop(stop)
            return
        except Exception as exc:  # whatever it was, the process must go on
            failures += 1
            if clock() - started > max_backoff_s:
                backoff = initial_backoff_s  # it had been running fine: a fresh failure
            signature = f"{type(exc).__name__}: {exc}"[:500]
            if signature not in seen and len(seen) < MAX_TRACEBACKS:
                seen.add(signature)
                log.exception("the %s loop failed; restarting it in %.1f s", name, backoff)
            else:
                log.warning(
                    "the %s loop failed (%d failures so far, %s; traceback not repeated); "
                    "restarting it in %.1f s",
                    name,
                    failures,
                    type(exc).__name__,
                    backoff,
                )
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        if stop.is_set():
            return
        backoff = min(backoff * 2, max_backoff_s)
