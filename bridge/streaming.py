"""Server streaming over HTTP: newline-delimited JSON framed as grpc-gateway frames it, or SSE.

NDJSON (`application/x-ndjson`): one `{"result": <message>}` line per message and, if the call
fails after the first one, a last `{"error": {...}}` line. With `Accept: text/event-stream`,
Server-Sent Events instead: `event: result` / `event: error` with the same JSON as `data`, and
a message's `seq` as the frame's `id` (bridge/cursor.py: `Last-Event-ID` resumes).

The status line waits for the first message (or `FIRST_MESSAGE_WAIT_S`, so an idle follow still
gets its headers): a call that fails before it is answered with its own HTTP status and error
body, not a 200 stream. Each message is written as it arrives. When the client disconnects, the
call is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf.message import Message
from starlette.types import Receive, Scope, Send

from .cursor import event_id
from .errors import ErrorResponse, send_error
from .printer import message_to_json
from .responses import encode_json, encode_printed
from .upstream import EOF, OpenedStream

logger = logging.getLogger(__name__)

FIRST_MESSAGE_WAIT_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """How stream items are framed on the wire."""

    name: str
    media_type: str

    def result(self, value: Any) -> bytes:
        if self.name == "sse":
            seq = event_id(value)
            frame_id = b"" if seq is None else b"id: %d\n" % seq
            return frame_id + b"event: result\ndata: " + encode_printed(value) + b"\n\n"
        return encode_printed({"result": value}) + b"\n"

    def error(self, payload: dict[str, Any]) -> bytes:
        if self.name == "sse":
            return b"event: error\ndata: " + encode_json(payload) + b"\n\n"
        return encode_json({"error": payload}) + b"\n"

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-type", self.media_type.encode("ascii")),
            (b"cache-control", b"no-cache"),
            # Tell buffering reverse proxies (nginx) to pass each item through as it comes.
            (b"x-accel-buffering", b"no"),
        ]


YIELD_EVERY: Final = 16
NDJSON: Final = StreamFormat("ndjson", "application/x-ndjson")
SSE: Final = StreamFormat("sse", "text/event-stream; charset=utf-8")


def choose_format(headers: Iterable[tuple[bytes, bytes]]) -> StreamFormat:
    """SSE when an `Accept` header asks for `text/event-stream` (with q > 0), else NDJSON."""
    for name, value in headers:
        if name != b"accept":
            continue
        for media_range in value.decode("latin-1").split(","):
            media_type, *params = (part.strip() for part in media_range.split(";"))
            if media_type.lower() == "text/event-stream" and not _q_zero(params):
                return SSE
    return NDJSON


def _q_zero(params: list[str]) -> bool:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value) <= 0
            except ValueError:
                return False
    return False


async def relay(
    open_stream: Callable[[], Awaitable[OpenedStream]],
    stream_format: StreamFormat,
    *,
    head: bool,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Answer one HTTP request with one server-streaming call."""
    async with asyncio.TaskGroup() as tasks:
        pump = tasks.create_task(
            _pump(open_stream, stream_format, head=head, scope=scope, receive=receive, send=send)
        )
        watch = tasks.create_task(_until_disconnected(receive))
        pump.add_done_callback(lambda _: watch.cancel())
        watch.add_done_callback(lambda _: pump.cancel())


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _pump(
    open_stream: Callable[[], Awaitable[OpenedStream]],
    stream_format: StreamFormat,
    *,
    head: bool,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    opened: OpenedStream | None = None
    started = False
    try:
        try:
            opened = await open_stream()
        except grpc.aio.AioRpcError as exc:
            await send_error(ErrorResponse.from_rpc_error(exc), scope, receive, send)
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": stream_format.headers()}
        )
        started = True
        if head:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        item = await opened.first
        relayed = 0
        while item is not EOF:
            chunk = stream_format.result(_message_json(item))
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            relayed += 1
            if relayed % YIELD_EVERY == 0:
                # Reads of buffered messages and buffered writes never suspend: give the
                # other requests a turn during a fast stream.
                await asyncio.sleep(0)
            item = await opened.call.read()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except grpc.aio.AioRpcError as exc:
        payload = ErrorResponse.from_rpc_error(exc).stream_payload()
        await send({"type": "http.response.body", "body": stream_format.error(payload)})
    except Exception:
        logger.exception("streaming %s failed", scope.get("path"))
        error = ErrorResponse.internal()
        if started:
            body = stream_format.error(error.stream_payload())
            await send({"type": "http.response.body", "body": body})
        else:
            await send_error(error, scope, receive, send)
    finally:
        if opened is not None:
            opened.first.cancel()
            opened.call.cancel()


def _message_json(item: Any) -> dict[str, Any]:
    if not isinstance(item, Message):
        raise TypeError(f"expected a message from the stream, got {type(item).__name__}")
    return message_to_json(item)
