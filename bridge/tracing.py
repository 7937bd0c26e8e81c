"""Traces (OpenTelemetry): the exporter both processes set up, and the bridge's request spans.

Set up from the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`, and the exporter's headers
`OTEL_EXPORTER_OTLP_TRACES_HEADERS` / `OTEL_EXPORTER_OTLP_HEADERS`, a collector's credentials),
read at the entrypoint: the gateway reads them into its Config (gateway/config.py) and hands them
to its bridge child: the headers through an inherited pipe (a secret stays out of the child's
environment block and argv), the rest in its environment; `python -m bridge` reads them from its
own (or that pipe). Without an endpoint nothing is set up:
no SDK provider, no exporter, the API's no-op tracer, no middleware, no interceptor.

With one: an SDK `TracerProvider` with a `BatchSpanProcessor` and the OTLP/HTTP (protobuf)
exporter, installed as the global provider, flushed and shut down when the process ends. The
bridge opens a span per REST request (`RequestSpans`), continuing a client's W3C `traceparent`,
and passes its context on to the gateway in the gRPC metadata of its call (`with_trace_context`);
the gateway's server interceptor continues it.

Spans carry bounded attributes: the method, the route's RPC name, the path (a session id at most)
and the status. Never the query string (`?secure_token=`), a header or a body.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
HEADERS: Final = "OTEL_EXPORTER_OTLP_HEADERS"
TRACES_HEADERS: Final = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
# The headers' text, at most (a few credentials; a pipe's buffer holds it whole).
MAX_HEADERS_CHARS: Final = 8192
TRACES_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
SERVICE_NAME: Final = "OTEL_SERVICE_NAME"
DEFAULT_SERVICE_NAME: Final = "codex-gateway"
# The bridge's spans name their process so: `<service name>-bridge`.
BRIDGE_SUFFIX: Final = "-bridge"
# OTLP/HTTP's path for traces under a base endpoint (the specification's rule).
_TRACES_PATH: Final = "/v1/traces"
_URL: Final = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACER_NAME: Final = "codex_gateway.bridge"


@dataclass(frozen=True)
class TracingSettings:
    """Where spans are exported; None in a Config when tracing is off."""

    endpoint: str | None = None
    traces_endpoint: str | None = None
    service_name: str = DEFAULT_SERVICE_NAME
    # The exporter's headers, as the variable has them (`name=value,...`, values URL-encoded):
    # a secret (repr hides it).
    headers: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name, value in ((ENDPOINT, self.endpoint), (TRACES_ENDPOINT, self.traces_endpoint)):
            if value is not None and not _URL.fullmatch(value):
                raise ValueError(f"{name} must be an http:// or https:// URL, got {value[:200]!r}")
        if self.endpoint is None and self.traces_endpoint is None:
            raise ValueError(f"tracing needs {ENDPOINT} or {TRACES_ENDPOINT}")
        if not self.service_name.strip():
            raise ValueError(f"{SERVICE_NAME} must not be blank")
        if self.headers is not None:
            parse_headers(self.headers)

    def exporter_headers(self) -> dict[str, str] | None:
        return parse_headers(self.headers) if self.headers is not None else None

    @property
    def traces_url(self) -> str:
        """The URL spans are POSTed to: the traces endpoint as is, or the base one's /v1/traces."""
        if self.traces_endpoint is not None:
            return self.traces_endpoint
        return (self.endpoint or "").rstrip("/") + _TRACES_PATH  # one is set: __post_init__

    def environment(self) -> dict[str, str]:
        """The variables that set the same tracing up in a child process (the bridge); not the
        headers, a secret, which go through a pipe (gateway/bridge_process.py)."""
        env = {SERVICE_NAME: self.service_name}
        if self.endpoint is not None:
            env[ENDPOINT] = self.endpoint
        if self.traces_endpoint is not None:
            env[TRACES_ENDPOINT] = self.traces_endpoint
        return env

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TracingSettings | None:
        """The settings the variables describe; None without an endpoint (tracing off)."""

        def value(name: str) -> str | None:
            return environ.get(name, "").strip() or None

        endpoint, traces_endpoint = value(ENDPOINT), value(TRACES_ENDPOINT)
        if endpoint is None and traces_endpoint is None:
            return None
        return cls(
            endpoint,
            traces_endpoint,
            value(SERVICE_NAME) or DEFAULT_SERVICE_NAME,
            value(TRACES_HEADERS) or value(HEADERS),
        )


def parse_headers(text: str) -> dict[str, str]:
    """`name=value,...` (values URL-encoded, the specification's format) as headers; ValueError
    naming the variable for anything else (the SDK would drop it with a warning)."""
    if len(text) > MAX_HEADERS_CHARS:
        raise ValueError(f"{HEADERS} is over {MAX_HEADERS_CHARS} characters")
    headers: dict[str, str] = {}
    for item in text.split(","):
        name, equals, raw = item.partition("=")
        name = name.strip().lower()
        if not item.strip():
            continue
        if not equals or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{HEADERS} must be name=value pairs separated by commas")
        value = urllib.parse.unquote(raw.strip())
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
            raise ValueError(f"{HEADERS}: the value of {name} has a control character")
        headers[name] = value
    return headers


def install(
    settings: TracingSettings | None,
    *,
    service_name: str | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider | None:
    """Install an SDK provider exporting to `settings` (or to `exporter`, in tests) as the
    process's global one; `shutdown` it when the process ends. None (tracing off): nothing,
    not even the SDK imported; the global provider stays the API's no-op one."""
    if settings is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name or settings.service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter
            or OTLPSpanExporter(
                endpoint=settings.traces_url,
                # Explicit: the SDK would read the variables of its own process, where the
                # bridge has none.
                headers=settings.exporter_headers() or {},
            )
        )
    )
    trace.set_tracer_provider(provider)
    return provider


def shutdown(provider: TracerProvider | None) -> None:
    """Export what is left and stop the exporter (bounded by the SDK's own timeouts)."""
    if provider is not None:
        provider.shutdown()


def with_trace_context(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """`metadata` and the current span's W3C context (`traceparent`, `tracestate`)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return (*metadata, *carrier.items()) if carrier else metadata


class RequestSpans:
    """ASGI middleware: a SERVER span per HTTP request, child of the client's `traceparent`
    when it sends a valid one, named after the route's RPC once routing has found it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._tracer = trace.get_tracer(_TRACER_NAME)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() in (b"traceparent", b"tracestate")
        }
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        method = str(scope.get("method", "GET"))
        token = context.attach(parent) if parent is not None else None
        try:
            with self._tracer.start_as_current_span(
                method,
                kind=trace.SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": str(scope.get("path"))},
            ) as span:

                async def send_status(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        status = int(message["status"])
                        span.set_attribute("http.response.status_code", status)
                        if status >= 500:
                            span.set_status(trace.StatusCode.ERROR)
                    await send(message)

                try:
                    await self.app(scope, receive, send_status)
                finally:
                    route = scope.get("route")
                    name = getattr(route, "name", None)
                    if isinstance(name, str):
                        span.update_name(f"{method} {name}")
                        span.set_attribute("http.route", name)
        finally:
            if token is not None:
                context.detach(token)
