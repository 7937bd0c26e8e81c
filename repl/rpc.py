"""The gRPC client: the gateway service over grpc.aio, answers as the REST JSON shapes."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Final, cast

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, sessions_pb2

from .attachments import Attachments
from .client import (
    CANCEL_TIMEOUT_S,
    CHANGES_TIMEOUT_S,
    LIST_TIMEOUT_S,
    SEARCH_TIMEOUT_S,
    SHOW_TIMEOUT_S,
    Credentials,
    Json,
    RunCompleted,
    RunRequest,
    StreamItem,
    prompt_body,
    run_wait_s,
    stream_item,
)
from .errors import GatewayError, GatewayUnreachable

_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
# How grpc-core words a failed connection (refused, no route, unknown host).
_UNREACHABLE_MARKERS: Final = ("failed to connect", "connection refused", "errors resolving")


class GrpcClient:
    """The gateway's gRPC service at HOST:PORT (plaintext)."""

    def __init__(self, target: str, credentials: Credentials) -> None:
        self._target = target
        self._channel = grpc.aio.insecure_channel(target)
        # The generated stub module is untyped (grpc_tools writes no .pyi for it).
        self._stub = gateway_pb2_grpc.GatewayServiceStub(self._channel)  # type: ignore[no-untyped-call]
        metadata = []
        if credentials.api_token:
            metadata.append(("authorization", f"Bearer {credentials.api_token}"))
        if credentials.secure_token:
            metadata.append(("x-codex-secure-token", credentials.secure_token))
        self._metadata = tuple(metadata)

    @property
    def target(self) -> str:
        return self._target

    async def stream_run(self, request: RunRequest) -> AsyncIterator[StreamItem]:
        call = self._stub.StreamCompletion(
            runs_pb2.StreamCompletionRequest(run=_run_input(request.body())),
            metadata=self._metadata,
            timeout=request.wait_s,
        )
        try:
            async for message in call:
                item = stream_item(_json(message))
                yield RunCompleted(_result(item.result)) if isinstance(item, RunCompleted) else item
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from exc
        finally:
            call.cancel()

    async def prompt(
        self,
        session_id: str,
        text: str,
        *,
        timeout_ms: int,
        env: Mapping[str, str],
        attachments: Attachments,
    ) -> Json:
        run = _run_input(prompt_body(text, timeout_ms, env, attachments))
        request = runs_pb2.PromptSessionRequest(session_id=session_id, run=run)
        wait_s = run_wait_s(timeout_ms)
        response = await self._unary(self._stub.PromptSession, request, wait_s)
        return _result(_json(response.result))

    async def fork(
        self,
        session_id: str,
        text: str | None,
        *,
        timeout_ms: int,
        env: Mapping[str, str],
        attachments: Attachments,
    ) -> Json:
        run = _run_input(prompt_body(text, timeout_ms, env, attachments))
        request = runs_pb2.ForkSessionRequest(session_id=session_id, run=run)
        wait_s = run_wait_s(timeout_ms)
        response = await self._unary(self._stub.ForkSession, request, wait_s)
        return _result(_json(response.result))

    async def changes(self, session_id: str, *, run_id: str | None, diff: bool) -> Json:
        request = sessions_pb2.GetSessionChangesRequest(session_id=session_id, diff=diff)
        if run_id:
            request.run_id = run_id
        response = await self._unary(self._stub.GetSessionChanges, request, CHANGES_TIMEOUT_S)
        return _json(response)

    async def list_sessions(self) -> list[Json]:
        request = sessions_pb2.ListSessionsRequest()
        response = await self._unary(self._stub.ListSessions, request, LIST_TIMEOUT_S)
        return [_json(session) for session in response.sessions]

    async def get_session(self, session_id: str, *, tail: int, include_events: bool) -> Json:
        request = sessions_pb2.GetSessionRequest(
            session_id=session_id, tail=tail, include_events=include_events
        )
        response = await self._unary(self._stub.GetSession, request, SHOW_TIMEOUT_S)
        return _json(response.session)

    async def search(self, session_id: str, phrase: str, *, fuzzy: bool) -> Json:
        request = sessions_pb2.SearchSessionRequest(session_id=session_id, q=phrase, fuzzy=fuzzy)
        return _json(await self._unary(self._stub.SearchSession, request, SEARCH_TIMEOUT_S))

    async def cancel(self, session_id: str) -> Json:
        request = sessions_pb2.CancelSessionRequest(session_id=session_id)
        return _json(await self._unary(self._stub.CancelSession, request, CANCEL_TIMEOUT_S))

    async def aclose(self) -> None:
        await self._channel.close(grace=None)

    async def _unary(self, method: Any, request: Message, timeout_s: float) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: grpc.aio.AioRpcError) -> Exception:
        code, message = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE and any(
            marker in message.lower() for marker in _UNREACHABLE_MARKERS
        ):
            return GatewayUnreachable(self._target, _unreachable_reason(message))
        # grpc-stubs describe sync metadata objects; grpc.aio's Metadata yields (key, value).
        trailing = cast(Iterable[tuple[str, str | bytes]], exc.trailing_metadata() or ())
        details = _error_details(value for key, value in trailing if key == _STATUS_DETAILS_KEY)
        return GatewayError(code.name, message, code=code.name, details=details)


def _unreachable_reason(message: str) -> str:
    lowered = message.lower()
    if "refused" in lowered:
        return "connection refused"
    if "resolving" in lowered:
        return "unknown host"
    return message


def _run_input(body: dict[str, Any]) -> runs_pb2.RunInput:
    return json_format.ParseDict(body, runs_pb2.RunInput())


def _json(message: Message) -> Json:
    """A message as JSON with the proto field names, every field printed."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _result(result: Json) -> Json:
    """A run's result, its `structured` answer's integers as integers: a protobuf Value holds
    every number as a double, which would print `7` as `7.0`."""
    if "structured" in result:
        result["structured"] = _integers(result["structured"])
    return result


def _integers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers(item) for item in value]
    return value


def _error_details(values: Iterable[str | bytes]) -> dict[str, Any]:
    """`retry_after`, the ErrorInfo metadata (`active`, `max`, ...), the PreconditionFailure
    violations (`schema_errors`, `violations`) and a run's `failure` of a serialized status, as
    the bridge's body has them."""
    details: dict[str, Any] = {}
    for value in values:
        if not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            continue
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                details.update(info.metadata)
                if info.reason:
                    details["reason"] = info.reason
            elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                failure = error_details_pb2.PreconditionFailure()
                detail.Unpack(failure)
                for violation in failure.violations:
                    # As the bridge lists them: a schema mismatch's errors by their JSON pointer.
                    if violation.type == "OUTPUT_SCHEMA":
                        key = "schema_errors"
                        item = {"path": violation.subject, "message": violation.description}
                    else:
                        key = "violations"
                        item = {
                            "type": violation.type,
                            "subject": violation.subject,
                            "description": violation.description,
                        }
                    details.setdefault(key, []).append(item)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                delay = retry.retry_delay
                details["retry_after"] = math.ceil(delay.seconds + delay.nanos / 1e9)
            elif detail.Is(runs_pb2.RunFailure.DESCRIPTOR):
                run_failure = runs_pb2.RunFailure()
                detail.Unpack(run_failure)
                details["failure"] = {
                    "kind": run_failure.kind,
                    "message": run_failure.message,
                    "retry_after_ms": (
                        run_failure.retry_after_ms
                        if run_failure.HasField("retry_after_ms")
                        else None
                    ),
                }
    return details
