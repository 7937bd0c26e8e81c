"""Log lines: the human format, or one JSON object per line carrying the request's context.

The context (`request_id`, `session_id`, `run_id`) is a context variable: set at the request
boundary (bridge/requestid.py, gateway/api/requestid.py) and by the runner for a run
(gateway/runs/runner.py), it follows the work into every task started from there, so a run's
background work logs with its run's ids. `trace_id` is the current OpenTelemetry span's, when
there is one. Both processes (gateway and bridge) log through `configure_logging`.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

LOG_FORMATS: Final = ("text", "json")
HUMAN_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_KEYS: Final = ("request_id", "session_id", "run_id")
REDACTED: Final = "***"
# `scheme://user:password@host`: the password of any URL a message quotes (a database URL).
_URL_PASSWORD: Final = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")
# What json.dumps leaves raw but line-splitting tools (str.splitlines, some log shippers) break
# lines at: a message stays one line whatever it holds.
_LINE_BREAKS: Final = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_LINE_BREAK_CHARS: Final = re.compile("[\x85\u2028\u2029]")

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "codex_gateway_log_context", default=MappingProxyType({})
)


def bind(**fields: str | None) -> contextvars.Token[Mapping[str, str]]:
    """Add `fields` (None: left out) to the log context of this task and of the tasks it starts
    from now on. The token undoes it (`unbind`)."""
    merged = dict(_context.get())
    merged.update((key, value) for key, value in fields.items() if value)
    return _context.set(merged)


def unbind(token: contextvars.Token[Mapping[str, str]]) -> None:
    _context.reset(token)


def log_context() -> Mapping[str, str]:
    """The current log context: some of CONTEXT_KEYS."""
    return _context.get()


def current_trace_id() -> str | None:
    """The current OpenTelemetry trace id (32 hex digits), None outside a recorded span."""
    # Imported here: gateway/config.py imports this module, and must import with nothing but
    # the standard library (a startup check runs it under the system's python as another user).
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover  # installed with the gateway
        return None
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 UTC), level, logger, message, exception, and
    the log context and trace id where there are some."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        entry.update(_context.get())
        trace_id = current_trace_id()
        if trace_id is not None:
            entry["trace_id"] = trace_id
        line = json.dumps(entry, ensure_ascii=False, default=str)
        return _LINE_BREAK_CHARS.sub(lambda match: _LINE_BREAKS[match.group()], line)


class SecretRedactor(logging.Filter):
    """Replaces the given secret values, and the password of any URL, in every message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _URL_PASSWORD.sub(rf"\g<head>{REDACTED}@", text)


def configure_logging(level: int, log_format: str = "text", secrets: Iterable[str] = ()) -> None:
    """The process's logging: a stderr handler in `log_format` (LOG_FORMATS) at `level`."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(HUMAN_FORMAT)
    )
    handler.addFilter(SecretRedactor(secrets))
    logging.basicConfig(level=level, handlers=[handler])
