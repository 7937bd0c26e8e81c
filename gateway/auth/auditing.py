"""The audit trail: an interceptor that writes one record (gateway/auth/audit.py) per mutating
call, whatever its result: who (the caller's key name and tenant), what (the method, and the
session, run and trigger ids it touched), when, the gRPC status code, and the request id.

Placed after RequestIds (the request id is bound) and before the key check, so refusals of
mutating calls are recorded too: a 401 names no key (`key` is empty), a 403 SCOPE_DENIED names
the key the check bound. A call another replica forwarded (it carries the cluster token) is
recorded where the client called, not again at the session's home.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import grpc

from bridge.requestid import current_request_id
from codex_gateway.v1 import runs_pb2
from gateway.api.around import PerMethod, status_code, wrapped
from gateway.auth import principal as principals
from gateway.auth.audit import AuditLog
from gateway.auth.keys import ApiKey
from gateway.auth.principal import Principal
from gateway.cluster.forwarding import CLUSTER_TOKEN_KEY

if TYPE_CHECKING:  # generic in the stubs only
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]

MUTATING: Final = frozenset(
    {
        "Complete",
        "StreamCompletion",
        "PromptSession",
        "NudgeSession",
        "ForkSession",
        "CancelSession",
        "CreateTriggers",
        "UpdateTrigger",
        "DeleteTrigger",
    }
)
# Bound before the key check runs: still bound after it, the caller was not authenticated.
NOBODY: Final = Principal(ApiKey("", b"", "", frozenset()))
_MAX_TRIGGER_IDS: Final = 20


class AuditTrail(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs only
    def __init__(
        self, log: AuditLog, *, keys_required: bool, cluster_token: str | None = None
    ) -> None:
        """`keys_required`: a key check follows (else every caller is the open admin)."""
        self._log = log
        self._keys_required = keys_required
        self._cluster = cluster_token.encode() if cluster_token is not None else None
        self._recorded = PerMethod(self._record)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        method = str(details.method)
        if handler is None or handler.request_streaming or _name(method) not in MUTATING:
            return handler
        if self._cluster is not None:
            metadata = dict(details.invocation_metadata or ())
            offered = str(metadata.get(CLUSTER_TOKEN_KEY, "")).encode()
            if hmac.compare_digest(offered, self._cluster):
                return handler  # a replica's forwarded call: recorded where it came in
        return self._recorded(method, handler)

    def _record(self, method: str, handler: Handler) -> Handler:
        name = _name(method)
        return wrapped(
            handler,
            lambda request, context: _Recording(self, name, request, context),
            sent=_Recording.sent,
        )

    def write(self, method: str, code: str, targets: dict[str, str]) -> None:
        caller = principals.current()
        self._log.record(
            key=caller.name,
            tenant=caller.tenant,
            method=method,
            code=code,
            request_id=current_request_id(),
            target=targets,
        )


class _Recording:
    """One mutating call: the ids its request and answers name, written with its code at its
    end, whatever the end."""

    __slots__ = ("_context", "_name", "_request", "_targets", "_trail")

    def __init__(self, trail: AuditTrail, name: str, request: Any, context: Context) -> None:
        self._trail, self._name, self._request, self._context = trail, name, request, context

    def __enter__(self) -> None:
        if self._trail._keys_required:
            principals.bind(NOBODY)
        self._targets = _targets(self._request)

    def sent(self, message: Any) -> None:
        if isinstance(message, runs_pb2.StreamCompletionResponse) and message.HasField("event"):
            return  # a codex event names no id: a stream's ids come with its start and result
        self._targets.update(_targets(message))

    def __exit__(self, kind: object, failed: BaseException | None, trace: object) -> None:
        code = "OK" if failed is None else status_code(self._context, failed).name
        self._trail.write(self._name, code, self._targets)


def _name(method: str) -> str:
    return method.rsplit("/", 1)[-1]


def _targets(message: Any) -> dict[str, str]:
    """The session, run and trigger ids a request or response message names."""
    found: dict[str, str] = {}
    fields = getattr(getattr(message, "DESCRIPTOR", None), "fields_by_name", None)
    if fields is None:  # not a message (an undecodable request)
        return found
    for name in ("session_id", "run_id", "trigger_id"):
        if name in fields and getattr(message, name):
            found[name] = str(getattr(message, name))
    for holder in ("result", "started", "completed"):
        if holder in fields and message.HasField(holder):
            inner = getattr(message, holder)
            for name in ("session_id", "run_id"):
                value = getattr(inner, name, "")
                if value:
                    # A fork's request names its parent; its result, the new session.
                    key = "fork_session_id" if found.get(name, value) != value else name
                    found.setdefault(key, str(value))
    listed = fields.get("triggers")
    if listed is not None and listed.is_repeated:
        ids = [t.id for t in list(message.triggers)[:_MAX_TRIGGER_IDS] if t.id]
        if ids:
            found["trigger_id"] = ",".join(ids)
    if "trigger" in fields and message.HasField("trigger") and message.trigger.id:
        found.setdefault("trigger_id", message.trigger.id)
    return found
