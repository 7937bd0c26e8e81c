"""Interrupts: Ctrl-C while a command runs, counted and awaited instead of raised.

At the prompt, Ctrl-C is a key the line editor reads; while a command runs it is SIGINT, which
`catching_interrupts` turns into `Interrupts.press` so a run can ask the gateway to cancel it
instead of dying half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class Leave(BaseException):
    """The user wants out of the REPL now (Ctrl-C while a run was being cancelled).

    A BaseException, like KeyboardInterrupt: no command's error handling may swallow it.
    """


class Interrupts:
    """Ctrl-C presses while one command runs."""

    def __init__(self) -> None:
        self.count = 0
        self._pressed = asyncio.Event()

    def press(self) -> None:
        self.count += 1
        pressed, self._pressed = self._pressed, asyncio.Event()
        pressed.set()

    async def next(self) -> None:
        """Return at the next press."""
        await self._pressed.wait()

    async def before(self, work: asyncio.Future[Any]) -> bool:
        """Wait for `work` or the next press, whichever comes first; True for a press."""
        pressed: asyncio.Future[Any] = asyncio.ensure_future(self.next())
        try:
            await asyncio.wait((work, pressed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            pressed.cancel()
        return not work.done()


@contextlib.contextmanager
def catching_interrupts() -> Iterator[Interrupts]:
    """SIGINT becomes `Interrupts.press` for the duration (where this thread can take signals)."""
    loop = asyncio.get_running_loop()
    interrupts = Interrupts()
    try:
        loop.add_signal_handler(signal.SIGINT, interrupts.press)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
        yield interrupts
        return
    try:
        yield interrupts
    finally:
        loop.remove_signal_handler(signal.SIGINT)
