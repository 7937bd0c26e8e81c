"""The bridge process's own metrics: REST requests by route template (never the raw path),
method and status, with their latency, and the bridge's process. `GET /metrics` answers the
gateway's exposition (the GetMetrics RPC) followed by this registry's.

`route` is the template of the route that took the request (`/sessions/{session_id}`), or
UNMATCHED for a request no route took (a 404, a refused host): bounded whatever clients send.
`method` is one of the HTTP methods a route serves, or `other`.
"""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTE_SCOPE_KEY: Final = "codex_gateway.route"
UNMATCHED: Final = "(unmatched)"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 300, 1800)


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "codex_gateway_http_requests",
            "REST requests answered by the bridge, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "codex_gateway_http_request_duration_seconds",
            "REST request latency by route template (a stream: until it ends).",
            ["route"],
            buckets=BUCKETS,
            registry=registry,
        )
        ProcessCollector(namespace="codex_gateway_bridge", registry=registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request the app answers, outermost, so refusals count too."""

    def __init__(self, app: ASGIApp, metrics: BridgeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def measured_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, measured_send)
        finally:
            route = scope.get(ROUTE_SCOPE_KEY, UNMATCHED)
            method = scope.get("method", "")
            self.metrics.requests.labels(
                route, method if method in _METHODS else "other", str(status or 500)
            ).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)
