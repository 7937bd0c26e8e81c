"""The endpoint behind every binding's route: read, transcode, call the upstream, answer."""

from __future__ import annotations

import logging

import grpc
from starlette.types import Message as ASGIMessage
from starlette.types import Receive, Scope, Send

from .body import ClientDisconnected, check_declared_length, read_body
from .errors import BridgeError, ErrorResponse, send_error
from .guard import refuse_non_json_declaration, require_json_body
from .printer import response_json
from .responses import json_response
from .routes import PATH_PARAMS_SCOPE_KEY, Binding
from .streaming import FIRST_MESSAGE_WAIT_S, choose_format, relay
from .transcode import build_request, parse_query
from .upstream import OpenedStream, Upstream, forwarded_metadata

logger = logging.getLogger(__name__)


class BindingEndpoint:
    """Serves one binding; the only place where an HTTP request meets the upstream."""

    def __init__(self, binding: Binding, upstream: Upstream, *, max_body_bytes: int) -> None:
        self.binding = binding
        self.upstream = upstream
        self.max_body_bytes = max_body_bytes

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
        await json_response(200, response_json(binding, response))(scope, receive, send)


class _TrackedSend:
    """`send` that remembers whether the response has started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: ASGIMessage) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
