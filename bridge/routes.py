"""Routes: the REST bindings, read from the service's `google.api.http` annotations.

Paths exist only in the proto. This module turns each binding of each RPC into a `Binding` (HTTP
method, path template, body and response_body selectors, request/response classes) and each
binding into one Starlette route. Matching works on the raw, still percent-encoded path split at
`/`, as grpc-gateway does, so an encoded `%2F` inside a path parameter never changes which route
matches; the parameters are decoded later, where a malformed escape can be answered with 400.
A last catch-all route answers 404, or 405 with an `Allow` header when the path exists.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Final

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from codex_gateway.v1 import gateway_pb2

from .errors import ErrorResponse, MethodNotAllowed, RouteNotFound, send_error

SERVICE_NAME: Final = "GatewayService"
PATH_PARAMS_SCOPE_KEY: Final = "codex_gateway.raw_path_params"

_HTTP_METHODS: Final = ("get", "put", "post", "delete", "patch")
# `{name}` or `{name=*}`: one path segment. grpc-gateway's multi-segment forms (`{name=a/*}`,
# `**`, `:verb`) are not used by the proto; a binding that needs them fails at startup.
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:=\*)?\}")
_LITERAL = re.compile(r"[A-Za-z0-9._~-]+")

Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """A path template such as `/sessions/{session_id}/search`, one entry per segment."""

    text: str
    segments: tuple[str | None, ...]  # a literal segment, or None for a variable
    variables: tuple[str, ...]  # the field path of each None segment, in order

    @classmethod
    def parse(cls, text: str) -> PathTemplate:
        if not text.startswith("/"):
            raise ValueError(f"path template {text!r} must start with '/'")
        segments: list[str | None] = []
        variables: list[str] = []
        for part in text[1:].split("/") if text != "/" else ():
            variable = _VARIABLE.fullmatch(part)
            if variable is not None:
                segments.append(None)
                variables.append(variable.group(1))
            elif _LITERAL.fullmatch(part):
                segments.append(part)
            else:
                raise ValueError(f"unsupported path template segment {part!r} in {text!r}")
        if len(set(variables)) != len(variables):
            raise ValueError(f"path template {text!r} repeats a variable")
        return cls(text, tuple(segments), tuple(variables))

    def match(self, raw_segments: Sequence[bytes]) -> dict[str, bytes] | None:
        """The raw (still percent-encoded) value of each variable, or None if no match."""
        if len(raw_segments) != len(self.segments):
            return None
        values: list[bytes] = []
        for expected, raw in zip(self.segments, raw_segments, strict=True):
            if expected is None:
                if not raw:
                    return None
                values.append(raw)
            elif raw != expected.encode("ascii"):
                return None
        return dict(zip(self.variables, values, strict=True))


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


@dataclass(frozen=True)
class Binding:
    """One HTTP binding of one RPC."""

    method: MethodDescriptor
    http_method: str  # upper case: GET, POST, ...
    template: PathTemplate
    body: str  # "" (no body), "*" (the whole request), or a top-level field name
    response_body: str  # "" (the whole response) or a top-level field name
    request_class: type[Message]
    response_class: type[Message]

    @property
    def rpc_path(self) -> str:
        """The gRPC method path, `/package.Service/Method`."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def idempotent(self) -> bool:
        """Whether an UNAVAILABLE call may be retried (RFC 9110 idempotent methods we bind)."""
        return self.http_method in {"GET", "DELETE"}

    @property
    def http_methods(self) -> frozenset[str]:
        """The methods the route answers: HEAD wherever GET works."""
        if self.http_method == "GET":
            return frozenset({"GET", "HEAD"})
        return frozenset({self.http_method})

    @cached_property
    def query_fields(self) -> Mapping[str, FieldDescriptor]:
        """Top-level scalar fields left for query parameters (none when the body is `*`)."""
        if self.body == "*":
            return {}
        bound = {variable.split(".")[0] for variable in self.template.variables} | {self.body}
        return {
            f.name: f
            for f in self.method.input_type.fields
            if f.name not in bound and f.type != FieldDescriptor.TYPE_MESSAGE
        }


def service_descriptor() -> ServiceDescriptor:
    return gateway_pb2.DESCRIPTOR.services_by_name[SERVICE_NAME]


def bindings_from_service(service: ServiceDescriptor) -> tuple[Binding, ...]:
    """Every binding of every method, in declaration order; a method without one is an error."""
    bindings: list[Binding] = []
    for method in service.methods:
        if method.client_streaming:
            raise ValueError(f"{method.full_name}: client streaming cannot be bound to HTTP")
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        rules = [rule, *rule.additional_bindings]
        if not rule.WhichOneof("pattern"):
            raise ValueError(f"{method.full_name} has no google.api.http binding")
        bindings.extend(_binding(method, r) for r in rules)
    return tuple(bindings)


def _binding(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Binding:
    kind = rule.WhichOneof("pattern")
    if kind not in _HTTP_METHODS:
        raise ValueError(f"{method.full_name}: unsupported http pattern {kind!r}")
    template = PathTemplate.parse(getattr(rule, kind))
    request_type: Descriptor = method.input_type
    for variable in template.variables:
        _check_path_variable(method, request_type, variable)
    if rule.body not in ("", "*"):
        _check_top_level(method, request_type, rule.body, "body")
    if rule.response_body:
        _check_top_level(method, method.output_type, rule.response_body, "response_body")
    return Binding(
        method=method,
        http_method=kind.upper(),
        template=template,
        body=rule.body,
        response_body=rule.response_body,
        request_class=message_factory.GetMessageClass(request_type),
        response_class=message_factory.GetMessageClass(method.output_type),
    )


def _check_path_variable(method: MethodDescriptor, message: Descriptor, path: str) -> None:
    names = path.split(".")
    for name in names[:-1]:
        parent = message.fields_by_name.get(name)
        if parent is None or parent.message_type is None or parent.is_repeated:
            raise ValueError(f"{method.full_name}: path variable {path!r} is not a field")
        message = parent.message_type
    leaf = message.fields_by_name.get(names[-1])
    if leaf is None or leaf.type == FieldDescriptor.TYPE_MESSAGE or leaf.is_repeated:
        raise ValueError(f"{method.full_name}: path variable {path!r} is not a singular scalar")


def _check_top_level(method: MethodDescriptor, message: Descriptor, name: str, what: str) -> None:
    if name not in message.fields_by_name:
        raise ValueError(f"{method.full_name}: {what} {name!r} is not a field of {message.name}")


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
        return Match.FULL, {PATH_PARAMS_SCOPE_KEY: params}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
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
