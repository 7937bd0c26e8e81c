"""The line editor's own keys, fed through a pipe instead of a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import DummyCompleter
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from repl.lineinput import TerminalInput


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param("one\x1b\rtwo\r", id="alt-enter"),
        # Typed ahead while a run prints: the terminal is still in cooked mode and turns Enter
        # into a line feed, so Alt-Enter reaches the editor as Escape, Ctrl-J.
        pytest.param("one\x1b\ntwo\r", id="alt-enter-typed-ahead"),
    ],
)
def test_alt_enter_starts_a_new_line_instead_of_sending(keys: str, tmp_path: Path) -> None:
    with create_pipe_input() as keyboard, create_app_session(input=keyboard, output=DummyOutput()):
        editor = TerminalInput(tmp_path / "history", DummyCompleter())
        keyboard.send_text(keys)
        assert editor.read(None) == "one\ntwo"
