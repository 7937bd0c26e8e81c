"""Connection limits: what one client can hold of the bridge before it has sent a request.

uvicorn's HTTP protocol (httptools) bounds neither the time nor the bytes of a request's head,
and holds any number of connections: idle half-requests exhaust the process's descriptors and a
few 64 MiB header values its memory. `limited_protocol` returns its protocol with:

- a header deadline: a connection that has not sent a whole request head within
  `header_timeout_s` of its start (or of the first byte of its next request) is closed;
- a request deadline: a request whose head and body have not both arrived within
  `request_read_timeout_s` of its first byte is answered 408 (or, if it was already being
  answered, the connection is closed), so a body that trickles in, or never ends, holds no
  connection slot for longer than that; between requests a connection is held only for
  uvicorn's keep-alive timeout, which bytes that start no request (blank lines) do not renew;
- head limits: more than `max_header_bytes` of request line and headers (trailer fields of a
  chunked body included), or more than `max_headers` header fields, is answered 431 and the
  connection closed, with no more than the limit plus one read ever held: bytes the parser
  takes without reporting them (a header or trailer field it buffers until the field ends, a
  chunk extension) count against `max_header_bytes` until it reports something;
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
DEFAULT_REQUEST_READ_TIMEOUT_S: Final = 30.0
KEEP_ALIVE_S: Final = 5  # uvicorn's timeout_keep_alive: idle time between requests
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
    request_read_timeout_s: float = DEFAULT_REQUEST_READ_TIMEOUT_S

    def __post_init__(self) -> None:
        for timeout in ("header_timeout_s", "request_read_timeout_s"):
            if getattr(self, timeout) <= 0:
                raise ValueError(f"{timeout} must be positive, got {getattr(self, timeout)}")
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


LINGER_S = 2.0
"""How long a connection answered with an error and closed still takes (and drops) input."""


class _LimitedProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]
    log: ClassVar[RateLimitedLog]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._request_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True
        self._unreported = 0  # bytes received since the parser last reported anything
        self._reported = False
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
        self._cancel_request_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.parser is None:
            return
        # uvicorn cancels its keep-alive timeout on any byte; here only a request's first byte
        # does (on_message_begin), so blank lines dripped between requests hold nothing.
        if self._awaiting_head:
            self._head_bytes += len(data)
        self._reported = False
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
            # What the parser holds without having reported it: at most this feed if it
            # reported something, else everything since it last did (a trailer field's value,
            # say, which httptools buffers until the next field).
            self._unreported = 0 if self._reported else self._unreported + len(data)
            if (
                self._awaiting_head and self._head_bytes > self.limits.max_header_bytes
            ) or self._unreported > self.limits.max_header_bytes:
                self._head_too_large()

    def on_message_begin(self) -> None:
        self._reported = True
        self._unset_keepalive_if_required()
        super().on_message_begin()
        self._awaiting_head = True
        self._head_size = self._head_fields = 0
        if self._head_timer is None:
            self._arm_head_timer()
        self._arm_request_timer()

    def on_url(self, url: bytes) -> None:
        self._reported = True
        self._count(len(url), fields=0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailer fields of a chunked body come here too: they count with the head's.
        self._reported = True
        self._count(len(name) + len(value) + 4, fields=1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reported = True
        self._awaiting_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._reported = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._reported = True
        self._cancel_request_timer()
        super().on_message_complete()

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
        if self._answering():  # trailers over the limits while the request is being answered
            self._close()
            return
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

    def _arm_request_timer(self) -> None:
        self._cancel_request_timer()
        self._request_timer = self.loop.call_later(
            self.limits.request_read_timeout_s, self._request_timeout
        )

    def _cancel_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timeout(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused or (
            self._awaiting_head and self.cycle is not None and not self.cycle.response_complete
        ):
            # The bridge is not reading (a pipelined request waits for the answer before it,
            # or the application has not taken the body so far): the client is not late.
            self._arm_request_timer()
            return
        self.log.warning("read", "closed a connection whose request did not arrive in time")
        if self._answering():
            self._close()
            return
        self._reply_and_close(
            408,
            "DEADLINE_EXCEEDED",
            f"Request not received within {self.limits.request_read_timeout_s:g} s",
        )

    def _answering(self) -> bool:
        """Whether the request being read is already being answered (its head is complete and
        the application started its response): nothing else can be written on the connection."""
        return not self._awaiting_head and self.cycle is not None and self.cycle.response_started

    def _close(self) -> None:
        self._refused = True
        self._cancel_head_timer()
        self._cancel_request_timer()
        self.transport.close()

    def _reply_and_close(self, status: int, code: str, message: str) -> None:
        body = encode_json({"error": message, "code": code})
        phrase = {
            408: b"Request Timeout",
            431: b"Request Header Fields Too Large",
            503: b"Service Unavailable",
        }[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, phrase, len(body), body)
        )
        self._linger()

    def _linger(self) -> None:
        """Close after the answer without losing it: closing a socket with unread input makes
        the kernel send a reset, which can reach the client before it has read the answer (a
        client still sending the rest of a 431's head saw the connection reset, not the 431).
        So the answer is followed by a FIN, what still arrives is discarded, and the connection
        closes when the client closes it, or after LINGER_S."""
        self._refused = True  # data_received discards from now on
        self._cancel_head_timer()
        self._cancel_request_timer()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def limited_protocol(limits: ConnectionLimits, log: RateLimitedLog) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with `limits` (a class per server: uvicorn builds one
    protocol per connection from the class)."""
    return type("LimitedHttpToolsProtocol", (_LimitedProtocol,), {"limits": limits, "log": log})
