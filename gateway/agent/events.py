"""Codex's JSON-lines event stream: framing, parsing, and what a run learns from it.

codex exec --json prints one JSON object per line (codex-cli.md section 5). Framing is
incremental and bounded: a line longer than the limit is dropped (its size is reported as a text
line) instead of being buffered. Lines that are not JSON objects are kept as text.

A thread id is a UUID (`is_thread_id`) wherever it enters: from `thread.started` here, from a
session's meta.json, from a request. It ends up in codex's argv after `resume`, so anything else
(`--dangerously-bypass-approvals-and-sandbox`, say) is never taken for one. Where it enters it
is also made canonical (`canonical_thread_id`: lower-case): the store looks threads up by exact
text, so `0199A213-...` must be the same thread as `0199a213-...` (or it would miss the check
that a secure session's thread is resumed only with the secure token).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]
_THREAD_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)


_fast_loads: Callable[[bytes], Any]
try:
    from orjson import loads as _fast_loads
except ImportError:  # a bare interpreter importing the config (test_hardening_secrets.py does)
    _fast_loads = json.loads

# 19 digits in a row: maybe an integer past 64 bits, which orjson reads as a float (json keeps
# it exact). Digits in a string count too; such a line is merely read by json. Found by mapping
# every digit to "0" and every other byte to " " (a tenth of what a regular expression costs).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_NUMBER = b"0" * 19


def is_thread_id(value: object) -> bool:
    """A codex thread id: a UUID in its canonical 36-character text form."""
    return isinstance(value, str) and _THREAD_ID.fullmatch(value) is not None


def canonical_thread_id(value: object) -> str | None:
    """A thread id in the one form the store and codex's argv use (lower-case, hyphenated), or
    None if `value` is no thread id. Only the 36-character hyphenated text is one: the other
    forms `uuid.UUID` reads (braces, `urn:uuid:`, no hyphens) are not."""
    return _canonical(value) if isinstance(value, str) and is_thread_id(value) else None


@functools.lru_cache(maxsize=256)
def _canonical(thread_id: str) -> str:
    # A run meets its thread id three times or more (the event, the record, the store).
    return str(uuid.UUID(thread_id))


class LineFramer:
    """Split a byte stream into lines of at most `max_line_bytes`.

    `feed` returns complete lines (without the newline). A line over the limit yields one
    `OversizedLine` marker and the rest of it is skipped up to the next newline.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._skipping = 0  # bytes of an oversized line skipped so far; 0 when not skipping

    def feed(self, chunk: bytes) -> Iterator[bytes | OversizedLine]:
        start = 0
        while start < len(chunk):
            newline = chunk.find(b"\n", start)
            end = len(chunk) if newline < 0 else newline
            piece = chunk[start:end]
            if self._skipping:
                self._skipping += len(piece)
            elif len(self._buffer) + len(piece) > self._max:
                self._skipping = len(self._buffer) + len(piece)
                self._buffer.clear()
            else:
                self._buffer += piece
            if newline < 0:
                return
            if self._skipping:
                yield OversizedLine(self._skipping)
                self._skipping = 0
            else:
                yield bytes(self._buffer)
                self._buffer.clear()
            start = newline + 1

    def close(self) -> Iterator[bytes | OversizedLine]:
        """Flush a last line that had no newline."""
        if self._skipping:
            yield OversizedLine(self._skipping)
        elif self._buffer:
            yield bytes(self._buffer)
        self._buffer.clear()
        self._skipping = 0


@dataclass(frozen=True)
class OversizedLine:
    size: int

    @property
    def text(self) -> str:
        return f"[codex-gateway: dropped an output line of {self.size} bytes over the limit]"


