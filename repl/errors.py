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
    "UNAUTHENTICATED": "pass --token or set CODEX_GATEWAY_API_TOKEN",
    "PERMISSION_DENIED": "pass --secure-token or set CODEX_GATEWAY_SECURE_TOKEN",
    "DEADLINE_EXCEEDED": "raise the run timeout with: timeout <seconds>",
}


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
        if self.retry_after is not None:
            notes.append(f"retry after {self.retry_after} s")
        if self.code in _HINTS:
            notes.append(_HINTS[self.code])
        return " · ".join([line, *notes])
