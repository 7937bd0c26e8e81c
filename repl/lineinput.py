"""Line input: a person at a terminal (prompt_toolkit), or a script on a pipe.

Both raise EOFError at the end of input and KeyboardInterrupt for Ctrl-C at the prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import Completer
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.styles import Style

PASTE_END = "'''"

_STYLE = Style.from_dict({"name": "ansicyan bold", "pinned": "ansiyellow"})


class LineInput(Protocol):
    """Where commands come from."""

    interactive: bool

    def read(self, pinned: str | None) -> str:
        """The next command line."""
        ...

    def read_more(self) -> str:
        """The next line of a multi-line paste."""
        ...

    def remember(self, line: str) -> None:
        """Put a line in the history as if it had been typed (a pasted run, whole)."""
        ...


class TerminalInput:
    """Line editing, history across runs, tab completion; Alt-Enter starts a new line."""

    interactive = True

    def __init__(self, history_path: Path, completer: Completer) -> None:
        self._session: PromptSession[str] = PromptSession(
            history=_history(history_path),
            completer=completer,
            complete_while_typing=False,
            auto_suggest=AutoSuggestFromHistory(),
            key_bindings=_key_bindings(),
            style=_STYLE,
        )
        self._paste: PromptSession[str] = PromptSession()

    def read(self, pinned: str | None) -> str:
        message = [("class:name", "codex")]
        if pinned:
            message.append(("class:pinned", f" ({pinned[:8]})"))
        message.append(("", "> "))
        return self._session.prompt(FormattedText(message))

    def read_more(self) -> str:
        return self._paste.prompt("... ")

    def remember(self, line: str) -> None:
        self._session.history.append_string(line)


class PipedInput:
    """Lines of a script, without prompts or editing."""

    interactive = False

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def read(self, pinned: str | None) -> str:
        return self.read_more()

    def read_more(self) -> str:
        line = self._stream.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def remember(self, line: str) -> None:
        pass


def _history(path: Path) -> History:
    """The history file, or one kept in memory when the file cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


def _key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    # Alt-Enter typed ahead while a run prints: the terminal is still in cooked mode, which turns
    # Enter into a line feed, so the editor reads Escape, Ctrl-J. Without this, the line was sent.
    @bindings.add("escape", "c-j")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return bindings
