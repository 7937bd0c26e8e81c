"""The guard around every gRPC method, unary and streaming (python-api-core's wrap_method).

Whatever a method raises reaches the client as a status the contract names, never grpcio's
UNKNOWN with a Python exception's text:

- a request message that does not decode is INVALID_ARGUMENT (grpcio would run the method's
  deserializer itself and answer UNKNOWN, logging a traceback per request);
- a `GatewayError` is its own status, with rich details (`service.abort`);
- anything else is a bug: INTERNAL "Internal error", and one log line. The traceback is logged
  the first time a method fails with a given exception type, so that a client repeating a
  request that hits a bug cannot flood the log.

`MetadataGuard`, first of all interceptors, refuses a request metadata entry over
`MAX_METADATA_VALUE_BYTES` as INVALID_ARGUMENT, before the API token is compared: grpcio would
otherwise answer oversized metadata RESOURCE_EXHAUSTED, which this API reserves for the
concurrency limit (429).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, Final

import grpc

from bridge.requestid import REQUEST_ID_HEADER
from gateway.api.around import PerMethod
from gateway.api.service import abort
from gateway.errors import GatewayError, InvalidRequest, quote

log = logging.getLogger(__name__)

MAX_TRACEBACKS = 256  # distinct (method, exception type) pairs logged with their traceback
# The longest metadata entry (name or value) a method accepts: a bearer token, a secure token,
# a request id or a trace header is far shorter, and so is every credential the REST bridge
# forwards (bridge/upstream.py refuses longer ones before they reach the gateway).
MAX_METADATA_VALUE_BYTES: Final = 8 * 1024
# What grpcio itself accepts in a request's metadata, soft and hard limit alike. Between two
# different limits grpcio refuses at random (the status would change from one run to the
# next), and what it refuses it answers RESOURCE_EXHAUSTED, which maps to 429 here. Generous, so
# that every request a client can reasonably send reaches MetadataGuard and gets a 400.
MAX_METADATA_SIZE_BYTES: Final = 64 * 1024
Context = grpc.aio.ServicerContext[Any, Any]


class _Undecodable:
    """What the guarded deserializer hands on for bytes that are not the request message."""


_UNDECODABLE = _Undecodable()
# protobuf stops decoding at 100 nested messages (upb's MaxDepth): a Struct such as
# output_schema takes about three per level of JSON objects.
_TOO_DEEP = _Undecodable()
_PASS_THROUGH = (asyncio.CancelledError, grpc.aio.AbortError)


class ServicerGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs only
    def __init__(self) -> None:
        self._traced: set[tuple[str, str]] = set()
        self._guarded = PerMethod(self._guard)

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
        return self._guarded(str(details.method), handler)

    def _guard(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        name = method.rsplit("/", 1)[-1]
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
            if isinstance(request, _Undecodable):
                await abort(context, _undecodable(request))
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
            if isinstance(request, _Undecodable):
                await abort(context, _undecodable(request))
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
        except Exception as exc:  # DecodeError, and whatever else bytes off the wire can cause
            return _TOO_DEEP if "maxdepth" in str(exc).lower() else _UNDECODABLE

    return decode


def _undecodable(why: _Undecodable) -> InvalidRequest:
    if why is _TOO_DEEP:
        return InvalidRequest(
            "the request message cannot be decoded: nested too deeply (protobuf decodes at most"
            " 100 levels of messages; a JSON value such as output_schema takes three per level)"
        )
    return InvalidRequest("the request message cannot be decoded (not valid protobuf)")


class MetadataGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs only
    """Refuses a request whose metadata holds an entry over `MAX_METADATA_VALUE_BYTES`: first of
    the interceptors, so that an oversized token is a 400, not a 401. The liveness probes
    (`open_methods`) stay open, whatever their metadata."""

    def __init__(self, open_methods: Collection[str]) -> None:
        self._open = frozenset(open_methods)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None or details.method in self._open:
            return handler
        for name, value in details.invocation_metadata or ():
            if len(name) > MAX_METADATA_VALUE_BYTES:
                return _refused(handler, InvalidRequest(f"Invalid metadata name {quote(name)}"))
            # An unusable request id is replaced, not refused (gateway/api/requestid.py).
            if len(value) > MAX_METADATA_VALUE_BYTES and name != REQUEST_ID_HEADER:
                return _refused(
                    handler,
                    InvalidRequest(
                        f"Invalid {quote(name)} header: longer than"
                        f" {MAX_METADATA_VALUE_BYTES} bytes"
                    ),
                )
        return handler


def _refused(
    handler: grpc.RpcMethodHandler[Any, Any], error: GatewayError
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as `handler` that answers `error` without reading further."""
    return answering(handler, lambda context: abort(context, error))


def answering(
    handler: grpc.RpcMethodHandler[Any, Any], answer: Callable[[Context], Awaitable[object]]
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as `handler` whose only work is `answer(context)`, which
    aborts the call: the refusals of the interceptors (a request that decodes or not)."""

    async def refuse(request: Any, context: Context) -> Any:
        await answer(context)

    async def refuse_stream(request: Any, context: Context) -> AsyncIterator[Any]:
        await answer(context)
        yield  # pragma: no cover  # makes this an async generator

    codecs = {
        "request_deserializer": _decoder(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **codecs)
    return grpc.unary_unary_rpc_method_handler(refuse, **codecs)
