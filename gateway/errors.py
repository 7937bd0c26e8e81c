"""The gateway's domain errors, each carrying the gRPC status it is reported with.

    GatewayError
    ├── InvalidRequest           INVALID_ARGUMENT   400
    ├── Unauthenticated          UNAUTHENTICATED    401
    ├── SecureAccessDenied       PERMISSION_DENIED  403
    ├── ScopeDenied              PERMISSION_DENIED  403 (an API key's scope)
    ├── ModelNotAllowed          PERMISSION_DENIED  403 (an API key's allowed_models)
    ├── WorkspaceNotAllowed      PERMISSION_DENIED  403 (an API key's workspace_roots)
    ├── NotFound                 NOT_FOUND          404
    │   ├── SessionNotFound
    │   ├── TriggerNotFound
    │   ├── RunNotFound
    │   └── ChangesUnavailable   (a run whose changes were not recorded or are gone)
    ├── Conflict                 ABORTED            409
    │   └── SessionBusy
    ├── ConcurrencyLimitReached  RESOURCE_EXHAUSTED 429 (the gateway's or an API key's)
    ├── RateLimited              RESOURCE_EXHAUSTED 429 (an API key's runs_per_minute)
    ├── RunTimedOut              DEADLINE_EXCEEDED  408
    ├── RunCancelled             CANCELLED          499
    ├── OutputSchemaMismatch     FAILED_PRECONDITION 422 (the answer did not match output_schema)
    ├── AgentFailed              INTERNAL           500
    ├── StorageFailed            INTERNAL           500
    └── Unavailable              UNAVAILABLE        503
        ├── AgentUnavailable     (the codex binary is missing or not executable)
        ├── ShuttingDown         (a new run while the gateway drains)
        ├── RunInterrupted       (a run the drain stopped)
        ├── StorageUnavailable   (cluster mode: the database cannot be reached)
        └── ReplicaUnavailable   (cluster mode: a session's home replica is down)

Domain code raises these; only the servicer boundary turns them into a gRPC status.

An error that quotes what a client sent quotes it through `quote` (a short prefix), and the
boundary caps every message and detail again (`MAX_MESSAGE_CHARS`, `MAX_DETAIL_CHARS`): gRPC
carries them in response metadata, whose size a client limits (16 KiB hard in grpcio), so an
echoed 20 KB input would turn any answer into RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import grpc

if TYPE_CHECKING:  # the failure module classifies these errors; only its type is needed here
    from gateway.runs.failure import RunFailure

QUOTE_CHARS = 64
MAX_MESSAGE_CHARS = 1024
MAX_DETAIL_CHARS = 256


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """A client's input as an error may show it: repr of at most `limit` characters, with the
    length of what was cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def quote_path(path: object, limit: int = QUOTE_CHARS) -> str:
    """A path as an error may show it: its last `limit` characters (the file name tells most)."""
    text = str(path)
    if len(text) <= limit:
        return repr(text)
    return f"...{text[-limit:]!r} ({len(text)} characters)"


