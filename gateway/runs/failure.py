"""Why a run did not complete: its failure's kind, decided from what the run saw.

Every run that does not complete carries a `RunFailure`: `kind`, the machine-readable part (a
string: a client must expect kinds it does not know), codex's (or the gateway's) own `message`
kept as it was, and `retry_after_ms` when the provider said when to try again.

| kind                     | what happened                                    | retried |
|--------------------------|--------------------------------------------------|---------|
| auth                     | the provider refused the credentials (401/403)   | no      |
| model_not_found          | unknown model                                    | no      |
| rate_limited             | provider 429 (a rate limit)                      | yes (*) |
| usage_limit              | quota or usage limit exhausted                   | yes (*) |
| context_window_exceeded  | the thread no longer fits                        | no      |
| provider_error           | provider 5xx, a dropped or silent stream         | yes     |
| stalled                  | the stall watchdog stopped it                    | yes     |
| timeout                  | the run's deadline                               | no      |
| cancelled                | a cancel                                         | no      |
| agent_crashed            | codex died (a signal, an unexpected exit)        | yes     |
| interrupted              | the gateway lost it (crash, restart, replica)    | no      |
| output_schema_mismatch   | the answer did not match the run's output_schema | no      |
| invalid_request          | what was asked cannot run (found once it started)| no      |
| agent_error              | codex failed for a reason none of the above names| no      |
| gateway_error            | the gateway could not run it (storage, spawn)    | no      |

(*) not before the time the provider named, and never past the run's budget (the runner's
`_attempts`).

codex reports a failed turn as `turn.failed` (after an `error` event with the same message);
its texts, measured on codex 0.169.0 (shared/spec/codex-cli.md section 9) and worded in its
source (codex-rs/core/src/error.rs, codex-api/src/api_bridge.rs, sse/responses.rs):

- 401/403: "unexpected status 401 Unauthorized: <body>, url: ..."; a missing key: "Missing
  environment variable: `FAKE_API_KEY`."
- 429: "exceeded retry limit, last status: 429 Too Many Requests" (a Retry-After header is not
  reported); a rate limit in the stream: "rate limit exceeded: ... Please try again in 2.5s.";
  `usage_limit_reached`: "You've hit your usage limit. Try again at 3:04 PM." (codex's local
  time; a date first when the reset is not today: "Dec 7th, 2026 3:04 PM"), or "... Try again
  later."; insufficient_quota: "Quota exceeded. Check your plan and billing details."
- context: "Codex ran out of room in the model's context window. ..."
- unknown model: the provider's own words ("The model `nope` does not exist."); codex's warning
  item "Model metadata for `nope` not found" precedes it.
- 5xx, dropped streams: "We're currently experiencing high demand, ...", "unexpected status 503
  ...", "stream disconnected before completion: <why>", "Connection failed: ...".
"""

from __future__ import annotations

import enum
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import (
    AgentFailed,
    GatewayError,
    InvalidRequest,
    OutputSchemaMismatch,
    RunCancelled,
    RunInterrupted,
    RunStalled,
    RunTimedOut,
)

MAX_MESSAGE_CHARS = 2000


class FailureKind(enum.StrEnum):
    """The kinds this gateway reports (a stored one it does not know stays a string)."""

    AUTH = "auth"
    MODEL_NOT_FOUND = "model_not_found"
    RATE_LIMITED = "rate_limited"
    USAGE_LIMIT = "usage_limit"
    CONTEXT_WINDOW_EXCEEDED = "context_window_exceeded"
    PROVIDER_ERROR = "provider_error"
    STALLED = "stalled"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    AGENT_CRASHED = "agent_crashed"
    INTERRUPTED = "interrupted"
    OUTPUT_SCHEMA_MISMATCH = "output_schema_mismatch"
    INVALID_REQUEST = "invalid_request"
    AGENT_ERROR = "agent_error"
    GATEWAY_ERROR = "gateway_error"


RETRIED = frozenset(
    {
        FailureKind.RATE_LIMITED,
        FailureKind.USAGE_LIMIT,
        FailureKind.PROVIDER_ERROR,
        FailureKind.STALLED,
        FailureKind.AGENT_CRASHED,
    }
)
"""The kinds another attempt may cure (when CODEX_GATEWAY_MAX_RETRIES > 0)."""


