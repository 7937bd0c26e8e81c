"""Errors: the one gRPC status -> HTTP status mapping, and every JSON error body the bridge sends.

Error tree of the bridge's own answers (the upstream's arrive as `grpc.aio.AioRpcError`):

    BridgeError            an HTTP error decided by the bridge, before any call
     ├── InvalidRequest     400: a path, query or body that does not transcode
     ├── PayloadTooLarge    413: a body over the configured limit
     ├── UnsupportedMediaType 415: a body that is not declared `application/json`
     ├── MisdirectedRequest 421: a `Host` the bridge does not answer for (DNS rebinding)
     ├── ForbiddenOrigin    403: a browser's `Origin` the bridge does not answer for
     ├── RouteNotFound      404: no binding has this path
     └── MethodNotAllowed   405: bindings have this path, with other methods

Bodies follow CONTRACT.md: `{"error": "<message>", "code": "<STATUS_NAME>", ...extras}`, where the
extras are the `metadata` of every `google.rpc.ErrorInfo` in the status details (decimal integers
as JSON numbers) plus its `reason`, the violations of a `google.rpc.PreconditionFailure` as
lists (`_VIOLATION_KEYS`), and a run's `codex_gateway.v1.RunFailure` as `failure` (`kind`,
`message`, `retry_after_ms`); a `google.rpc.RetryInfo` (or a `retry_after` entry) becomes a
`Retry-After` header. Every body sent also carries the request's id, `request_id`
(bridge/requestid.py).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final, cast

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from starlette.types import Receive, Scope, Send

from codex_gateway.v1 import runs_pb2

from .requestid import current_request_id
from .responses import json_response

logger = logging.getLogger(__name__)

STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
# The answer to a call the upstream ended unasked (`ended_by_upstream`).
UPSTREAM_ENDED_MESSAGE: Final = (
    "The gateway ended the call before answering it: it is shutting down or restarting"
)

HTTP_STATUS_BY_GRPC_CODE: Final[Mapping[grpc.StatusCode, int]] = {
    grpc.StatusCode.OK: 200,
    # grpc-gateway's "499 Client Closed Request" (nginx's code): the caller gave up, i.e. a
    # run cancelled through the API (the gateway's RUN_CANCELLED). A bare CANCELLED from a
    # stopping server is a 503 instead (`ended_by_upstream`).
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    # A run that timed out: the documented 408, not grpc-gateway's 504 (CONTRACT.md, Errors).
    grpc.StatusCode.DEADLINE_EXCEEDED: 408,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    # The concurrency limit: 429 with Retry-After.
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    # A run that could not meet what was asked (its answer did not match its output_schema):
    # 422, the request was understood and ran, not grpc-gateway's 400 (bad input is
    # INVALID_ARGUMENT here) nor 412 (no HTTP precondition header is involved).
    grpc.StatusCode.FAILED_PRECONDITION: 422,
    # One run at a time per session; a conflicting trigger write.
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# google.rpc.PreconditionFailure violations in the body: those of a known type under their own
# key with named fields, e.g. an answer's schema errors as `schema_errors: [{path, message}]`;
# any other as `violations: [{type, subject, description}]`.
_VIOLATIONS: Final = ("violations", "subject", "description")
_VIOLATION_KEYS: Final[Mapping[str, tuple[str, str, str]]] = {
    "OUTPUT_SCHEMA": ("schema_errors", "path", "message"),
}
# Keys of the error body that ErrorInfo metadata may not overwrite.
_RESERVED_KEYS: Final = frozenset(
    {
        "error",
        "code",
        "reason",
        "http_status",
        "violations",
        # The bridge's own id (send_error), the one the gateway was given for the request.
        "request_id",
        "failure",
        *(k for k, _, _ in _VIOLATION_KEYS.values()),
    }
)
# Decimal integers short enough to be exact everywhere (and far below int()'s digit limit).
_DECIMAL_INTEGER: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,17})", re.ASCII)
_DECIMAL_NUMBER: Final = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?", re.ASCII)


class BridgeError(Exception):
    """An HTTP error the bridge answers itself."""

    status: int = 500
    code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(BridgeError):
    """The request does not transcode into the RPC's request message."""

    status = 400
    code = "INVALID_ARGUMENT"


class PayloadTooLarge(BridgeError):
    """The body is over the configured limit."""

    status = 413
    code = "PAYLOAD_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body exceeds {limit} bytes")


class UnsupportedMediaType(BridgeError):
    """A request body without a JSON media type: what an HTML form or a `text/plain` fetch
    sends (no CORS preflight), so accepting it would let any web page start a run."""

    status = 415
    # A malformed request, the client's to fix: INVALID_ARGUMENT (as grpc-gateway answers an
    # unknown content type); the HTTP status says which mistake.
    code = "INVALID_ARGUMENT"


class MisdirectedRequest(BridgeError):
    """The `Host` header names a host the bridge is not configured to serve (421)."""

    status = 421
    # Refused for where it was sent, not for what it asks: PERMISSION_DENIED.
    code = "PERMISSION_DENIED"


class ForbiddenOrigin(BridgeError):
    """A browser sent this request from a page of another origin."""

    status = 403
    code = "PERMISSION_DENIED"


class RouteNotFound(BridgeError):
    """No binding has this path."""

    status = 404
    code = "NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("Not Found")

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


