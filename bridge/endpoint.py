"""The endpoint behind every binding's route: read, transcode, call the upstream, answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.api import httpbody_pb2
from starlette.responses import Response
from starlette.types import Message as ASGIMessage
from starlette.types import Receive, Scope, Send

from .bindings import Binding
from .body import ClientDisconnected, check_declared_length, read_body
from .cursor import resume_from_header
from .errors import BridgeError, ErrorResponse, send_error
from .guard import refuse_non_json_declaration, require_json_body
from .printer import response_json
from .responses import encode_printed
from .routes import PATH_PARAMS_SCOPE_KEY
from .streaming import FIRST_MESSAGE_WAIT_S, choose_format, relay
from .transcode import build_request, parse_query
from .upstream import OpenedStream, Upstream, forwarded_metadata

logger = logging.getLogger(__name__)
# Answers larger than this are printed to JSON in a worker thread.
PRINT_IN_THREAD_BYTES = 256 * 1024


class BindingEndpoint:
    """Serves one binding; the only place where an HTTP request meets the upstream."""

    def __init__(
        self,
        binding: Binding,
        upstream: Upstream,
        *,
        max_body_bytes: int,
        append: Callable[[], bytes] | None = None,
    ) -> None:
        self.binding = binding
        self.upstream = upstream
        self.max_body_bytes = max_body_bytes
        # Bytes added after an HttpBody answer's data (the bridge's own metrics).
        self.append = append

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracked = _TrackedSend(send)
        try:
            await self._serve(scope, receive, tracked)
        except ClientDisconnected:
            return
        except BridgeError as exc:
            await send_error(ErrorResponse.from_bridge_error(exc), scope, receive, tracked)
        except grpc.aio.AioRpcError as exc:
            await send_error(ErrorResponse.from_rpc_error(exc), scope, receive, tracked)
        except Exception:
            logger.exception("%s %s failed", scope.get("method"), self.binding.template.text)
            if not tracked.started:
                await send_error(ErrorResponse.internal(), scope, receive, tracked)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        binding = self.binding
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        check_declared_length(headers, self.max_body_bytes)
        body = None
        if binding.body:
            refuse_non_json_declaration(headers)
            body = await read_body(receive, self.max_body_bytes)
            require_json_body(headers, body)
        query = parse_query(scope.get("query_string", b""))
        request = build_request(
            binding, path_params=scope[PATH_PARAMS_SCOPE_KEY], query=query, body=body
        )
        metadata = forwarded_metadata(headers, query)
        if binding.server_streaming:
            resume_from_header(request, headers)

            async def open_stream() -> OpenedStream:
                return await self.upstream.open_stream(
                    binding, request, metadata, first_wait_s=FIRST_MESSAGE_WAIT_S
                )

            await relay(
                open_stream,
                choose_format(headers),
                head=scope.get("method") == "HEAD",
                scope=scope,
                receive=receive,
                send=send,
            )
            return
        response = await self.upstream.unary(binding, request, metadata)
        raw = _http_body(binding, response)
        if raw is not None:
            # google.api.HttpBody, as grpc-gateway answers it: its content type and data as is.
            data = raw.data + (self.append() if self.append is not None else b"")
            await Response(data, media_type=raw.content_type or None)(scope, receive, send)
            return
        if response.ByteSize() > PRINT_IN_THREAD_BYTES:
            # Printing a message of megabytes (a long trigger list, a session's detail) takes
            # a good part of a second of Python: the loop answers others meanwhile.
            body = await asyncio.to_thread(_printed, binding, response)
        else:
            body = _printed(binding, response)
        answer = Response(body, status_code=200, media_type="application/json")
        await answer(scope, receive, send)


def _http_body(binding: Binding, response: Any) -> httpbody_pb2.HttpBody | None:
    """The answer's google.api.HttpBody (the response, or its `response_body` field), if any."""
    body = getattr(response, binding.response_body) if binding.response_body else response
    return body if isinstance(body, httpbody_pb2.HttpBody) else None


def _printed(binding: Binding, response: Any) -> bytes:
    return encode_printed(response_json(binding, response))


class _TrackedSend:
    """`send` that remembers whether the response has started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: ASGIMessage) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