@dataclass(frozen=True)
class RunFailure:
    """Why a run did not complete (a run record's `failure`, the error's status details)."""

    kind: FailureKind | str
    message: str
    retry_after_ms: int | None = None

    @property
    def retried(self) -> bool:
        return self.kind in RETRIED

    def as_json(self) -> dict[str, Any]:
        """As every answer shows it: `retry_after_ms` null when the provider named no time."""
        return {
            "kind": str(self.kind),
            "message": self.message,
            "retry_after_ms": self.retry_after_ms,
        }

    @classmethod
    def from_json(cls, value: object) -> RunFailure | None:
        """A stored `failure` (a kind this gateway does not know stays the string it was)."""
        if not isinstance(value, Mapping) or not isinstance(value.get("kind"), str):
            return None
        kind: str = value["kind"]
        message = value.get("message")
        after = value.get("retry_after_ms")
        return cls(
            _KINDS.get(kind, kind),
            message if isinstance(message, str) else "",
            after if isinstance(after, int) and not isinstance(after, bool) else None,
        )


_KINDS: dict[str, FailureKind] = {kind.value: kind for kind in FailureKind}


def failure(kind: FailureKind | str, message: str, retry_after_ms: int | None = None) -> RunFailure:
    return RunFailure(kind, message[:MAX_MESSAGE_CHARS], retry_after_ms)


# -- codex's messages

_AUTH = re.compile(
    r"unexpected status 40[13]\b|\b40[13] (Unauthorized|Forbidden)\b|Missing environment variable"
    r"|invalid_api_key|Incorrect API key|Access blocked by Cloudflare|refresh token",
    re.IGNORECASE,
)
_USAGE_LIMIT = re.compile(
    r"hit your usage limit|Quota exceeded|insufficient_quota|usage_not_included"
    r"|To use Codex with your ChatGPT plan",
    re.IGNORECASE,
)
_RATE_LIMITED = re.compile(
    r"\b429\b|rate limit exceeded|rate limit reached|rate_limit_exceeded|Too Many Requests",
    re.IGNORECASE,
)
_CONTEXT = re.compile(
    r"context window|context_length_exceeded|maximum context length", re.IGNORECASE
)
_MODEL_NOT_FOUND = re.compile(
    r"model_not_found|\bmodel\b[^.]*\b(does not exist|not found|is not supported)",
    re.IGNORECASE,
)
_PROVIDER = re.compile(
    r"stream disconnected before completion|unexpected status 5\d\d\b|last status: 5\d\d\b"
    r"|experiencing high demand|Connection failed|Error while reading the server response"
    r"|server_error|server is overloaded|request timed out|idle timeout",
    re.IGNORECASE,
)
_UNKNOWN_MODEL_WARNING = re.compile(r"Model metadata for .* not found", re.IGNORECASE)
_NOT_FOUND_STATUS = re.compile(r"unexpected status 404\b", re.IGNORECASE)

# "Please try again in 11.054s", "try again in 28ms", "Try again in 35 seconds"
_TRY_AGAIN_IN = re.compile(
    r"try again in\s*(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec|seconds?|m|min|minutes?)\b",
    re.IGNORECASE,
)
# "Try again at 3:04 PM." / "Try again at Dec 7th, 2026 3:04 PM." (codex's local time)
_TRY_AGAIN_AT = re.compile(
    r"try again at\s+(?:([A-Z][a-z]{2}) (\d{1,2})(?:st|nd|rd|th), (\d{4}) )?"
    r"(\d{1,2}):(\d{2}) ([AP]M)",
    re.IGNORECASE,
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_UNIT_MS = {
    **dict.fromkeys(("ms", "millisecond", "milliseconds"), 1),
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1000),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60_000),
}


def classify_message(message: str, *, now: datetime | None = None) -> RunFailure | None:
    """The failure codex's message names, or None when it names none of the known kinds."""
    if _USAGE_LIMIT.search(message):
        return failure(FailureKind.USAGE_LIMIT, message, retry_after_ms(message, now=now))
    if _AUTH.search(message):
        return failure(FailureKind.AUTH, message)
    if _RATE_LIMITED.search(message):
        return failure(FailureKind.RATE_LIMITED, message, retry_after_ms(message, now=now))
    if _CONTEXT.search(message):
        return failure(FailureKind.CONTEXT_WINDOW_EXCEEDED, message)
    if _MODEL_NOT_FOUND.search(message):
        return failure(FailureKind.MODEL_NOT_FOUND, message)
    if _PROVIDER.search(message):
        return failure(FailureKind.PROVIDER_ERROR, message)
    return None


