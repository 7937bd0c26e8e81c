"""Bindings: the service's `google.api.http` annotations, read once into typed `Binding`s.

Paths exist only in the proto. Each HTTP rule of each RPC (its main rule, then its
`additional_bindings`) becomes one `Binding`: HTTP method, path template, body and response_body
selectors, request/response classes, checked against the messages at startup. The bridge's
routes, its OpenAPI document and the gateway's `GET /` endpoint list all read these; nothing
else reads the annotations. No Starlette here: the gateway imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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

from codex_gateway.v1 import gateway_pb2

SERVICE_NAME: Final = "GatewayService"

_HTTP_METHODS: Final = ("get", "put", "post", "delete", "patch")
# `{name}` or `{name=*}`: one path segment. grpc-gateway's multi-segment forms (`{name=a/*}`,
# `**`, `:verb`) are not used by the proto; a binding that needs them fails at startup.
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:=\*)?\}")
_LITERAL = re.compile(r"[A-Za-z0-9._~-]+")


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
