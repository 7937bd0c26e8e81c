"""The prompt text codex receives on stdin, and the global system prompt.

The text is built as the reference does (its section 4.2): `System:`, `User:` and `Assistant:`
blocks separated by blank lines, ending with `Assistant:`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway import regular_file
from gateway.regular_file import NotRegularFile

# The global system prompt is prepended to every run: a few pages at most.
MAX_SYSTEM_PROMPT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Message:
    role: str
    content: str


def messages_or_prompt(messages: Sequence[Message], prompt: str | None) -> list[Message]:
    """What a run says: its `messages`, else its `prompt` as one user message (a blank prompt
    says nothing)."""
    if messages:
        return list(messages)
    if prompt is not None and prompt.strip():
        return [Message("user", prompt)]
    return []


_PREFIXES = {"assistant": "Assistant", "system": "System"}


def build_prompt(system_prompt: str, messages: Iterable[Message]) -> str:
    parts: list[str] = []
    if system_prompt.strip():
        parts.append("System:\n" + system_prompt.strip())
    for message in messages:
        prefix = _PREFIXES.get((message.role or "user").lower(), "User")
        parts.append(f"{prefix}:\n{message.content.strip()}")
    parts.append("Assistant:")
    return "\n\n".join(parts) + "\n"


@dataclass(frozen=True)
class GlobalSystemPrompt:
    """CODEX_SYSTEM_PROMPT_FILE, read once at startup: only a regular file (a FIFO there would
    block the start until a writer came), of at most MAX_SYSTEM_PROMPT_BYTES."""

    text: str
    path: Path | None
    disabled: bool
    reason: str | None

    @property
    def enabled(self) -> bool:
        return bool(self.text)

    @classmethod
    def load(cls, path: Path, *, disabled: bool) -> GlobalSystemPrompt:
        if disabled:
            return cls("", None, True, "disabled")
        try:
            raw = regular_file.read(path, MAX_SYSTEM_PROMPT_BYTES, follow=True)
        except NotRegularFile as exc:
            return cls("", path, False, f"unusable: {exc.reason}")
        except OSError:
            return cls("", path, False, "missing")
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            return cls("", path, False, "empty")
        return cls(text, path, False, None)

    def combine(self, request_prompt: str) -> str:
        """The global prompt, once, before the request's own system prompt."""
        parts = [p.strip() for p in (self.text, request_prompt) if p.strip()]
        return "\n\n".join(parts)
