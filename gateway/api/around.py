"""A method's behaviour run inside something per call (a span, the caller bound): how an
interceptor wraps the handler it was given, streams included, with the handler's own codecs.

`around(request, context)` makes a (synchronous) context manager entered for each call, around
the whole of a unary call and around the whole of a stream (every message it yields); `sent`,
when given, sees the manager and each message the call answers with, before it goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:  # generic in the stubs only
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]


def wrapped(
    handler: Handler,
    around: Callable[[Any, Context], AbstractContextManager[Any]],
    *,
    sent: Callable[[Any, Any], None] | None = None,
) -> Handler:
    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    # The stubs type behaviours as synchronous; the aio server's are coroutines.
    stream: Any = handler.unary_stream
    if stream is not None:

        async def streamed(request: Any, context: Context) -> AsyncIterator[Any]:
            manager = around(request, context)
            with manager:
                async for message in stream(request, context):
                    if sent is not None:
                        sent(manager, message)
                    yield message

        return grpc.unary_stream_rpc_method_handler(streamed, **codecs)
    unary: Any = handler.unary_unary

    async def answered(request: Any, context: Context) -> Any:
        manager = around(request, context)
        with manager:
            response = await unary(request, context)
            if sent is not None:
                sent(manager, response)
            return response

    return grpc.unary_unary_rpc_method_handler(answered, **codecs)


class PerMethod:
    """The handler an interceptor builds from a method's handler, built once per method:
    grpcio hands an interceptor the same handler for a method at every call (rebuilt should it
    ever hand another). `build(method, handler)` gets the method's full name
    (`/package.Service/Method`)."""

    def __init__(self, build: Callable[[str, Handler], Handler]) -> None:
        self._build = build
        # method -> (the handler given, the one built from it)
        self._built: dict[str, tuple[Handler, Handler]] = {}

    def __call__(self, method: str, handler: Handler) -> Handler:
        cached = self._built.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        built = self._build(method, handler)
        self._built[method] = (handler, built)
        return built


def status_code(context: Context, failed: BaseException | None) -> grpc.StatusCode:
    """A finished call's gRPC code: the one it was aborted or answered with; CANCELLED when its
    client went away; UNKNOWN for an exception nothing translated; else OK."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpcio keeps the number on some versions
        for known in grpc.StatusCode:
            if known.value[0] == code:
                return known
    if failed is None:
        return grpc.StatusCode.OK
    if isinstance(failed, (GeneratorExit, asyncio.CancelledError)):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN
