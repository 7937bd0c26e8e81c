"""A failed gRPC call's error as the REST bridge's body carries it, for tests of both protocols."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import status_pb2

from codex_gateway.v1 import runs_pb2


def grpc_error_body(exc: grpc.aio.AioRpcError) -> dict[str, Any]:
    """`error`, `code` and `failure` (the RunFailure of grpc-status-details-bin, its
    `retry_after_ms` an int or None, as bridge/errors.py writes it)."""
    body: dict[str, Any] = {"error": exc.details(), "code": exc.code().name}
    for key, value in exc.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(runs_pb2.RunFailure.DESCRIPTOR):
                failure = runs_pb2.RunFailure()
                detail.Unpack(failure)
                after = failure.retry_after_ms if failure.HasField("retry_after_ms") else None
                body["failure"] = {
                    "kind": failure.kind,
                    "message": failure.message,
                    "retry_after_ms": after,
                }
    return body