def capped(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Any text bound for response metadata, cut to `limit` characters with a marker."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class GatewayError(Exception):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # The error of a run that started and did not complete says why (kind, message,
        # retry_after_ms): reported in the status details beside ErrorInfo.
        self.failure: RunFailure | None = None
        # When to try again, for a refusal that can say (a 429): RetryInfo beside ErrorInfo.
        self.retry_after_s: int | None = None

    def details(self) -> dict[str, str]:
        """Extra facts for the error body (google.rpc.ErrorInfo metadata)."""
        return {}


class InvalidRequest(GatewayError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def details(self) -> dict[str, str]:
        return {"field": self.field} if self.field else {}


def at_least_one(value: int, name: str) -> int:
    """`value`, a count the request named `name`, if it is at least 1; else InvalidRequest."""
    if value < 1:
        raise InvalidRequest(f"{name} must be at least 1", field=name)
    return value


class Unauthenticated(GatewayError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class SecureAccessDenied(GatewayError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "SECURE_TOKEN_REQUIRED"


class ScopeDenied(GatewayError):
    """The caller's API key lacks the scope the call needs (403)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "SCOPE_DENIED"

    def __init__(self, key_name: str, scope: str) -> None:
        super().__init__(f"API key {key_name!r} lacks the {scope!r} scope this call needs")
        self.scope = scope

    def details(self) -> dict[str, str]:
        return {"scope": self.scope}


class ModelNotAllowed(GatewayError):
    """The run's model is not among the caller's API key's `allowed_models` (403)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "MODEL_NOT_ALLOWED"

    def __init__(self, key_name: str, model: str) -> None:
        super().__init__(f"API key {key_name!r} may not run the model {quote(model)}")
        self.model = model

    def details(self) -> dict[str, str]:
        return {"model": self.model}


class WorkspaceNotAllowed(GatewayError):
    """The run's workspace lies outside the caller's API key's `workspace_roots` (403)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "WORKSPACE_NOT_ALLOWED"

    def __init__(self, key_name: str, workspace: str) -> None:
        super().__init__(
            f"API key {key_name!r} may not run in the workspace {quote_path(workspace)}"
        )
        self.workspace = workspace

    def details(self) -> dict[str, str]:
        return {"workspace": self.workspace}


class NotFound(GatewayError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class SessionNotFound(NotFound):
    reason = "SESSION_NOT_FOUND"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"Session {quote(session_id)} not found")


class TriggerNotFound(NotFound):
    reason = "TRIGGER_NOT_FOUND"

    def __init__(self, trigger_id: str) -> None:
        super().__init__(f"Trigger {quote(trigger_id)} not found")


class RunNotFound(NotFound):
    reason = "RUN_NOT_FOUND"

    def __init__(self, session_id: str, run_id: str | None) -> None:
        super().__init__(
            f"Session {quote(session_id)} has no run {quote(run_id)}"
            if run_id is not None
            else f"Session {quote(session_id)} has no run yet"
        )


class ChangesUnavailable(NotFound):
    reason = "CHANGES_UNAVAILABLE"


class Conflict(GatewayError):
    code = grpc.StatusCode.ABORTED
    reason = "CONFLICT"


class SessionBusy(Conflict):
    reason = "SESSION_BUSY"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"Session {quote(session_id)} is already running a run")


class ConcurrencyLimitReached(GatewayError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "CONCURRENCY_LIMIT"

    def __init__(self, active: int, maximum: int, retry_after_s: int = 5) -> None:
        super().__init__("Too many concurrent requests")
        self.active = active
        self.maximum = maximum
        self.retry_after_s = retry_after_s

    def details(self) -> dict[str, str]:
        return {
            "retry_after": str(self.retry_after_s),
            "active": str(self.active),
            "max": str(self.maximum),
        }


class RateLimited(GatewayError):
    """An API key's `runs_per_minute` is spent: 429 with `Retry-After`, like the concurrency
    limit's, but a reason of its own."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"

    def __init__(self, key_name: str, per_minute: int, retry_after_s: int) -> None:
        super().__init__(
            f"API key {key_name!r} may start {per_minute} runs a minute; retry in {retry_after_s}s"
        )
        self.retry_after_s = retry_after_s

    def details(self) -> dict[str, str]:
        return {"retry_after": str(self.retry_after_s)}


class RunTimedOut(GatewayError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "RUN_TIMED_OUT"

    def __init__(self, timeout_ms: int) -> None:
        super().__init__(f"Codex run timed out after {timeout_ms}ms")
        self.timeout_ms = timeout_ms

    def details(self) -> dict[str, str]:
        return {"timeout_ms": str(self.timeout_ms)}


class RunStalled(GatewayError):
    """The stall watchdog stopped a run whose codex had gone silent (no output, no command of
    its own running) for `stall_timeout_ms`: a timeout of another kind (408, status `timeout`,
    failure kind `stalled`)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "RUN_STALLED"

    def __init__(self, stall_timeout_ms: int) -> None:
        super().__init__(
            f"Codex was silent for {stall_timeout_ms}ms: the run was stopped as stalled"
        )
        self.stall_timeout_ms = stall_timeout_ms

    def details(self) -> dict[str, str]:
        return {"stall_timeout_ms": str(self.stall_timeout_ms)}


class RunCancelled(GatewayError):
    code = grpc.StatusCode.CANCELLED
    reason = "RUN_CANCELLED"


class OutputSchemaMismatch(GatewayError):
    """A run's final answer did not match its `output_schema`, even after a repair turn: the
    request was understood and ran, but the run could not meet it. `errors` are (JSON pointer,
    message) pairs, reported as `google.rpc.PreconditionFailure` violations."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "OUTPUT_SCHEMA_MISMATCH"

    def __init__(
        self, message: str, *, session_id: str, run_id: str, errors: Sequence[tuple[str, str]]
    ) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.run_id = run_id
        self.errors = list(errors)

    def details(self) -> dict[str, str]:
        return {"session_id": self.session_id, "run_id": self.run_id}


class AgentFailed(GatewayError):
    reason = "AGENT_FAILED"

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None,
        stderr_tail: str = "",
        failure: RunFailure | None = None,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.failure = failure

    def details(self) -> dict[str, str]:
        return {} if self.exit_code is None else {"exit_code": str(self.exit_code)}


class StorageFailed(GatewayError):
    reason = "STORAGE_FAILED"


class Unavailable(GatewayError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class AgentUnavailable(Unavailable):
    reason = "AGENT_UNAVAILABLE"


class ShuttingDown(Unavailable):
    reason = "SHUTTING_DOWN"

    def __init__(self) -> None:
        super().__init__("The gateway is shutting down")


class RunInterrupted(Unavailable):
    """A run stopped because the gateway shut down (recorded `interrupted`): the contract's 503
    for shutting down, so a client may retry it on the next gateway."""

    reason = "RUN_INTERRUPTED"


class StorageUnavailable(Unavailable):
    """Cluster mode: the database cannot be reached now; nothing was changed."""

    reason = "STORAGE_UNAVAILABLE"


class ReplicaUnavailable(Unavailable):
    """Cluster mode: the session lives on a replica that is down (its lease has expired)."""

    reason = "REPLICA_UNAVAILABLE"

    def __init__(self, replica_id: str, session_id: str | None = None) -> None:
        what = f"session {session_id} lives on" if session_id else "the call needs"
        super().__init__(f"{what} replica {replica_id}, which is unavailable; retry later")
        self.replica_id = replica_id

    def details(self) -> dict[str, str]:
        return {**super().details(), "replica_id": self.replica_id}
