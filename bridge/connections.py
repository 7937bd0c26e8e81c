"""Connection limits: what one client can hold of the bridge before it has sent a request.

uvicorn's HTTP protocol (httptools) bounds neither the time nor the bytes of a request's head,
and holds any number of connections: idle half-requests exhaust the process's descriptors and a
few 64 MiB header values its memory. `limited_protocol` returns its protocol with:

- a header deadline: a connection that has not sent a whole request head within
  `header_timeout_s` of its start (or of the first byte of its next request) is closed;
- head limits: more than `max_header_bytes` of request line and headers, or more than
  `max_headers` header fields, is answered 431 and the connection closed, with no more than the
  limit plus one read ever held;
- a connection cap: past `max_connections` open connections a new one is answered 503 and closed
  at once, so descriptors stay available for the connections being served.

`AcceptErrors` turns asyncio's traceback per failed `accept()` (EMFILE and friends, retried every
second) into one warning line per interval; refused connections are logged the same way.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .responses import encode_json

logger = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_S: Final = 10.0
DEFAULT_MAX_HEADER_BYTES: Final = 32_768
DEFAULT_MAX_HEADERS: Final = 100
DEFAULT_MAX_CONNECTIONS: Final = 1000
LOG_INTERVAL_S: Final = 10.0
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_FAILED: Final = "socket.accept() out of system resource"  # asyncio's own message


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if self.header_timeout_s <= 0:
            raise ValueError(f"header_timeout_s must be positive, got {self.header_timeout_s}")
        for name in ("max_header_bytes", "max_headers", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


class RateLimitedLog:
    """A warning per key at most once per interval, with the count of those it held back."""

    def __init__(self, log: logging.Logger, interval_s: float = LOG_INTERVAL_S) -> None:
        self.log = log
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" ({held} more like it in the last {now - last:.0f} s)" if held and last else ""
        self.log.warning(message + suffix, *args)


class AcceptErrors:
    """A loop exception handler: accept() failures once per interval, the rest as before."""

    def __init__(self, loop: asyncio.AbstractEventLoop, log: RateLimitedLog) -> None:
        self.loop = loop
        self.log = log
        self.previous = loop.get_exception_handler()

    def __enter__(self) -> AcceptErrors:
        self.loop.set_exception_handler(self)
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.set_exception_handler(self.previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") == _ACCEPT_FAILED or (
            isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS
        ):
            reason = exc.strerror if isinstance(exc, OSError) else context.get("message")
            self.log.warning("accept", "cannot accept connections: %s; retrying", reason)
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


class _HeadTooLarge(Exception):
    pass


class _LimitedProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]
    log: ClassVar[RateLimitedLog]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True
        self._head_bytes = 0  # as received, while the head is incomplete
        self._head_size = 0  # as parsed: request target and header fields
        self._head_fields = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refused = True
            self.log.warning(
                "cap",
                "refusing connections: %d open (CODEX_GATEWAY_MAX_CONNECTIONS)",
                self.limits.max_connections,
            )
            self._reply_and_close(503, "UNAVAILABLE", "Too many connections; try again later")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.parser is None:
            return
        self._unset_keepalive_if_required()
        if self._awaiting_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._head_too_large()
            else:
                self._invalid()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            self._invalid()
        else:
            if self._awaiting_head and self._head_bytes > self.limits.max_header_bytes:
                self._head_too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_head = True
        self._head_size = self._head_fields = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), fields=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, fields=1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def _count(self, size: int, *, fields: int) -> None:
        self._head_size += size
        self._head_fields += fields
        if (
            self._head_size > self.limits.max_header_bytes
            or self._head_fields > self.limits.max_headers
        ):
            raise _HeadTooLarge

    def _head_too_large(self) -> None:
        self.log.warning("head", "refused a request head over the limits (431)")
        self._reply_and_close(
            431,
            "INVALID_ARGUMENT",
            f"Request header fields too large: at most {self.limits.max_header_bytes} bytes "
            f"and {self.limits.max_headers} fields",
        )

    def _invalid(self) -> None:
        self.log.warning("invalid", "Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request waits for the answer before it: its head is not late.
            self._arm_head_timer()
            return
        self.log.warning("timeout", "closed a connection that sent no request head in time")
        self.transport.close()

    def _reply_and_close(self, status: int, code: str, message: str) -> None:
        body = encode_json({"error": message, "code": code})
        phrase = {431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, phrase, len(body), body)
        )
        self._refused = True
        self._cancel_head_timer()
        self.transport.close()


def limited_protocol(limits: ConnectionLimits, log: RateLimitedLog) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with `limits` (a class per server: uvicorn builds one
    protocol per connection from the class)."""
    return type("LimitedHttpToolsProtocol", (_LimitedProtocol,), {"limits": limits, "log": log})
