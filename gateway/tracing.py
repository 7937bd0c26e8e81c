"""Traces in the gateway: the spans of an RPC and of a run, and where their trace id goes.

The provider is set up at the entrypoint (bridge/tracing.py `install`, from Config.tracing).
Here: the server interceptor that opens a span per RPC (`RpcSpans`), continuing the W3C context
the caller (the bridge, or any gRPC client) sent in its metadata; the tracer the run path uses
for its child spans (`slot wait`, `run`, `attempt`, `agent spawn`, `webhook delivery`), a no-op
one when tracing is off, whatever provider the process has; and the current trace's ids,
recorded in the run record and the webhook payload and handed to codex (`TRACEPARENT`, which
codex's own OpenTelemetry export continues when its `[otel]` config turns that on).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.api.around import PerMethod, status_code, wrapped

if TYPE_CHECKING:
    from gateway.config import Config

    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]

T = TypeVar("T")
_TRACER_NAME: Final = "codex_gateway"
_PROPAGATOR: Final = TraceContextTextMapPropagator()
# Span attribute names (bounded values: ids, counts; never a prompt or a path).
SESSION_ID: Final = "codex_gateway.session_id"
RUN_ID: Final = "codex_gateway.run_id"
ATTEMPT: Final = "codex_gateway.attempt"
_TRACE_KEYS: Final = frozenset({"traceparent", "tracestate"})


class _Untraced(trace.NoOpTracer):
    """The tracer when tracing is off: its spans, entered and left a few times a run, cost
    nothing (the SDK's no-op tracer makes a span and sets it current in the context each time).
    Nothing reads the current span when tracing is off."""

    _NONE: Final = contextlib.nullcontext(trace.INVALID_SPAN)

    def start_as_current_span(  # type: ignore[override]  # a context manager all the same
        self, name: str, *args: Any, **kwargs: Any
    ) -> AbstractContextManager[trace.Span]:
        return self._NONE


_NO_OP: Final = _Untraced()


def tracer(config: Config) -> trace.Tracer:
    """The gateway's tracer when tracing is configured; else the no-op one."""
    return trace.get_tracer(_TRACER_NAME) if config.tracing is not None else _NO_OP


class RpcSpans(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs only
    """A SERVER span per RPC, named after the method (`/package.Service/Method`), child of the
    caller's W3C context (`traceparent`/`tracestate` metadata) when it sends one; its
    `rpc.grpc.status_code`, and an error status for anything but OK.

    The semantic conventions' attributes (`rpc.system`, `rpc.service`, `rpc.method`), bounded.
    Written here rather than taken from opentelemetry-instrumentation-grpc, whose interceptor
    wraps every servicer context in a proxy, parses the peer and sets nine attributes per call,
    and an RPC's span is the one every call pays for (BENCHMARKS.md, "Traces")."""

    def __init__(self) -> None:
        self._tracer = trace.get_tracer(_TRACER_NAME)
        self._spanned = PerMethod(self._span)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        if handler is None or handler.request_streaming:  # the gateway has none
            return handler
        return self._spanned(str(details.method), handler)

    def _span(self, method: str, handler: Handler) -> Handler:
        service, _, name = method.lstrip("/").partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        tracer = self._tracer

        def span(_request: Any, context: Context) -> AbstractContextManager[trace.Span]:
            return _RpcSpan(tracer, method, attributes, context)

        return wrapped(handler, span)


class _RpcSpan:
    __slots__ = ("_attributes", "_context", "_method", "_scope", "_span", "_tracer")

    def __init__(
        self, tracer: trace.Tracer, method: str, attributes: dict[str, str], context: Context
    ) -> None:
        self._tracer, self._method, self._attributes = tracer, method, attributes
        self._context = context

    def __enter__(self) -> trace.Span:
        carrier = {
            key: value
            for key, value in self._context.invocation_metadata() or ()
            if key in _TRACE_KEYS and isinstance(value, str)
        }
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        self._scope = self._tracer.start_as_current_span(
            self._method,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=self._attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._span = span = self._scope.__enter__()
        return span

    def __exit__(self, *exc: Any) -> None:
        code = status_code(self._context, exc[1])
        self._span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            self._span.set_status(trace.StatusCode.ERROR, code.name)
        self._scope.__exit__(*exc)


def trace_id() -> str | None:
    """The current span's trace id (32 hex digits); None outside a recorded trace."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def name_run(run_id: str, session_id: str) -> str | None:
    """Put the run's ids on the current span (the run's); its trace id."""
    span = trace.get_current_span()
    span.set_attribute(RUN_ID, run_id)
    span.set_attribute(SESSION_ID, session_id)
    return trace_id()


def span_id() -> str | None:
    """The current span's id (16 hex digits); None outside a recorded trace."""
    context = trace.get_current_span().get_span_context()
    return trace.format_span_id(context.span_id) if context.is_valid else None


def w3c_headers() -> dict[str, str]:
    """The current span's W3C context (`traceparent`, `tracestate`); empty outside a trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


def agent_environment() -> dict[str, str]:
    """`TRACEPARENT` (and `TRACESTATE`) of the current span for codex's environment: codex
    continues the trace in its own export when one is configured. Empty outside a trace."""
    return {name.upper(): value for name, value in w3c_headers().items()}


def linked_context(trace_hex: object, span_hex: object) -> otel_context.Context | None:
    """The context of a span recorded elsewhere (a run's, from its webhook payload), to parent
    a later span in the same trace; None when the ids are missing or malformed."""
    if not isinstance(trace_hex, str) or not isinstance(span_hex, str):
        return None
    try:
        parent = trace.SpanContext(
            int(trace_hex, 16), int(span_hex, 16), is_remote=True, trace_flags=trace.TraceFlags(1)
        )
    except ValueError:
        return None
    if not parent.is_valid:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


@asynccontextmanager
async def entered_within(
    spans: trace.Tracer, name: str, manager: AbstractAsyncContextManager[T], **attributes: Any
) -> AsyncIterator[T]:
    """`manager`, entered inside a span `name` (the wait for it) and left outside it."""
    with spans.start_as_current_span(name, attributes=attributes):
        value = await manager.__aenter__()
    try:
        yield value
    except BaseException:
        if not await manager.__aexit__(*sys.exc_info()):
            raise
    else:
        await manager.__aexit__(None, None, None)


def task_span(spans: trace.Tracer, name: str) -> tuple[trace.Span, contextvars.Context | None]:
    """A span for the whole of a task (asyncio.create_task(..., context=)), current in it and
    ended by `end_task_span` when the task is done; no context to give when tracing is off."""
    span = spans.start_span(name)
    if not span.is_recording():
        return span, None
    task_context = contextvars.copy_context()
    task_context.run(otel_context.attach, trace.set_span_in_context(span))
    return span, task_context


def end_task_span(span: trace.Span, task: asyncio.Task[Any]) -> None:
    """`task`'s done callback: its outcome on its span, then the span's end."""
    error = None if task.cancelled() else task.exception()
    if error is not None:
        span.record_exception(error)
        span.set_status(trace.StatusCode.ERROR, type(error).__name__)
    span.end()