class MethodNotAllowed(BridgeError):
    """Bindings have this path, with other methods."""

    status = 405
    code = "METHOD_NOT_ALLOWED"

    def __init__(self, allowed: Collection[str]) -> None:
        super().__init__("Method Not Allowed")
        self.allowed = sorted(allowed)

    def body(self) -> dict[str, Any]:
        return {"error": self.message}

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An HTTP error: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_bridge_error(cls, error: BridgeError) -> ErrorResponse:
        return cls(error.status, error.body(), error.headers())

    @classmethod
    def internal(cls) -> ErrorResponse:
        return cls(500, {"error": "Internal Server Error"})

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> ErrorResponse:
        """The HTTP answer to a failed call: the one place gRPC errors become HTTP."""
        if ended_by_upstream(error):
            return rpc_error_response(grpc.StatusCode.UNAVAILABLE, UPSTREAM_ENDED_MESSAGE, None)
        return rpc_error_response(error.code(), error.details(), status_details(error))

    def stream_payload(self) -> dict[str, Any]:
        """The error as the last item of a stream, where the HTTP status is already sent."""
        payload = dict(self.body)
        payload.setdefault("code", "INTERNAL" if self.status >= 500 else "UNKNOWN")
        payload["http_status"] = self.status
        return with_request_id(payload)


def status_details(error: grpc.aio.AioRpcError) -> bytes | None:
    """The serialized `google.rpc.Status` the gateway's boundary attaches to its errors."""
    # grpc-stubs describe sync metadata objects; grpc.aio's Metadata yields (key, value).
    trailing = cast(Iterable[tuple[str, str | bytes]], error.trailing_metadata() or ())
    for key, value in trailing:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return value
    return None


def ended_by_upstream(error: BaseException) -> bool:
    """A call the upstream cancelled unasked: CANCELLED without the gateway's status details.

    A gRPC server that stops cancels every call its core received but had not yet taken up
    (grpc's "CANCELLED", no details): for the REST caller the gateway went away, as with
    UNAVAILABLE, not a client that left. The gateway's own CANCELLED (RUN_CANCELLED) always
    carries its status; and a call the bridge cancels itself (its client left) ends in
    `asyncio.CancelledError`, never in an AioRpcError, so never here.
    """
    return (
        isinstance(error, grpc.aio.AioRpcError)
        and error.code() == grpc.StatusCode.CANCELLED
        and status_details(error) is None
    )


def http_status_for(code: grpc.StatusCode) -> int:
    return HTTP_STATUS_BY_GRPC_CODE.get(code, 500)


def rpc_error_response(
    code: grpc.StatusCode, message: str | None, details: bytes | None
) -> ErrorResponse:
    """The error body and headers for a gRPC status and its serialized `google.rpc.Status`."""
    status = http_status_for(code)
    body: dict[str, Any] = {"error": message or _phrase(status, code)}
    headers: dict[str, str] = {}
    retry_after: int | None = None
    for detail in _unpack_details(details):
        if isinstance(detail, error_details_pb2.ErrorInfo):
            # retry_after first, as the documented 429 body shows it; then by name.
            for key, value in sorted(detail.metadata.items(), key=_documented_order):
                if key not in _RESERVED_KEYS:
                    body[key] = _json_scalar(value)
            if detail.reason:
                body["reason"] = detail.reason
        elif isinstance(detail, error_details_pb2.PreconditionFailure):
            for violation in detail.violations:
                key, subject, description = _VIOLATION_KEYS.get(violation.type, _VIOLATIONS)
                item = {subject: violation.subject, description: violation.description}
                if key == _VIOLATIONS[0]:
                    item = {"type": violation.type, **item}
                entries = body.setdefault(key, [])
                if isinstance(entries, list):
                    entries.append(item)
        elif isinstance(detail, error_details_pb2.RetryInfo):
            delay = detail.retry_delay
            retry_after = max(0, math.ceil(delay.seconds + delay.nanos / 1e9))
        elif isinstance(detail, runs_pb2.RunFailure):
            # As the RunFailure message prints (null: the provider named no time).
            body["failure"] = {
                "kind": detail.kind,
                "message": detail.message,
                "retry_after_ms": (
                    detail.retry_after_ms if detail.HasField("retry_after_ms") else None
                ),
            }
    if retry_after is None:
        retry_after = _seconds(body.get("retry_after"))
    elif "retry_after" not in body:
        body["retry_after"] = retry_after
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body["code"] = code.name
    return ErrorResponse(status, body, headers)


def _phrase(status: int, code: grpc.StatusCode) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # 499 has no standard phrase
        return code.name


def _unpack_details(details: bytes | None) -> Iterable[object]:
    if not details:
        return ()
    try:
        status = status_pb2.Status.FromString(details)
    except DecodeError:
        logger.warning("ignoring undecodable %s", STATUS_DETAILS_KEY)
        return ()
    unpacked: list[object] = []
    for any_detail in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.PreconditionFailure,
            runs_pb2.RunFailure,
        ):
            if any_detail.Is(cls.DESCRIPTOR):
                message = cls()
                any_detail.Unpack(message)
                unpacked.append(message)
    return unpacked


def _documented_order(item: tuple[str, str]) -> tuple[bool, str]:
    return item[0] != "retry_after", item[0]


def _json_scalar(value: str) -> int | str:
    return int(value) if _DECIMAL_INTEGER.fullmatch(value) else value


def _seconds(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    if isinstance(value, str) and _DECIMAL_NUMBER.fullmatch(value):
        return math.ceil(float(value))
    return None


def with_request_id(body: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """`body` with the request's id (`request_id`: the one being served by default), the
    bridge's own: it is the id of the response's `X-Request-Id` header."""
    request_id = request_id or current_request_id()
    return body if request_id is None else {**body, "request_id": request_id}


async def send_error(error: ErrorResponse, scope: Scope, receive: Receive, send: Send) -> None:
    body = with_request_id(error.body)
    await json_response(error.status, body, error.headers)(scope, receive, send)
