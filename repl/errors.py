"""Errors: what can make a command fail, each told to the user as one line.

ReplError               a command failed; str() is the line shown, never a traceback
 ├── UsageError          the command line is wrong (unknown command, missing argument)
 ├── GatewayUnreachable  nothing answers at the gateway's address
 └── GatewayError        the gateway answered with an error (an HTTP status or a gRPC code)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# What the user can do about an error, by its gRPC status name (REST bodies carry it as `code`).
_HINTS: Final[Mapping[str, str]] = {
    "UNAUTHENTICATED": "pass --key or set CODEX_GATEWAY_API_KEY (an API key or the API token)",
    "PERMISSION_DENIED": "pass --secure-token or set CODEX_GATEWAY_SECURE_TOKEN",
    "DEADLINE_EXCEEDED": "raise the run timeout with: timeout <seconds>",
}
# The same by the error's reason (its ErrorInfo reason), where the status says too little.
_REASON_HINTS: Final[Mapping[str, str]] = {
    "OUTPUT_SCHEMA_MISMATCH": "schema clear runs without it",
    # A 408 too, but the run timeout has nothing to do with it.
    "RUN_STALLED": "the gateway's CODEX_GATEWAY_STALL_TIMEOUT_MS stopped it, not the run timeout",
    # An API key's limits (the gateway's message names the key, the scope or the model).
    "SCOPE_DENIED": "this API key may not do that: use a key with the scope",
    "MODEL_NOT_ALLOWED": "not among this API key's allowed_models",
    "WORKSPACE_NOT_ALLOWED": "outside this API key's workspace_roots",
    "RATE_LIMITED": "this API key's runs_per_minute is spent",
}
LISTED_ERRORS: Final = 20
"""How many of an error's listed problems (a schema mismatch's) are shown."""


class ReplError(Exception):
    """A command failed; the message is the whole story."""


class UsageError(ReplError):
    """The command line is wrong."""


class GatewayUnreachable(ReplError):
    """Nothing answers at the gateway's address."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"cannot reach the gateway at {target}: {reason}")
        self.target = target
        self.reason = reason


class GatewayError(ReplError):
    """The gateway answered with an error.

    `status` is how the protocol names it ("404 Not Found" over REST, "NOT_FOUND" over gRPC),
    `code` the gRPC status name when known (REST error bodies carry it too), `details` the other
    fields of the error (`retry_after`, `active`, `max`, `reason`...).
    """

    def __init__(
        self, status: str, message: str, *, code: str = "", details: Mapping[str, Any] | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.code = code
        self.details = dict(details or {})
        super().__init__(self._line())

    @property
    def retry_after(self) -> int | None:
        value = self.details.get("retry_after")
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return max(0, round(value))
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return None

    def _line(self) -> str:
        line = f"{self.status}: {self.message}" if self.message else self.status
        active, limit = self.details.get("active"), self.details.get("max")
        if active is not None and limit is not None:
            line += f" ({active} of {limit} runs active)"
        notes = []
        failure = self.failure
        if failure is not None:
            kind, after = failure
            when = "" if after is None else f", the provider says retry after {_duration(after)}"
            notes.append(f"failure: {kind}{when}")
        if self.retry_after is not None:
            notes.append(f"retry after {self.retry_after} s")
        if self.field and self.field not in self.message:
            notes.append(f"field {self.field}")
        if self.code in _HINTS and self.reason not in _REASON_HINTS:
            notes.append(_HINTS[self.code])
        if self.reason in _REASON_HINTS:
            notes.append(_REASON_HINTS[self.reason])
            if isinstance(session := self.details.get("session_id"), str) and session:
                notes.append(f"the answer is kept: show {session} events")
        listed = self.listed
        shown = [f"  - {problem}" for problem in listed[:LISTED_ERRORS]]
        if len(listed) > LISTED_ERRORS:
            shown.append(f"  ... and {len(listed) - LISTED_ERRORS} more")
        return "\n".join([" · ".join([line, *notes]), *shown])

    @property
    def failure(self) -> tuple[str, int | None] | None:
        """A failed run's kind (`rate_limited`, `stalled`, ...) and the provider's
        `retry_after_ms`, when the error carries them."""
        failure = self.details.get("failure")
        if not isinstance(failure, Mapping) or not isinstance(failure.get("kind"), str):
            return None
        after = failure.get("retry_after_ms")
        if isinstance(after, str) and after.isdigit():  # int64 is a string in proto3 JSON
            after = int(after)
        return failure["kind"], after if isinstance(after, int) and after >= 0 else None

    @property
    def reason(self) -> str:
        reason = self.details.get("reason")
        return reason if isinstance(reason, str) else ""

    @property
    def field(self) -> str:
        """The request field the error is about (`images[2]`), when the gateway names one."""
        field = self.details.get("field")
        return field if isinstance(field, str) else ""

    @property
    def listed(self) -> list[str]:
        """The problems the error lists: a schema mismatch's `schema_errors` (`path: message`,
        the path a JSON pointer), then any other precondition `violations`."""
        lines: list[str] = []
        for key, subject, description in (
            ("schema_errors", "path", "message"),
            ("violations", "subject", "description"),
        ):
            items = self.details.get(key)
            for item in items if isinstance(items, list) else []:
                if isinstance(item, Mapping):
                    where, what = item.get(subject), str(item.get(description) or "")
                    lines.append(f"{where}: {what}" if where else what)  # no path: the root
        return [line for line in lines if line]


def _duration(ms: int) -> str:
    """`ms` as a person reads it: 2.5 s, 3 min 20 s, 2 h 5 min."""
    if ms < 60_000:
        return f"{ms / 1000:g} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
