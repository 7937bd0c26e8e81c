"""Fixtures for the REPL's tests: REPL processes in pseudo-terminals, closed after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.repl.terminal import Terminal, repl_env


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    """`spawn(*args, **env)`: the REPL in a pseudo-terminal with `args` and extra env vars."""
    started: list[Terminal] = []

    def start(*args: str, **env: str) -> Terminal:
        terminal = Terminal(list(args), repl_env(tmp_path, **env))
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        terminal.close()