def parse_line(line: bytes) -> JsonObject | None:
    """The event on this line, or None when it is not a JSON object with a string `type`.

    orjson reads it (a third of json's cost, on every line of every agent); what orjson refuses
    or would read differently (NaN and infinities, lone surrogates, integers past 64 bits, which
    it turns into floats) is read by json, so the result is json's, whatever the line."""
    stripped = line.strip()
    if not stripped.startswith(b"{"):
        return None
    try:
        if _LONG_NUMBER in stripped.translate(_DIGITS_ONLY):
            raise ValueError("a number orjson may not keep exact")
        value = _fast_loads(stripped)
    except ValueError:  # orjson.JSONDecodeError is one
        try:
            value = json.loads(stripped)
        except (ValueError, RecursionError):
            return None
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return value
    return None


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_event(cls, raw: Any) -> Usage:
        if not isinstance(raw, dict):
            return cls()
        return cls(
            input_tokens=_count(raw.get("input_tokens")),
            output_tokens=_count(raw.get("output_tokens")),
            cached_input_tokens=_count(raw.get("cached_input_tokens")),
            reasoning_output_tokens=_count(raw.get("reasoning_output_tokens")),
        )

    def minus(self, earlier: Usage) -> Usage:
        """This cumulative thread usage less an earlier cumulative one (never negative)."""
        return Usage(
            input_tokens=max(0, self.input_tokens - earlier.input_tokens),
            output_tokens=max(0, self.output_tokens - earlier.output_tokens),
            cached_input_tokens=max(0, self.cached_input_tokens - earlier.cached_input_tokens),
            reasoning_output_tokens=max(
                0, self.reasoning_output_tokens - earlier.reasoning_output_tokens
            ),
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "reasoning_output_tokens": self.reasoning_output_tokens,
            "total_tokens": self.total_tokens,
        }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass
class RunOutcome:
    """What one codex process reported, folded from its events as they arrive."""

    max_kept_events: int = 1000
    # Events and tool calls kept for the result, in bytes (their text): a run printing many
    # 1 MiB events holds no more than this; the rest is in the session's events log.
    max_kept_bytes: int = 16 * 1024 * 1024
    kept_bytes: int = 0
    thread_id: str | None = None
    output: str = ""
    usage: Usage | None = None
    turn_completed: bool = False
    failure: str | None = None
    errors: list[str] = field(default_factory=list)
    events: list[JsonObject] = field(default_factory=list)
    events_dropped: int = 0
    tool_calls: list[JsonObject] = field(default_factory=list)

    def observe(self, event: JsonObject) -> None:
        kind = event["type"]
        if len(self.events) < self.max_kept_events and self._keeps(event):
            self.events.append(event)
        else:
            self.events_dropped += 1
        if kind == "thread.started" and is_thread_id(event.get("thread_id")):
            self.thread_id = self.thread_id or canonical_thread_id(event["thread_id"])
        elif kind == "turn.completed":
            self.turn_completed = True
            self.usage = Usage.from_event(event.get("usage"))
        elif kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self.failure = message if isinstance(message, str) else "codex reported turn.failed"
        elif kind == "error" and isinstance(event.get("message"), str):
            self.errors.append(event["message"])
        item = event.get("item")
        if isinstance(item, dict):
            self._observe_item(kind, item)

    def _keeps(self, value: object) -> bool:
        """Whether `value` still fits in the kept bytes (then it is counted in)."""
        size = _text_bytes(value)
        if self.kept_bytes + size > self.max_kept_bytes:
            return False
        self.kept_bytes += size
        return True

    def _observe_item(self, kind: str, item: JsonObject) -> None:
        item_type = item.get("type")
        if kind == "item.completed" and item_type == "agent_message":
            text = item.get("text")
            if isinstance(text, str):
                self.output = text
        elif item_type == "mcp_tool_call" and self._keeps(item):
            self.tool_calls.append(
                {
                    "type": "mcp_tool_call_end"
                    if kind == "item.completed"
                    else "mcp_tool_call_begin",
                    **{
                        key: item[key]
                        for key in ("server", "tool", "arguments", "result", "status")
                        if key in item
                    },
                }
            )
        elif item_type == "command_execution" and kind == "item.completed" and self._keeps(item):
            self.tool_calls.append(
                {
                    "type": "command_execution",
                    **{key: item[key] for key in ("command", "exit_code", "status") if key in item},
                }
            )

    @property
    def is_empty(self) -> bool:
        return not self.output and not self.events

    def failure_message(self) -> str | None:
        """The model-side failure codex reported, if any."""
        if self.failure:
            return self.failure
        fatal = [e for e in self.errors if not e.startswith("Reconnecting")]
        return fatal[-1] if fatal else None


def _text_bytes(value: object) -> int:
    """About what a parsed JSON value weighs on the wire: its texts, and a little per node
    (iterative: an agent's JSON may nest as deep as the parser allowed)."""
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += sum(len(key) + 4 for key in item)
            pending.extend(item.values())
        elif isinstance(item, list):
            total += len(item)
            pending.extend(item)
        else:
            total += 8
    return total
