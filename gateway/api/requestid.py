"""Request ids at the gRPC boundary: every call has one, its `x-request-id` metadata when sane.

`RequestIds`, first of the interceptors, wraps whatever handler the others chose (the method's,
or a refusal's): the call runs with its id in the log context (bridge/logformat.py), so every
line it logs, and every run it starts, carries it; the id is returned in the trailing metadata
(and, for a stream, in the initial metadata too, at once) and in the `request_id` of an
error's ErrorInfo (gateway/api/service.py `abort`). The sanity rule is the bridge's
(bridge/requestid.py), which passes its own id on, so a REST request has one id in both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from bridge.logformat import bind
from bridge.requestid import REQUEST_ID_HEADER, request_id_from

Context = grpc.aio.ServicerContext[Any, Any]


def call_request_id(details: grpc.HandlerCallDetails) -> str:
    """The call's id: its one sane `x-request-id` entry, else a new one."""
    offered = [
        value for name, value in details.invocation_metadata or () if name == REQUEST_ID_HEADER
    ]
    return request_id_from(offered[0] if len(offered) == 1 else None)


class RequestIds(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs only
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None or handler.request_streaming:  # the gateway has none
            return handler
        request_id = call_request_id(details)
        codecs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        # The stubs type behaviours as synchronous; the aio server's are coroutines.
        stream: Any = handler.unary_stream
        if stream is not None:
            return grpc.unary_stream_rpc_method_handler(_stream(request_id, stream), **codecs)
        unary: Any = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(_unary(request_id, unary), **codecs)


def _unary(
    request_id: str, method: Callable[[Any, Context], Awaitable[Any]]
) -> Callable[[Any, Context], Awaitable[Any]]:
    async def identified(request: Any, context: Context) -> Any:
        # Trailing, not initial: sending initial metadata on its own costs a write per call.
        # An abort with trailing metadata of its own replaces these (service.abort adds it).
        context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
        # grpcio runs every call in a task of its own: what is bound here ends with the call.
        bind(request_id=request_id)
        return await method(request, context)

    return identified


def _stream(
    request_id: str, method: Callable[[Any, Context], AsyncIterator[Any]]
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def identified(request: Any, context: Context) -> AsyncIterator[Any]:
        metadata = ((REQUEST_ID_HEADER, request_id),)
        context.set_trailing_metadata(metadata)
        await context.send_initial_metadata(metadata)
        bind(request_id=request_id)  # as above; no reset in a generator a GC may close elsewhere
        async for message in method(request, context):
            yield message

    return identified
