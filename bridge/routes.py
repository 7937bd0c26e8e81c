"""Routes: the REST bindings (`bridge.bindings`, from the proto's annotations) as Starlette routes.

Each binding becomes one route. Matching works on the raw, still percent-encoded path split at
`/`, as grpc-gateway does, so an encoded `%2F` inside a path parameter never changes which route
matches; the parameters are decoded later, where a malformed escape can be answered with 400.
A last catch-all route answers 404, or 405 with an `Allow` header when the path exists.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Final

from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from .bindings import PathTemplate
from .errors import ErrorResponse, MethodNotAllowed, RouteNotFound, send_error
from .metrics import ROUTE_SCOPE_KEY

PATH_PARAMS_SCOPE_KEY: Final = "codex_gateway.raw_path_params"

Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


def split_raw_path(scope: Scope) -> tuple[bytes, ...] | None:
    """The request path's raw segments; one trailing slash is dropped. None if not a path."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        raw = urllib.parse.quote(str(scope.get("path", "")), safe="/").encode("ascii")
    raw = raw.partition(b"?")[0]
    if not raw.startswith(b"/"):
        return None
    if len(raw) > 1 and raw.endswith(b"/"):
        raw = raw[:-1]
    return () if raw == b"/" else tuple(raw[1:].split(b"/"))


class TemplateRoute(BaseRoute):
    """A route matching one path template on the raw path, for a set of HTTP methods."""

    def __init__(
        self, name: str, template: PathTemplate, methods: Collection[str], endpoint: Endpoint
    ) -> None:
        self.name = name
        self.template = template
        self.methods = frozenset(methods)
        self.endpoint = endpoint

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope.get("method") not in self.methods:
            return Match.NONE, {}
        segments = split_raw_path(scope)
        params = None if segments is None else self.template.match(segments)
        if params is None:
            return Match.NONE, {}
        return Match.FULL, {PATH_PARAMS_SCOPE_KEY: params, ROUTE_SCOPE_KEY: self.template.text}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self  # as Starlette's router does; names the request's span (tracing)
        await self.endpoint(scope, receive, send)

    def __repr__(self) -> str:
        return f"TemplateRoute({self.name!r}, {self.template.text!r}, {sorted(self.methods)})"


class FallbackRoute(BaseRoute):
    """Matches every HTTP request no other route took: 405 if the path exists, else 404."""

    def __init__(self, routes: Sequence[TemplateRoute]) -> None:
        self.routes = tuple(routes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return (Match.FULL, {}) if scope["type"] == "http" else (Match.NONE, {})

    def allowed_methods(self, scope: Scope) -> frozenset[str]:
        segments = split_raw_path(scope)
        if segments is None:
            return frozenset()
        allowed: set[str] = set()
        for route in self.routes:
            if route.template.match(segments) is not None:
                allowed |= route.methods
        return frozenset(allowed)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = self.allowed_methods(scope)
        error = MethodNotAllowed(allowed) if allowed else RouteNotFound()
        await send_error(ErrorResponse.from_bridge_error(error), scope, receive, send)
