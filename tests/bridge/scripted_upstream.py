"""ScriptedUpstream: a test-only GatewayService that stands in for the real gateway.

It exists to reach upstream states that the real gateway cannot produce on demand: a stream that
fails midway, UNAVAILABLE a set number of times and then recovery, any gRPC status with rich
details, a stream that waits until the test releases it or the client goes away. What it does is
chosen by the request (a session id naming a status code, a prompt naming a script), and it
records what it received (metadata, requests, cancellations) for the test to check.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import duration_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

from codex_gateway.v1 import (
    gateway_pb2_grpc,
    runs_pb2,
    sessions_pb2,
    triggers_pb2,
)
from codex_gateway.v1 import (
    status_pb2 as gw_status_pb2,
)

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def rich_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str = "",
    metadata: dict[str, str] | None = None,
    retry_seconds: float | None = None,
) -> bytes:
    """A serialized google.rpc.Status with an ErrorInfo and optionally a RetryInfo."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if reason or metadata:
        info = error_details_pb2.ErrorInfo(reason=reason, domain="codex-gateway")
        info.metadata.update(metadata or {})
        status.details.add().Pack(info)
    if retry_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_seconds * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status.SerializeToString()


BUSY_DETAILS = rich_status(
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    "Too many concurrent requests",
    reason="CONCURRENCY_LIMIT",
    metadata={"retry_after": "5", "active": "2", "max": "2"},
    retry_seconds=4.2,
)