def retry_after_ms(message: str, *, now: datetime | None = None) -> int | None:
    """When the message says to try again, in ms from `now` (aware; default: the local time).

    "Try again at 3:04 PM" names a minute: the wait runs to its end, so that a retry is never
    early. A time that is already past (a clock skew) is no wait at all."""
    found = _TRY_AGAIN_IN.search(message)
    if found is not None:
        return max(0, round(float(found[1]) * _UNIT_MS[found[2].lower()]))
    found = _TRY_AGAIN_AT.search(message)
    if found is None:
        return None
    current = now or datetime.now().astimezone()
    hour = int(found[4]) % 12 + (12 if found[6].upper() == "PM" else 0)
    try:
        if found[1] is not None:
            month = _MONTHS.get(found[1].lower())
            if month is None:
                return None
            day = current.replace(
                year=int(found[3]), month=month, day=int(found[2]), hour=hour, minute=int(found[5])
            )
        else:
            day = current.replace(hour=hour, minute=int(found[5]))
    except ValueError:  # no such date
        return None
    reset = day.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return max(0, int((reset - current).total_seconds() * 1000))


def child_zone(env: Mapping[str, str]) -> tzinfo | None:
    """The time zone codex formats its "Try again at" in: the TZ the run gives it, if it is
    an IANA name; else the gateway's own local time (None)."""
    name = env.get("TZ", "").removeprefix(":")
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# -- one codex process


def classify_agent(
    *,
    message: str | None,
    exit_code: int | None,
    stderr_tail: str,
    warnings: Iterable[str] = (),
    zone: tzinfo | None = None,
) -> RunFailure:
    """Why a codex process failed: from its `turn.failed` / fatal `error` message when it
    printed one, else from its stderr and how it exited. `warnings` are the texts of its
    `item.completed` items of type `error` (non-fatal: an unknown model's warning tells a 404
    for what it is). `message` is the text reported (kept whatever the kind)."""
    now = datetime.now(zone) if zone is not None else None
    last = _last_line(stderr_tail)
    text = message or last or f"codex exited with code {exit_code}"
    if message:
        found = classify_message(message, now=now)
        if found is not None:
            return failure(found.kind, text, found.retry_after_ms)
        if _NOT_FOUND_STATUS.search(message) and any(
            _UNKNOWN_MODEL_WARNING.search(w) for w in warnings
        ):
            return failure(FailureKind.MODEL_NOT_FOUND, text)
        if exit_code is not None and exit_code < 0:
            return failure(FailureKind.AGENT_CRASHED, text)
        return failure(FailureKind.AGENT_ERROR, text)
    if exit_code is not None and (exit_code < 0 or exit_code > 1):
        # A signal (killed by the OOM killer, say) or a panic (101): nothing codex decided.
        return failure(FailureKind.AGENT_CRASHED, _exit_text(text, exit_code))
    if last is not None:
        found = classify_message(last, now=now)
        if found is not None:
            return failure(found.kind, text, found.retry_after_ms)
        if last.startswith("Error"):  # codex's own refusal: config, resume, working directory
            return failure(FailureKind.AGENT_ERROR, text)
    return failure(FailureKind.AGENT_CRASHED, text)


def warnings_in(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """The texts of codex's non-fatal `error` items among `events`."""
    found = []
    for event in events:
        item = event.get("item")
        if (
            event.get("type") == "item.completed"
            and isinstance(item, Mapping)
            and item.get("type") == "error"
            and isinstance(item.get("message"), str)
        ):
            found.append(item["message"])
    return found


def _exit_text(text: str, exit_code: int) -> str:
    if exit_code >= 0 or not text.startswith("codex exited with code"):
        return text
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        return text
    return f"codex was killed by {name}"


def _last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    meaningful = [
        line
        for line in lines
        if not line.startswith(("Reading additional input", "WARNING: proceeding"))
    ]
    return meaningful[-1][:MAX_MESSAGE_CHARS] if meaningful else None


# -- the gateway's own errors


def of_error(error: GatewayError) -> RunFailure:
    """The failure a run's error stands for."""
    if error.failure is not None:
        return error.failure
    message = error.message
    if isinstance(error, RunStalled):
        return failure(FailureKind.STALLED, message)
    if isinstance(error, RunTimedOut):
        return failure(FailureKind.TIMEOUT, message)
    if isinstance(error, RunCancelled):
        return failure(FailureKind.CANCELLED, message)
    if isinstance(error, RunInterrupted):
        return failure(FailureKind.INTERRUPTED, message)
    if isinstance(error, OutputSchemaMismatch):
        return failure(FailureKind.OUTPUT_SCHEMA_MISMATCH, message)
    if isinstance(error, InvalidRequest):  # an image that is none, say: a 400 still
        return failure(FailureKind.INVALID_REQUEST, message)
    if isinstance(error, AgentFailed):
        return classify_agent(
            message=message, exit_code=error.exit_code, stderr_tail=error.stderr_tail
        )
    return failure(FailureKind.GATEWAY_ERROR, message)
