"""The output budget: how fast the gateway takes its agents' output, shared among running agents.

Every line an agent prints costs the gateway's one event loop (framing, the session's log and
index, parsing, the live feed, every stream that relays it), and an agent can print far faster
than a loop can take it: 8 agents printing as fast as they can starved `GET /health` and
cancels for hundreds of milliseconds (BENCHMARKS.md, issue 18). So the gateway takes output at
most at `CODEX_GATEWAY_OUTPUT_LINES_PER_S` lines and `CODEX_GATEWAY_OUTPUT_BYTES_PER_S` bytes a
second, stdout and stderr together, shared equally among the agents reading at the time. Past
its share an agent's output is simply not read for a while: its pipe fills and its writes wait,
as with any slow reader. Nothing is dropped, nothing is reordered, and a real codex, which
prints a few events a second, never comes near it.

The pacing is a virtual clock per agent (GCRA): each batch read moves the agent's clock forward
by what it cost at the agent's share of the rate; the reader waits while that clock is ahead of
now. An agent that was quiet may take up to `BURST_S` of its share at once.

An agent is in the split from its first read until its stdout ends or it is stopped (its meter
is closed then), or until it has been quiet for `ACTIVE_S`. An ended agent that stayed in the
split would shrink every other share: with many short runs a second, a new agent's few lines
waited out a share left to agents long gone (BENCHMARKS.md, issue 18).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

BURST_S = 0.1
"""How much output, in seconds of an agent's share, a quiet agent may take without waiting."""
ACTIVE_S = 1.0
"""A running agent counts in the split until this long after its virtual clock: one that
stopped printing (waiting for its model) leaves the others its share."""


class OutputBudget:
    """The gateway-wide rates (0: that one is not limited), split among the agents reading."""

    def __init__(
        self,
        lines_per_s: int,
        bytes_per_s: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lines_per_s = lines_per_s
        self.bytes_per_s = bytes_per_s
        self._clock = clock
        self._active: dict[OutputMeter, float] = {}  # meter -> counted in the split until
        self.waited_s = 0.0  # pacing handed out in total (tests, the benchmark's details)

    @property
    def limited(self) -> bool:
        return self.lines_per_s > 0 or self.bytes_per_s > 0

    def readers(self) -> int:
        """Agents counted in the split now."""
        now = self._clock()
        return sum(1 for until in self._active.values() if until >= now)

    def meter(self) -> OutputMeter:
        """An account for one agent's output."""
        return OutputMeter(self, self._clock)

    def _charge(self, meter: OutputMeter, lines: int, size: int, now: float) -> float:
        """The seconds `lines` lines of `size` bytes cost `meter` at its share now."""
        for other, until in list(self._active.items()):
            if until < now:
                del self._active[other]
        self._active.setdefault(meter, now)
        share = len(self._active)
        cost = 0.0
        if self.lines_per_s > 0:
            cost = lines * share / self.lines_per_s
        if self.bytes_per_s > 0:
            cost = max(cost, size * share / self.bytes_per_s)
        return cost

    def _counted_until(self, meter: OutputMeter, until: float) -> None:
        self._active[meter] = until

    def _leave(self, meter: OutputMeter) -> None:
        self._active.pop(meter, None)


class OutputMeter:
    """One agent's account: `spend` what was read, wait the seconds it answers, read on."""

    def __init__(self, budget: OutputBudget, clock: Callable[[], float]) -> None:
        self._budget = budget
        self._clock = clock
        self._ahead_until = -math.inf  # the agent's virtual clock (a new agent has its burst)
        self._closed = False

    def spend(self, lines: int, size: int) -> float:
        """Account for `lines` lines (`size` bytes) just read; the seconds to wait before
        reading more of this agent's output (0.0: none)."""
        budget = self._budget
        if self._closed or not budget.limited:
            return 0.0
        now = self._clock()
        start = max(self._ahead_until, now - BURST_S)
        self._ahead_until = start + budget._charge(self, lines, size, now)
        budget._counted_until(self, max(now, self._ahead_until) + ACTIVE_S)
        wait = max(0.0, self._ahead_until - now)
        budget.waited_s += wait
        return wait

    def close(self) -> None:
        """The agent's output has ended (or it is being stopped): it leaves the split now, and
        whatever it still prints is read at once."""
        self._closed = True
        self._budget._leave(self)
