"""The live view of a run in flight: its events printed as they come, under a spinner."""

from __future__ import annotations

import json
import time
from types import TracebackType

from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from .render import JsonObject, event_lines


class RunView:
    """A run in flight: its events printed as they come, under a spinner with the elapsed time.

    Without a terminal there is no spinner, only the events.
    """

    def __init__(self, console: Console, *, full: bool, label: str = "running") -> None:
        self._console = console
        self._full = full
        self._label = label
        self._events = 0
        self._last = ""
        self._start = time.monotonic()
        self._spinner = Spinner("dots", style="cyan")
        self._live: Live | None = None
        self._hint = "Ctrl-C to cancel"
        self.session_id: str | None = None

    def __enter__(self) -> RunView:
        self._start = time.monotonic()
        if self._console.is_terminal:
            self._live = Live(
                get_renderable=self._render,
                console=self._console,
                transient=True,
                refresh_per_second=8,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._start

    def started(self, session_id: str) -> None:
        """The run's session is known (a streamed run names it first)."""
        self.session_id = session_id

    def cancelling(self) -> None:
        self._label = "cancelling"
        self._hint = "Ctrl-C again to leave"

    def event(self, event: JsonObject) -> None:
        self._events += 1
        self._last = str(event.get("type", ""))
        if self._full:
            line = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)
            self._console.print(Text(line, style="dim"), soft_wrap=True)
        else:
            for text in event_lines(event):
                self._console.print(text, soft_wrap=True)

    def _render(self) -> RenderableType:
        parts = [f"{self._label} · {self.elapsed_s:.1f}s · {self._events} event(s)"]
        if self._last:
            parts.append(self._last)
        parts.append(self._hint)
        self._spinner.update(text=Text(" · ".join(parts), style="dim"))
        return self._spinner
