"""The guard around every gRPC method, unary and streaming (python-api-core's wrap_method).

Whatever a method raises reaches the client as a status the contract names, never grpcio's
UNKNOWN with a Python exception's text:

- a request message that does not decode is INVALID_ARGUMENT (grpcio would run the method's
  deserializer itself and answer UNKNOWN, logging a traceback per request);
- a `GatewayError` is its own status, with rich details (`service.abort`);
- anything else is a bug: INTERNAL "Internal error", and one log line. The traceback is logged
  the first time a method fails with a given exception type, so that a client repeating a
  request that hits a bug cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from gateway.errors import GatewayError, InvalidRequest
from gateway.service import abort

log = logging.getLogger(__name__)

MAX_TRACEBACKS = 256  # distinct (method, exception type) pairs logged with their traceback
Context = grpc.aio.ServicerContext[Any, Any]


class _Undecodable:
    """What the guarded deserializer hands on for bytes that are not the request message."""


_UNDECODABLE = _Undecodable()
_PASS_THROUGH = (asyncio.CancelledError, grpc.aio.AbortError)


class ServicerGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs only
    def __init__(self) -> None:
        self._traced: set[tuple[str, str]] = set()
        # method -> (the servicer's handler, its guarded twin): built once per method.
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None:
            return handler
        if handler.request_streaming:  # the gateway has none; left as grpcio serves them
            return handler
        method = str(details.method)
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = self._guard(method.rsplit("/", 1)[-1], handler)
        self._wrapped[method] = (handler, guarded)
        return guarded

    def _guard(
        self, name: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        codecs = {
            "request_deserializer": _decoder(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        # The stubs type behaviours as synchronous; the aio server's are coroutines.
        stream: Any = handler.unary_stream
        unary: Any = handler.unary_unary
        if stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._stream(name, stream), **codecs)
        return grpc.unary_unary_rpc_method_handler(self._unary(name, unary), **codecs)

    def _unary(
        self, name: str, method: Callable[[Any, Context], Awaitable[Any]]
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        async def guarded(request: Any, context: Context) -> Any:
            if request is _UNDECODABLE:
                await abort(context, _undecodable())
            try:
                return await method(request, context)
            except _PASS_THROUGH:
                raise
            except GatewayError as error:
                await abort(context, error)
            except Exception as exc:
                self._report(name, exc)
                await abort(context, GatewayError("Internal error"))

        return guarded

    def _stream(
        self, name: str, method: Callable[[Any, Context], AsyncIterator[Any]]
    ) -> Callable[[Any, Context], AsyncIterator[Any]]:
        async def guarded(request: Any, context: Context) -> AsyncIterator[Any]:
            if request is _UNDECODABLE:
                await abort(context, _undecodable())
            try:
                async for message in method(request, context):
                    yield message
            except _PASS_THROUGH:
                raise
            except GatewayError as error:
                await abort(context, error)
            except Exception as exc:
                self._report(name, exc)
                await abort(context, GatewayError("Internal error"))

        return guarded

    def _report(self, name: str, exc: Exception) -> None:
        """A bug: one line, with the traceback only the first time it is seen."""
        key = (name, type(exc).__name__)
        first = key not in self._traced and len(self._traced) < MAX_TRACEBACKS
        if first:
            self._traced.add(key)
        log.error(
            "%s failed with %s%s",
            name,
            type(exc).__name__,
            "" if first else " (traceback logged before)",
            exc_info=exc if first else None,
        )


def _decoder(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        if deserializer is None:
            return data
        try:
            return deserializer(data)
        except Exception:  # DecodeError, and whatever else bytes off the wire can cause
            return _UNDECODABLE

    return decode


def _undecodable() -> InvalidRequest:
    return InvalidRequest("the request message cannot be decoded (not valid protobuf)")
