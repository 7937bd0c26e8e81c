"""The gRPC -> HTTP status mapping and the error bodies built from rich status details."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from bridge.errors import (
    HTTP_STATUS_BY_GRPC_CODE,
    STATUS_DETAILS_KEY,
    ErrorResponse,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    rpc_error_response,
)
from codex_gateway.v1 import runs_pb2
from tests.bridge.scripted_upstream import BUSY_DETAILS, rich_status

# CONTRACT.md, Errors, row by row.
ROWS = [
    (grpc.StatusCode.OK, 200),
    (grpc.StatusCode.INVALID_ARGUMENT, 400),
    (grpc.StatusCode.OUT_OF_RANGE, 400),
    (grpc.StatusCode.UNAUTHENTICATED, 401),
    (grpc.StatusCode.PERMISSION_DENIED, 403),
    (grpc.StatusCode.NOT_FOUND, 404),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 408),
    (grpc.StatusCode.ABORTED, 409),
    (grpc.StatusCode.ALREADY_EXISTS, 409),
    # A run's answer that did not match its output_schema: understood, ran, could not meet it.
    (grpc.StatusCode.FAILED_PRECONDITION, 422),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.CANCELLED, 499),
    (grpc.StatusCode.INTERNAL, 500),
    (grpc.StatusCode.UNKNOWN, 500),
    (grpc.StatusCode.DATA_LOSS, 500),
    (grpc.StatusCode.UNIMPLEMENTED, 501),
    (grpc.StatusCode.UNAVAILABLE, 503),
]


def test_the_mapping_covers_every_status_code() -> None:
    assert set(HTTP_STATUS_BY_GRPC_CODE) == set(grpc.StatusCode)
    assert {code for code, _ in ROWS} == set(grpc.StatusCode)


@pytest.mark.parametrize(("code", "status"), [pytest.param(c, s, id=c.name) for c, s in ROWS])
def test_each_row(code: grpc.StatusCode, status: int) -> None:
    assert HTTP_STATUS_BY_GRPC_CODE[code] == status
    response = rpc_error_response(code, "boom", None)
    assert response.status == status
    assert response.body == {"error": "boom", "code": code.name}
    assert response.headers == {}


def test_a_bare_cancelled_is_the_upstream_going_away_not_the_client_leaving() -> None:
    """A stopping gRPC server cancels the calls it had not taken up: CANCELLED, no status of
    the gateway's. The gateway's own CANCELLED (a run cancelled through the API) carries one.
    (tests/faults/test_upstream_restart.py reproduces the first against the real gateway.)"""
    bare = grpc.aio.AioRpcError(
        grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "CANCELLED"
    )
    response = ErrorResponse.from_rpc_error(bare)
    assert response.status == 503
    assert response.body["code"] == "UNAVAILABLE"
    assert "shutting down" in response.body["error"]
    cancelled = rich_status(grpc.StatusCode.CANCELLED, "Run cancelled", reason="RUN_CANCELLED")
    by_the_gateway = grpc.aio.AioRpcError(
        grpc.StatusCode.CANCELLED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata((STATUS_DETAILS_KEY, cancelled)),
        "Run cancelled",
    )
    response = ErrorResponse.from_rpc_error(by_the_gateway)
    assert response.status == 499
    assert response.body == {
        "error": "Run cancelled",
        "reason": "RUN_CANCELLED",
        "code": "CANCELLED",
    }


def test_the_documented_429_body_and_retry_after_from_rich_details() -> None:
    response = rpc_error_response(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many concurrent requests", BUSY_DETAILS
    )
    assert response.status == 429
    assert response.body == {
        "error": "Too many concurrent requests",
        "retry_after": 5,
        "active": 2,
        "max": 2,
        "reason": "CONCURRENCY_LIMIT",
        "code": "RESOURCE_EXHAUSTED",
    }
    assert list(response.body)[:2] == ["error", "retry_after"]
    # RetryInfo says 4.2 s: whole seconds, rounded up.
    assert response.headers == {"Retry-After": "5"}


def test_retry_after_metadata_alone_sets_the_header() -> None:
    details = rich_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", metadata={"retry_after": "2.5"}
    )
    response = rpc_error_response(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", details)
    assert response.headers == {"Retry-After": "3"}
    assert response.body["retry_after"] == "2.5"


def test_retry_info_alone_adds_retry_after_to_the_body() -> None:
    details = rich_status(grpc.StatusCode.UNAVAILABLE, "draining", retry_seconds=1)
    response = rpc_error_response(grpc.StatusCode.UNAVAILABLE, "draining", details)
    assert response.headers == {"Retry-After": "1"}
    assert response.body == {"error": "draining", "retry_after": 1, "code": "UNAVAILABLE"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("5", 5, id="integer"),
        pytest.param("-3", -3, id="negative"),
        pytest.param("0", 0, id="zero"),
        pytest.param("007", "007", id="leading-zeros-stay-text"),
        pytest.param("1.5", "1.5", id="fraction-stays-text"),
        pytest.param("9" * 30, "9" * 30, id="too-long-stays-text"),
        pytest.param("abc", "abc", id="text"),
        pytest.param("", "", id="empty"),
    ],
)
def test_error_info_metadata_values(value: str, expected: object) -> None:
    details = rich_status(grpc.StatusCode.INVALID_ARGUMENT, "bad", metadata={"field": value})
    response = rpc_error_response(grpc.StatusCode.INVALID_ARGUMENT, "bad", details)
    assert response.body["field"] == expected


def test_error_info_cannot_overwrite_error_or_code() -> None:
    details = rich_status(
        grpc.StatusCode.NOT_FOUND,
        "Session not found",
        reason="SESSION_NOT_FOUND",
        metadata={"error": "x", "code": "y", "http_status": "1", "session_id": "s1"},
    )
    response = rpc_error_response(grpc.StatusCode.NOT_FOUND, "Session not found", details)
    assert response.body == {
        "error": "Session not found",
        "session_id": "s1",
        "reason": "SESSION_NOT_FOUND",
        "code": "NOT_FOUND",
    }


def test_several_error_infos_are_merged_and_other_details_ignored() -> None:
    status = status_pb2.Status(code=3, message="bad")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="A", metadata={"a": "1"}))
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="B", metadata={"b": "2"}))
    status.details.add().Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="x", description="y")
            ]
        )
    )
    response = rpc_error_response(
        grpc.StatusCode.INVALID_ARGUMENT, "bad", status.SerializeToString()
    )
    assert response.body == {
        "error": "bad",
        "a": 1,
        "b": 2,
        "reason": "B",
        "code": "INVALID_ARGUMENT",
    }


def _precondition_failure(*violations: tuple[str, str, str]) -> bytes:
    status = status_pb2.Status(code=9, message="no match")
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason="OUTPUT_SCHEMA_MISMATCH", metadata={"run_id": "r1", "violations": "x"}
        )
    )
    failure = error_details_pb2.PreconditionFailure()
    for kind, subject, description in violations:
        failure.violations.add(type=kind, subject=subject, description=description)
    status.details.add().Pack(failure)
    return status.SerializeToString()


def test_precondition_failure_violations_are_listed_in_the_body() -> None:
    details = _precondition_failure(
        ("OUTPUT_SCHEMA", "/a", '"x" is not of type "integer"'),
        ("OUTPUT_SCHEMA", "", '"b" is a required property'),
        ("TOS", "example.com", "terms not accepted"),
    )
    response = rpc_error_response(grpc.StatusCode.FAILED_PRECONDITION, "no match", details)
    assert response.status == 422
    assert response.body == {
        "error": "no match",
        "run_id": "r1",  # ErrorInfo metadata may not take the lists' keys ("violations")
        "reason": "OUTPUT_SCHEMA_MISMATCH",
        "schema_errors": [
            {"path": "/a", "message": '"x" is not of type "integer"'},
            {"path": "", "message": '"b" is a required property'},
        ],
        "violations": [
            {"type": "TOS", "subject": "example.com", "description": "terms not accepted"}
        ],
        "code": "FAILED_PRECONDITION",
    }


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        pytest.param(
            runs_pb2.RunFailure(kind="rate_limited", message="slow down", retry_after_ms=2500),
            {"kind": "rate_limited", "message": "slow down", "retry_after_ms": 2500},
            id="with-retry-after",
        ),
        pytest.param(
            runs_pb2.RunFailure(kind="auth", message="401"),
            {"kind": "auth", "message": "401", "retry_after_ms": None},
            id="plain",
        ),
        pytest.param(
            runs_pb2.RunFailure(kind="from_a_newer_gateway", message="m", retry_after_ms=0),
            {"kind": "from_a_newer_gateway", "message": "m", "retry_after_ms": 0},
            id="unknown-kind",
        ),
    ],
)
def test_a_runs_failure_is_its_own_key_in_the_body(
    failure: runs_pb2.RunFailure, expected: dict[str, object]
) -> None:
    status = status_pb2.Status(code=13, message="codex failed")
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason="AGENT_FAILED", metadata={"exit_code": "1", "failure": "not this"}
        )
    )
    status.details.add().Pack(failure)
    response = rpc_error_response(
        grpc.StatusCode.INTERNAL, "codex failed", status.SerializeToString()
    )
    assert response.status == 500
    assert response.body == {
        "error": "codex failed",
        "exit_code": 1,
        "reason": "AGENT_FAILED",
        "failure": expected,  # ErrorInfo metadata may not take its key
        "code": "INTERNAL",
    }
    assert "Retry-After" not in response.headers  # a 500 is no invitation to retry it as is


@pytest.mark.parametrize(
    "details",
    [
        pytest.param(b"\xff\xff\xff", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(
            status_pb2.Status(
                details=[any_pb2.Any(type_url="x/unknown", value=b"1")]
            ).SerializeToString(),
            id="unknown-detail",
        ),
    ],
)
def test_undecodable_or_unknown_details_leave_the_plain_body(details: bytes) -> None:
    response = rpc_error_response(grpc.StatusCode.INTERNAL, "agent failed", details)
    assert response == ErrorResponse(500, {"error": "agent failed", "code": "INTERNAL"}, {})


@pytest.mark.parametrize(
    ("code", "message"),
    [
        pytest.param(grpc.StatusCode.NOT_FOUND, "Not Found", id="phrase"),
        pytest.param(grpc.StatusCode.CANCELLED, "CANCELLED", id="no-phrase-for-499"),
    ],
)
def test_an_empty_message_falls_back(code: grpc.StatusCode, message: str) -> None:
    assert rpc_error_response(code, None, None).body["error"] == message


def test_stream_payload_carries_the_http_status() -> None:
    response = rpc_error_response(grpc.StatusCode.DEADLINE_EXCEEDED, "Run timed out", None)
    assert response.stream_payload() == {
        "error": "Run timed out",
        "code": "DEADLINE_EXCEEDED",
        "http_status": 408,
    }


@pytest.mark.parametrize(
    ("error", "status", "body", "headers"),
    [
        pytest.param(
            InvalidRequest("Invalid JSON payload"),
            400,
            {"error": "Invalid JSON payload", "code": "INVALID_ARGUMENT"},
            {},
            id="invalid",
        ),
        pytest.param(
            PayloadTooLarge(10),
            413,
            {"error": "Request body exceeds 10 bytes", "code": "PAYLOAD_TOO_LARGE"},
            {},
            id="too-large",
        ),
        pytest.param(RouteNotFound(), 404, {"error": "Not Found"}, {}, id="not-found"),
        pytest.param(
            MethodNotAllowed({"HEAD", "GET"}),
            405,
            {"error": "Method Not Allowed"},
            {"Allow": "GET, HEAD"},
            id="method",
        ),
    ],
)
def test_bridge_errors(
    error: Exception, status: int, body: dict[str, object], headers: dict[str, str]
) -> None:
    assert isinstance(error, InvalidRequest | PayloadTooLarge | RouteNotFound | MethodNotAllowed)
    assert ErrorResponse.from_bridge_error(error) == ErrorResponse(status, body, headers)
