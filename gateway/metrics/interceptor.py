"""RPCs by method and gRPC code, with their latency: the gRPC server's outermost interceptor,
so an RPC refused by the token check or the metadata guard is counted with its code too.

Only methods the server serves reach it (grpcio answers unknown ones itself), so `method` is
bounded by the services' methods. A call another replica forwarded here is counted here, where
it is served; the forwarding replica counts its own RPC (the client's), which is another call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from gateway.api.around import PerMethod, status_code, wrapped
from gateway.metrics.families import GatewayMetrics

Context = grpc.aio.ServicerContext[Any, Any]


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs only
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._measured = PerMethod(self._measure)

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
        return self._measured(str(details.method), handler)

    def _measure(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        name = method.rsplit("/", 1)[-1]
        metrics = self._metrics
        latency = metrics.rpc_duration.labels(name)
        return wrapped(
            handler, lambda _request, context: _Measured(name, metrics, latency, context)
        )


class _Measured:
    """One call: its duration and, at its end, its code."""

    __slots__ = ("_context", "_latency", "_metrics", "_name", "_started")

    def __init__(self, name: str, metrics: GatewayMetrics, latency: Any, context: Context) -> None:
        self._name, self._metrics, self._latency, self._context = name, metrics, latency, context

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, kind: object, failed: BaseException | None, trace: object) -> None:
        self._latency.observe(time.perf_counter() - self._started)
        metrics, code = self._metrics, status_code(self._context, failed)
        metrics.child(metrics.rpcs, self._name, code.name).inc()
