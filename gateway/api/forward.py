"""The servicer's side of forwarding: a session's call served here, or on its home replica.

Each method about one session is marked `@routed(...)` with the way to find that session in its
request. `Placement` answers where the session lives: the embedded `Here` always answers here
(the method runs as it always has, at the cost of one attribute read), and `ClusterPlacement`
(cluster mode, picked by `Gateway.build`) asks the local store first (a session homed here never
touches the database), then the cluster's database. A call about a session homed elsewhere is
the same public method called on its home (a tail: relayed in batches through
`ClusterService.RelayTail`), and the home's answer, error or not, is the client's.

A forwarded call (`x-codex-gateway-forwarded`) is always served here: never forwarded twice.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Protocol, TypeVar

import grpc

from bridge.requestid import REQUEST_ID_HEADER, current_request_id
from codex_gateway.v1 import runs_pb2
from gateway.cluster.forwarding import Forwarding, Home, HomeAnswered, Metadata, is_forwarded
from gateway.errors import SessionNotFound
from gateway.sessions.store import SessionStore

Context = grpc.aio.ServicerContext[Any, Any]
Method = TypeVar("Method", bound=Callable[..., Any])
TAIL_METHOD: Final = "TailSession"


class Placement(Protocol):
    """Where the session a request names lives. `everything_here`: no session ever lives
    elsewhere (embedded), so `home` need not be asked."""

    everything_here: bool
    forwarding: Forwarding | None

    async def home(self, ref: str, context: Context) -> Home | None:
        """The session's home replica when it is another one; None: serve it here."""


class Here:
    """Embedded mode: every session is this gateway's."""

    everything_here = True
    forwarding: Forwarding | None = None

    async def home(self, ref: str, context: Context) -> Home | None:
        return None


HERE: Final[Placement] = Here()


class ClusterPlacement:
    """Cluster mode: the local store's index first, then the database."""

    everything_here = False

    def __init__(self, store: SessionStore, forwarding: Forwarding) -> None:
        self._store = store
        self.forwarding: Forwarding | None = forwarding
        self._forwarding = forwarding

    async def home(self, ref: str, context: Context) -> Home | None:
        if not ref.strip() or is_forwarded(context.invocation_metadata() or ()):
            return None
        try:
            self._store.resolve(ref)
        except SessionNotFound:
            pass
        else:
            return None
        home = await self._forwarding.home(ref)
        if home is None or home.replica_id == self._forwarding.replica_id:
            return None  # unknown to the cluster, or ours but unreadable: answered here (404)
        return home


class _Routed(Protocol):
    _placement: Placement


def routed(session_of: Callable[[Any], str]) -> Callable[[Method], Method]:
    """Serve the method here, or on the home of the session `session_of(request)` names."""

    def decorate(method: Method) -> Method:
        name = method.__name__
        if name == TAIL_METHOD:  # relayed in batches (and shared): Forwarding.tail
            return _routed_stream(  # type: ignore[return-value]  # same shape
                method,
                session_of,
                lambda forwarding, home, request, caller, left: forwarding.tail(
                    home, request, caller=caller, time_left_s=left
                ),
            )
        if inspect.isasyncgenfunction(method):
            return _routed_stream(  # type: ignore[return-value]  # same shape
                method,
                session_of,
                lambda forwarding, home, request, caller, left: forwarding.stream(
                    home, name, request, caller=caller, time_left_s=left
                ),
            )
        return _routed_unary(method, session_of)  # type: ignore[return-value]  # same shape

    return decorate


def _routed_unary(
    method: Callable[..., Any], session_of: Callable[[Any], str]
) -> Callable[..., Any]:
    name = method.__name__

    @functools.wraps(method)
    async def unary(self: _Routed, request: Any, context: Context) -> Any:
        placement = self._placement
        if placement.everything_here:
            return await method(self, request, context)
        home = await placement.home(session_of(request), context)
        if home is None or placement.forwarding is None:
            return await method(self, request, context)
        try:
            return await placement.forwarding.unary(
                home, name, request, caller=_caller(context), time_left_s=context.time_remaining()
            )
        except HomeAnswered as answer:
            await _answer(context, answer)

    return unary


# The home's stream of a forwarded call: (forwarding, home, request, caller, time left).
Upstream = Callable[[Forwarding, Home, Any, Metadata, float | None], AsyncIterator[Any]]


def _routed_stream(
    method: Callable[..., AsyncIterator[Any]],
    session_of: Callable[[Any], str],
    upstream_of: Upstream,
) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(method)
    def stream(self: _Routed, request: Any, context: Context) -> AsyncIterator[Any]:
        if self._placement.everything_here:
            return method(self, request, context)  # the method's own stream, untouched
        return _forwarded_stream(self, method, request, context, session_of, upstream_of)

    return stream


async def _forwarded_stream(
    self: _Routed,
    method: Callable[..., AsyncIterator[Any]],
    request: Any,
    context: Context,
    session_of: Callable[[Any], str],
    upstream_of: Upstream,
) -> AsyncIterator[Any]:
    placement = self._placement
    home = await placement.home(session_of(request), context)
    if home is None or placement.forwarding is None:
        async for message in method(self, request, context):
            yield message
        return
    upstream = upstream_of(
        placement.forwarding, home, request, _caller(context), context.time_remaining()
    )
    try:
        async for message in upstream:
            yield message
    except HomeAnswered as answer:
        await _answer(context, answer)
    finally:
        await upstream.aclose()  # type: ignore[attr-defined]  # an async generator


def _caller(context: Context) -> Metadata:
    return tuple(context.invocation_metadata() or ())


async def _answer(context: Context, answer: HomeAnswered) -> None:
    """The home's error, to the client as the home gave it (with the call's request id, which
    the home was given: gateway/cluster/forwarding.py)."""
    request_id = current_request_id()
    own = ((REQUEST_ID_HEADER, request_id),) if request_id is not None else ()
    await context.abort(
        answer.code, answer.message, trailing_metadata=(*answer.trailing_metadata(), *own)
    )


# What names the session in each routed request.


def by_session_id(request: Any) -> str:
    return str(request.session_id)


def by_run_target(request: runs_pb2.CompleteRequest | runs_pb2.StreamCompletionRequest) -> str:
    """A completion continuing a session (`session_id`), or resuming a codex thread."""
    run = request.run
    if run.HasField("session_id") and run.session_id.strip():
        return run.session_id
    if run.HasField("resume_session_id"):
        return run.resume_session_id
    return ""
