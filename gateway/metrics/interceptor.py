"""RPCs by method and gRPC code, with their latency: the gRPC server's outermost interceptor,
so an RPC refused by the token check or the metadata guard is counted with its code too.

Only methods the server serves reach it (grpcio answers unknown ones itself), so `method` is
bounded by the services' methods. A call another replica forwarded here is counted here, where
it is served; the forwarding replica counts its own RPC (the client's), which is another call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from gateway.metrics.families import GatewayMetrics

Context = grpc.aio.ServicerContext[Any, Any]


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs only
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        # method -> (the inner handler, its measured twin): built once per method.
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None or handler.request_streaming:  # the gateway serves none
            return handler
        method = str(details.method)
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        measured = self._measure(method.rsplit("/", 1)[-1], handler)
        self._wrapped[method] = (handler, measured)
        return measured

    def _measure(
        self, name: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        codecs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        count = self._metrics.rpcs
        latency = self._metrics.rpc_duration.labels(name)
        stream: Any = handler.unary_stream
        unary: Any = handler.unary_unary

        def done(context: Context, started: float, failed: BaseException | None) -> None:
            latency.observe(time.perf_counter() - started)
            code = _code(context, failed)
            count.labels(name, code).inc()

        if stream is not None:

            async def measured_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                started, failed = time.perf_counter(), None
                try:
                    async for message in stream(request, context):
                        yield message
                except BaseException as exc:
                    failed = exc
                    raise
                finally:
                    done(context, started, failed)

            return grpc.unary_stream_rpc_method_handler(measured_stream, **codecs)

        async def measured(request: Any, context: Context) -> Any:
            started, failed = time.perf_counter(), None
            try:
                return await unary(request, context)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                done(context, started, failed)

        return grpc.unary_unary_rpc_method_handler(measured, **codecs)


def _code(context: Context, failed: BaseException | None) -> str:
    """The RPC's gRPC code: the one it was aborted or answered with; CANCELLED when its client
    went away; UNKNOWN for an exception nothing translated."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if failed is None:
        return "OK"
    if isinstance(failed, (GeneratorExit, asyncio.CancelledError)):
        return "CANCELLED"
    return "UNKNOWN"
