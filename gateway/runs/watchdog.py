"""The stall watchdog: stop a codex that has gone silent, but not one whose command is running.

A provider that accepts a request and never answers leaves codex waiting for ever, and one that
goes quiet mid-stream leaves it waiting for its idle timeout (5 minutes by default, then
retries). A watchdog around each codex process stops such a run long before its own deadline.

Silence is stdout: codex's JSON event stream is its account of the turn, and a line there (an
event, a retry notice, anything) is progress. stderr is not: it is free-form diagnostics whose
volume depends on codex's log level and that a codex stuck in a loop may keep writing; a run is
judged by what it reports, as its client sees it.

The clock is paused while one of codex's own tools runs (from an item's `item.started` to its
`item.completed`, for commands, MCP tool calls and sub-agent calls; several may overlap): a
long build or test suite prints nothing until it ends, and is not a stall. The run's own
deadline still bounds it, as it bounds a command codex left running in the background (it
answers the model after `yield_time_ms` and completes the item later, or never). A model's
answer is the other side: codex prints it only once complete (exec streams no deltas), so one
response that takes longer than the stall timeout is a stall; web searches happen inside it.

Its cost on the output path is one timestamp per batch of lines read and a type check per
event; one timer per process, rearmed only when it fires (at most once per timeout) or when the
last running tool ends. When it expires the watchdog cancels the attempt (as `asyncio.timeout`
does) and its exit raises `RunStalled`: the runner then stops codex as for any other end
(SIGINT to its group, a grace, SIGKILL).
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Final

from gateway.agent.events import JsonObject
from gateway.errors import RunStalled
from gateway.metrics.families import GatewayMetrics

log = logging.getLogger(__name__)

PAUSING_ITEMS: Final = frozenset({"command_execution", "mcp_tool_call", "collab_tool_call"})
"""Item types whose `item.started` .. `item.completed` is work of codex's own, not silence."""
_BOUNDS: Final = frozenset({"item.started", "item.completed"})


class Watchdog:
    """One codex process's stall watchdog: an async context around reading its output, fed
    with every batch of lines (`feed`) and shown every event (`observe`)."""

    __slots__ = (
        "_handle",
        "_now",
        "_on_stall",
        "_running",
        "_scope",
        "_timeout_s",
        "last",
        "stalled",
        "timeout_ms",
    )

    def __init__(self, timeout_ms: int, on_stall: Watchdogs | None = None) -> None:
        self.timeout_ms = timeout_ms  # 0: off
        self._timeout_s = timeout_ms / 1000
        self._on_stall = on_stall
        self._running: set[str] = set()  # the ids of the pausing items under way
        self._scope: asyncio.Timeout | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._now = _never
        self.last = 0.0  # the event loop's time of the last output
        self.stalled = False

    @property
    def paused(self) -> bool:
        return bool(self._running)

    def feed(self) -> None:
        """Codex printed something (a batch of stdout lines): the clock starts again."""
        self.last = self._now()

    def observe(self, event: JsonObject) -> None:
        """Pause the clock from a tool item's start to its end."""
        if event["type"] in _BOUNDS:
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") in PAUSING_ITEMS:
                self._item(event["type"] == "item.started", item)

    def _item(self, started: bool, item: JsonObject) -> None:
        key = str(item.get("id"))
        if started:
            self._running.add(key)
        elif key in self._running:
            self._running.discard(key)
            if not self._running and self._scope is not None:
                # The clock runs again from now: check when it would expire.
                self.last = self._now()
                self._arm(self.last + self._timeout_s)

    async def __aenter__(self) -> Watchdog:
        if self.timeout_ms <= 0:
            return self
        loop = asyncio.get_running_loop()
        self._now = loop.time
        # The cancellation itself is asyncio's (it tells the watchdog's cancel from a caller's
        # and from an outer deadline's); its own timer stays unset until the watchdog fires.
        self._scope = asyncio.timeout(None)
        await self._scope.__aenter__()
        self.last = loop.time()
        self._arm(self.last + self._timeout_s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        scope, self._scope = self._scope, None
        if scope is None:
            return
        try:
            await scope.__aexit__(exc_type, exc, traceback)
        except TimeoutError:  # raised only for the watchdog's own cancel
            # (Not when a caller's cancel or an outer deadline came too: theirs is the end.)
            log.warning("codex printed nothing for %d ms: stopped as stalled", self.timeout_ms)
            if self._on_stall is not None:
                self._on_stall.count()
            raise RunStalled(self.timeout_ms) from None

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_at(when, self._check)

    def _check(self) -> None:
        self._handle = None
        if self._running or self._scope is None:
            return  # paused: the end of the last running item arms the timer again
        due = self.last + self._timeout_s
        if self._now() < due:
            self._arm(due)
            return
        self.stalled = True
        self._scope.reschedule(self._now())  # cancels the attempt at once


class Watchdogs:
    """The runner's watchdogs: one per codex process, all with the configured timeout, and the
    count of runs they stopped (`/status`, `codex_gateway_runs_stalled_total`)."""

    def __init__(self, timeout_ms: int, metrics: GatewayMetrics | None = None) -> None:
        self.timeout_ms = timeout_ms
        self._metrics = metrics
        self.stopped = 0

    def watch(self) -> Watchdog:
        return Watchdog(self.timeout_ms, self)

    def count(self) -> None:
        self.stopped += 1
        if self._metrics is not None:
            self._metrics.runs_stalled.inc()


def _never() -> float:
    return 0.0  # a watchdog that is off keeps no time
