"""The gRPC servicer: wire messages in and out, domain errors turned into rich gRPC statuses.

This is the one place where a `GatewayError` becomes `context.abort(...)`, with a
google.rpc.Status carrying ErrorInfo (reason and facts such as `retry_after`) and, for the
concurrency limit, RetryInfo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import duration_pb2, json_format, struct_pb2
from google.rpc import error_details_pb2, status_pb2

from codex_gateway.v1 import (
    gateway_pb2_grpc,
    runs_pb2,
)
from codex_gateway.v1 import (
    status_pb2 as gw_status_pb2,
)
from gateway.errors import ConcurrencyLimitReached, GatewayError, InvalidRequest
from gateway.prompt import Message
from gateway.runs import Runner, RunRequest, RunResult
from gateway.sessions import Session, SessionStore
from gateway.status import StatusReporter

log = logging.getLogger(__name__)

ERROR_DOMAIN = "codex-gateway.v1"
SECURE_TOKEN_KEYS = ("x-codex-secure-token", "x-secure-token", "x-secure-token-query")
MAX_STREAM_BACKLOG = 10_000
_Resp = TypeVar("_Resp")


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: GatewayError) -> NoReturn:
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.details()
    )
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    status.details.add().Pack(info)
    if isinstance(error, ConcurrencyLimitReached):
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=error.retry_after_s)
        )
        status.details.add().Pack(retry)
    await context.abort(
        error.code,
        error.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


async def _guard(
    context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[_Resp]]
) -> _Resp:
    try:
        return await call()
    except GatewayError as error:
        await abort(context, error)


def secure_tokens(context: grpc.aio.ServicerContext[Any, Any]) -> list[str]:
    metadata = context.invocation_metadata() or ()
    return [
        str(value).strip()
        for key, value in metadata
        if key in SECURE_TOKEN_KEYS and str(value).strip()
    ]


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, runner: Runner, store: SessionStore, reporter: StatusReporter) -> None:
        self._runner = runner
        self._store = store
        self._reporter = reporter

    async def Health(  # gRPC method names are the proto's
        self, request: gw_status_pb2.HealthRequest, context: Any
    ) -> gw_status_pb2.HealthResponse:
        return gw_status_pb2.HealthResponse(status="ok")

    async def GetInfo(  # gRPC method names are the proto's
        self, request: gw_status_pb2.GetInfoRequest, context: Any
    ) -> gw_status_pb2.GetInfoResponse:
        return self._reporter.info()

    async def GetStatus(  # gRPC method names are the proto's
        self, request: gw_status_pb2.GetStatusRequest, context: Any
    ) -> gw_status_pb2.GetStatusResponse:
        return self._reporter.status()

    async def Complete(  # gRPC method names are the proto's
        self, request: runs_pb2.CompleteRequest, context: Any
    ) -> runs_pb2.CompleteResponse:
        run = run_request(request.run, "completion", secure_tokens(context))
        result = await _guard(context, lambda: self._runner.run(run))
        return runs_pb2.CompleteResponse(result=result_message(result))

    async def PromptSession(  # gRPC method names are the proto's
        self, request: runs_pb2.PromptSessionRequest, context: Any
    ) -> runs_pb2.PromptSessionResponse:
        run = run_request(request.run, "prompt", secure_tokens(context))
        run.session_id = request.session_id
        if not run.session_id.strip():
            await abort(context, InvalidRequest("session_id is required", field="session_id"))
        result = await _guard(context, lambda: self._runner.run(run))
        return runs_pb2.PromptSessionResponse(result=result_message(result))

    async def StreamCompletion(  # gRPC method names are the proto's
        self, request: runs_pb2.StreamCompletionRequest, context: Any
    ) -> AsyncIterator[runs_pb2.StreamCompletionResponse]:
        run = run_request(request.run, "completion", secure_tokens(context))
        backlog: asyncio.Queue[runs_pb2.StreamCompletionResponse | None] = asyncio.Queue()

        def push(message: runs_pb2.StreamCompletionResponse) -> None:
            # Bounded: a client that stopped reading must not grow the gateway's memory.
            if backlog.qsize() < MAX_STREAM_BACKLOG:
                backlog.put_nowait(message)

        def started(session: Session, run_id: str) -> None:
            push(
                runs_pb2.StreamCompletionResponse(
                    started=runs_pb2.RunStarted(
                        session_id=session.id, run_id=run_id, logs_path=str(session.dir)
                    )
                )
            )

        def event(payload: dict[str, Any]) -> None:
            push(runs_pb2.StreamCompletionResponse(event=to_struct(payload)))

        task = asyncio.ensure_future(self._runner.run(run, on_event=event, on_started=started))
        task.add_done_callback(lambda _: backlog.put_nowait(None))
        try:
            while (message := await backlog.get()) is not None:
                yield message
            try:
                result = task.result()
            except GatewayError as error:
                await abort(context, error)
            yield runs_pb2.StreamCompletionResponse(completed=result_message(result))
        finally:
            if not task.done():
                task.cancel()  # only our wait on it: the run itself belongs to the runner
                with contextlib.suppress(asyncio.CancelledError, GatewayError):
                    await task


def run_request(message: runs_pb2.RunInput, source: str, tokens: list[str]) -> RunRequest:
    """The wire RunInput as a domain RunRequest (aliases folded, presence respected)."""

    def optional(name: str) -> Any:
        return getattr(message, name) if message.HasField(name) else None

    timeout = optional("timeout_ms")
    if timeout is None:
        timeout = optional("max_duration_ms")
    workspace = optional("workspace")
    if workspace is None:
        workspace = optional("cwd")
    return RunRequest(
        source=source,
        messages=[Message(m.role, m.content) for m in message.messages],
        prompt=optional("prompt"),
        system_prompt=message.system_prompt,
        model=optional("model"),
        workspace=workspace,
        session_id=optional("session_id"),
        timeout_ms=timeout,
        env=dict(message.env),
        metadata=json_format.MessageToDict(message.metadata)
        if message.HasField("metadata")
        else None,
        resume_session_id=optional("resume_session_id"),
        secure=message.secure or message.secure_session,
        objective=optional("objective"),
        nudge_prompt=optional("nudge_prompt"),
        secure_tokens=tokens,
    )


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def result_message(result: RunResult) -> runs_pb2.RunResult:
    session = result.session
    usage = result.usage
    message = runs_pb2.RunResult(
        session_id=session.id,
        gateway_session_id=session.id,
        output=result.output,
        content=result.output,
        messages=[runs_pb2.ChatMessage(role=m.role, content=m.content) for m in result.messages],
        usage=runs_pb2.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            total_tokens=usage.total_tokens,
            reasoning_output_tokens=usage.reasoning_output_tokens,
        ),
        logs_path=str(session.dir),
        metadata=to_struct(result.metadata),
        run_id=result.run_id,
        status=result.status,
        tool_calls=[to_struct(call) for call in result.tool_calls],
        events=[to_struct(event) for event in result.events],
        session_url=f"/sessions/{session.codex_session_id or session.id}",
        duration_ms=result.duration_ms,
        attempts=result.attempts,
    )
    if session.codex_session_id:
        message.codex_session_id = session.codex_session_id
    if result.model:
        message.model = result.model
    if result.error:
        message.error = result.error
    return message