class ScriptedUpstream(gateway_pb2_grpc.GatewayServiceServicer):
    """Answers by script; see the module docstring."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.metadata: dict[str, list[tuple[str, str]]] = {}
        self.requests: dict[str, Any] = {}
        self.unavailable_before_success = 0
        # Answer with a Struct holding NaN: a message the bridge cannot print as JSON.
        self.poison = False
        self.tail_release = asyncio.Event()
        self.tail_cancelled = asyncio.Event()
        self.stream_cancelled = asyncio.Event()

    def _record(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.requests[name] = request
        self.metadata[name] = [
            (key, value)
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        ]

    async def _flaky(self, context: grpc.aio.ServicerContext) -> None:
        if self.unavailable_before_success > 0:
            self.unavailable_before_success -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "upstream restarting")

    async def Health(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("Health", request, context)
        await self._flaky(context)
        return gw_status_pb2.HealthResponse(status="ok")

    async def GetInfo(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("GetInfo", request, context)
        return gw_status_pb2.GetInfoResponse(status="codex-gateway", version="test")

    async def GetStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("GetStatus", request, context)
        response = gw_status_pb2.GetStatusResponse(uptime=3600.0, sessions_running=1)
        response.concurrency.max = 2
        response.memory.rss = 52428800
        response.env.update({"CODEX_GATEWAY_SESSION_DIRS": ["/tmp/sessions"]})
        if self.poison:
            response.env.update({"nan": float("nan")})  # valid protobuf, not valid JSON
        return response

    async def GetMetrics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("GetMetrics", request, context)
        body = httpbody_pb2.HttpBody(content_type="text/plain; version=0.0.4", data=b"up 1\n")
        return gw_status_pb2.GetMetricsResponse(body=body)

    async def ListSessions(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("ListSessions", request, context)
        await self._flaky(context)
        limit = request.limit if request.HasField("limit") else 50
        return sessions_pb2.ListSessionsResponse(
            sessions=[
                sessions_pb2.SessionSummary(
                    session_id=f"session-{i}", execution_timeout_ms=120000, runs=i
                )
                for i in range(min(limit, 2))
            ]
        )

    async def GetSession(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("GetSession", request, context)
        await _abort_if_status_name(request.session_id, context)
        detail = sessions_pb2.SessionDetail(session_id=request.session_id, status="idle")
        if request.HasField("tail_lines"):
            detail.stdout.tail_lines = request.tail_lines
        return sessions_pb2.GetSessionResponse(session=detail)

    async def SearchSession(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("SearchSession", request, context)
        return sessions_pb2.SearchSessionResponse(session_id=request.session_id, query=request.q)

    async def PromptSession(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("PromptSession", request, context)
        return runs_pb2.PromptSessionResponse(result=_result(request.run))

    async def NudgeSession(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("NudgeSession", request, context)
        return runs_pb2.NudgeSessionResponse(result=_result(request.run))

    async def ForkSession(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("ForkSession", request, context)
        return runs_pb2.ForkSessionResponse(result=_result(request.run))

    async def GetSessionChanges(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("GetSessionChanges", request, context)
        return sessions_pb2.GetSessionChangesResponse(
            session_id=request.session_id, run_id=request.run_id or "run-1", source="git"
        )

    async def CancelSession(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("CancelSession", request, context)
        await _abort_if_status_name(request.session_id, context)
        return sessions_pb2.CancelSessionResponse(
            session_id=request.session_id, cancelled=False, status="idle"
        )

    async def Complete(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("Complete", request, context)
        prompt = request.run.prompt
        if prompt == "busy":
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "Too many concurrent requests",
                trailing_metadata=((STATUS_DETAILS_KEY, BUSY_DETAILS),),
            )
        if prompt == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "upstream restarting")
        return runs_pb2.CompleteResponse(result=_result(request.run))

    async def StreamCompletion(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        self._record("StreamCompletion", request, context)
        prompt = request.run.prompt
        if prompt == "busy":
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "Too many concurrent requests",
                trailing_metadata=((STATUS_DETAILS_KEY, BUSY_DETAILS),),
            )
        if prompt == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "Session not found")
        yield runs_pb2.StreamCompletionResponse(
            started=runs_pb2.RunStarted(session_id="session-1", run_id="run-1")
        )
        event = runs_pb2.StreamCompletionResponse()
        event.event.update({"type": "thread.started", "thread_id": "t-1", "n": 1})
        yield event
        if prompt == "fail-midway":
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "Run timed out",
                trailing_metadata=(
                    (
                        STATUS_DETAILS_KEY,
                        rich_status(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            "Run timed out",
                            reason="RUN_TIMED_OUT",
                            metadata={"timeout_ms": "1000"},
                        ),
                    ),
                ),
            )
        if prompt == "hang":
            try:
                await asyncio.Event().wait()
            finally:
                self.stream_cancelled.set()
        yield runs_pb2.StreamCompletionResponse(completed=_result(request.run))

    async def TailSession(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        self._record("TailSession", request, context)
        await self._flaky(context)
        await _abort_if_status_name(request.session_id, context)
        try:
            if request.session_id == "idle":
                await asyncio.Event().wait()
            yield sessions_pb2.TailSessionResponse(
                line=sessions_pb2.LogLine(stream="stdout", text="first")
            )
            if self.poison:
                poisoned = sessions_pb2.TailSessionResponse()
                poisoned.event.update({"nan": float("nan")})
                yield poisoned
            if request.follow:
                await self.tail_release.wait()
                yield sessions_pb2.TailSessionResponse(
                    notice=sessions_pb2.TailNotice(kind="run_started", message="second")
                )
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.tail_cancelled.set()
            raise

    async def ListTriggers(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("ListTriggers", request, context)
        trigger = triggers_pb2.Trigger(id="t1", enabled=True, tags=["a", "b"], timeout_ms=5000)
        trigger.schedule.mode = "daily"
        return triggers_pb2.ListTriggersResponse(
            trigger_file=request.trigger_file or "default.json", triggers=[trigger]
        )

    async def GetTrigger(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("GetTrigger", request, context)
        return triggers_pb2.GetTriggerResponse(trigger=triggers_pb2.Trigger(id=request.trigger_id))

    async def CreateTriggers(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("CreateTriggers", request, context)
        body = json_format.MessageToDict(request.triggers)
        return triggers_pb2.CreateTriggersResponse(
            trigger_file=request.trigger_file,
            triggers=[triggers_pb2.Trigger(id="echo", title=json.dumps(body))],
        )

    async def UpdateTrigger(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("UpdateTrigger", request, context)
        title = request.patch.fields["title"].string_value if "title" in request.patch else ""
        trigger = triggers_pb2.Trigger(id=request.trigger_id, title=title)
        return triggers_pb2.UpdateTriggerResponse(trigger=trigger)

    async def DeleteTrigger(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("DeleteTrigger", request, context)
        await self._flaky(context)
        return triggers_pb2.DeleteTriggerResponse(trigger_id=request.trigger_id)


def _result(run: Any) -> Any:
    result = runs_pb2.RunResult(
        session_id="session-1",
        gateway_session_id="session-1",
        output=run.prompt,
        content=run.prompt,
        status="completed",
        duration_ms=1234,
    )
    result.usage.input_tokens = 10
    result.usage.total_tokens = 2**40
    if run.HasField("metadata"):
        result.metadata.CopyFrom(run.metadata)
    return result


async def _abort_if_status_name(session_id: str, context: grpc.aio.ServicerContext) -> None:
    """A session id naming a status code (`NOT_FOUND`) fails with that code. CANCELLED comes
    with the gateway's status, as its RunCancelled does: a bare one is a stopping server's
    (bridge/errors.py `ended_by_upstream`)."""
    code = grpc.StatusCode.__members__.get(session_id)
    if code is not None and code is not grpc.StatusCode.OK:
        message = f"scripted {code.name}"
        trailing: tuple[tuple[str, str | bytes], ...] = ()
        if code is grpc.StatusCode.CANCELLED:
            details = rich_status(code, message, reason="RUN_CANCELLED")
            trailing = ((STATUS_DETAILS_KEY, details),)
        await context.abort(code, message, trailing_metadata=trailing)
