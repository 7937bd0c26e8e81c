"""Tab completion: command names, their fixed words, and the session ids the REPL has seen."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from .commands import SESSION, arguments_for, command_names, find


class KnownSessions:
    """Session ids seen in lists and results, newest first, each with a short description."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._ids.items())

    def add(self, session_id: str | None, description: str = "") -> None:
        if session_id:
            self._ids.pop(session_id, None)
            self._ids = {session_id: description, **self._ids}

    def replace(self, sessions: Iterable[Mapping[str, Any]]) -> None:
        """The ids of a fresh `list` (newest first), instead of what was known."""
        self._ids = {}
        for session in sessions:
            session_id = session.get("session_id")
            if isinstance(session_id, str) and session_id:
                status = session.get("status") or ""
                objective = str(session.get("objective") or "")[:30]
                self._ids[session_id] = " ".join(filter(None, (str(status), objective)))


class ReplCompleter(Completer):
    """Completes the word under the cursor from the command table and the known sessions."""

    def __init__(self, sessions: KnownSessions) -> None:
        self._sessions = sessions

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        text = document.text_before_cursor
        words = text.split()
        ended = not text or text[-1].isspace()
        prefix = "" if ended else words[-1]
        if len(words) == 0 or (len(words) == 1 and not ended):
            for name in command_names():
                if name.startswith(prefix.lower()):
                    yield Completion(name, -len(prefix))
            return
        command = find(words[0])
        if command is None:
            return
        index = len(words) - 1 if ended else len(words) - 2
        slot = arguments_for(command, index)
        if slot == SESSION:
            for session_id, description in self._sessions:
                if session_id.startswith(prefix):
                    yield Completion(session_id, -len(prefix), display_meta=description)
        else:
            for word in slot:
                if word.startswith(prefix):
                    yield Completion(word, -len(prefix))
