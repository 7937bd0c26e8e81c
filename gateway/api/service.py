"""The gRPC servicer: wire messages in and out, domain errors turned into rich gRPC statuses.

This is the one place where a `GatewayError` becomes `context.abort(...)`, with a
google.rpc.Status carrying ErrorInfo (reason and facts such as `retry_after`) and, for the
concurrency limit, RetryInfo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.api import httpbody_pb2
from google.protobuf import duration_pb2, json_format
from google.protobuf.message import Message as ProtoMessage
from google.rpc import error_details_pb2, status_pb2

from bridge.errors import STATUS_DETAILS_KEY
from bridge.requestid import REQUEST_ID_HEADER, current_request_id
from codex_gateway.v1 import (
    gateway_pb2_grpc,
    runs_pb2,
    sessions_pb2,
    triggers_pb2,
)
from codex_gateway.v1 import (
    status_pb2 as gw_status_pb2,
)
from gateway.api.forward import HERE, Placement, by_run_target, by_session_id, routed
from gateway.api.status import StatusReporter
from gateway.api.views import (
    LAGGED_EVENT,
    changes_message,
    detail_events,
    detail_with_files,
    failure_message,
    first_within,
    result_message,
    signal,
    summary,
    tail_message,
    to_struct,
    trigger,
)
from gateway.auth import principal, tenancy
from gateway.auth.restrictions import check_triggers
from gateway.automation.scheduler import Scheduler
from gateway.automation.triggers import TriggerFiles, payload_items
from gateway.changes.diff import clamp_max_diff_bytes
from gateway.config import Config
from gateway.errors import (
    MAX_DETAIL_CHARS,
    GatewayError,
    InvalidRequest,
    OutputSchemaMismatch,
    RunNotFound,
    at_least_one,
    capped,
    quote,
)
from gateway.metrics.families import METRICS_CONTENT_TYPE, GatewayMetrics
from gateway.runs.fork import fork_request
from gateway.runs.images import ImageInput
from gateway.runs.prompt import Message
from gateway.runs.run import RunRequest
from gateway.runs.runner import Runner, nudge_request
from gateway.sessions import tailing
from gateway.sessions.access import SecureAccess, offered_tokens
from gateway.sessions.detail import read_files
from gateway.sessions.feed import LiveFeed
from gateway.sessions.model import RunRecord, Session
from gateway.sessions.search import Query, search_session
from gateway.sessions.store import SessionStore
from gateway.sessions.tailing import TailRequest

log = logging.getLogger(__name__)

ERROR_DOMAIN = "codex-gateway.v1"
MAX_STREAM_BACKLOG = 10_000
MAX_VIOLATION_BYTES = 3 * 1024
YIELD_EVERY = 16


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: GatewayError) -> NoReturn:
    # Capped here whatever raised it: message and details travel in response metadata.
    message = capped(error.message)
    details = {
        capped(key, MAX_DETAIL_CHARS): capped(value, MAX_DETAIL_CHARS)
        for key, value in list(error.details().items())[:16]
    }
    request_id = current_request_id()  # set by RequestIds (gateway/api/requestid.py)
    if request_id is not None:
        details["request_id"] = request_id
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=details)
    status = status_pb2.Status(code=error.code.value[0], message=message)
    status.details.add().Pack(info)
    if error.retry_after_s is not None:
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=error.retry_after_s)
        )
        status.details.add().Pack(retry)
    if isinstance(error, OutputSchemaMismatch):
        status.details.add().Pack(schema_violations(error.errors))
    if error.failure is not None:  # a run that did not complete: why (gateway/runs/failure.py)
        status.details.add().Pack(failure_message(error.failure))
    await context.abort(
        error.code,
        message,
        trailing_metadata=(
            (STATUS_DETAILS_KEY, status.SerializeToString()),
            *(((REQUEST_ID_HEADER, request_id),) if request_id is not None else ()),
        ),
    )
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def schema_violations(errors: list[tuple[str, str]]) -> error_details_pb2.PreconditionFailure:
    """An answer's schema errors as PreconditionFailure violations (type OUTPUT_SCHEMA, subject
    the JSON pointer), within `MAX_VIOLATION_BYTES`: trailing metadata past grpcio's 8 KiB soft
    limit is refused at random by the client."""
    failure = error_details_pb2.PreconditionFailure()
    for index, (path, message) in enumerate(errors):
        violation = error_details_pb2.PreconditionFailure.Violation(
            type="OUTPUT_SCHEMA",
            subject=capped(path, MAX_DETAIL_CHARS),
            description=capped(message, MAX_DETAIL_CHARS),
        )
        if failure.ByteSize() + violation.ByteSize() > MAX_VIOLATION_BYTES:
            failure.violations.add(
                type="OUTPUT_SCHEMA", subject="", description=f"and {len(errors) - index} more"
            )
            break
        failure.violations.append(violation)
    return failure


def secure_tokens(context: grpc.aio.ServicerContext[Any, Any]) -> list[str]:
    return offered_tokens(context.invocation_metadata() or ())


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(
        self,
        config: Config,
        runner: Runner,
        access: SecureAccess,
        store: SessionStore,
        feed: LiveFeed,
        reporter: StatusReporter,
        scheduler: Scheduler,
        trigger_files: TriggerFiles,
        placement: Placement = HERE,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._placement = placement  # where a session lives (gateway/api/forward.py)
        self._config = config
        self._scheduler = scheduler
        self._trigger_files = trigger_files
        self._runner = runner
        self._access = access
        self._store = store
        self._feed = feed
        self._reporter = reporter

    async def Health(  # gRPC method names are the proto's
        self, request: gw_status_pb2.HealthRequest, context: Any
    ) -> gw_status_pb2.HealthResponse:
        return gw_status_pb2.HealthResponse(status="ok")

    async def GetInfo(  # gRPC method names are the proto's
        self, request: gw_status_pb2.GetInfoRequest, context: Any
    ) -> gw_status_pb2.GetInfoResponse:
        info = self._reporter.info()
        info.webhook.pending = await self._reporter.webhook_pending()
        cluster = await self._reporter.cluster_block()
        if cluster is not None:
            info.cluster.CopyFrom(cluster)
        return info

    async def GetStatus(  # gRPC method names are the proto's
        self, request: gw_status_pb2.GetStatusRequest, context: Any
    ) -> gw_status_pb2.GetStatusResponse:
        memory = await asyncio.to_thread(self._reporter.memory)
        status = self._reporter.status(memory)
        status.webhook.pending = await self._reporter.webhook_pending()
        cluster = await self._reporter.cluster_block()
        if cluster is not None:
            status.cluster.CopyFrom(cluster)
        return status

    async def GetMetrics(  # gRPC method names are the proto's
        self, request: gw_status_pb2.GetMetricsRequest, context: Any
    ) -> gw_status_pb2.GetMetricsResponse:
        # This replica's own: never forwarded, so nothing is counted twice in a cluster.
        metrics = self._metrics
        data = await asyncio.to_thread(metrics.exposition) if metrics is not None else b""
        return gw_status_pb2.GetMetricsResponse(
            body=httpbody_pb2.HttpBody(content_type=METRICS_CONTENT_TYPE, data=data)
        )

    @routed(by_run_target)
    async def Complete(  # gRPC method names are the proto's
        self, request: runs_pb2.CompleteRequest, context: Any
    ) -> runs_pb2.CompleteResponse:
        run = run_request(request.run, "completion", secure_tokens(context))
        result = await self._runner.run(run)
        return runs_pb2.CompleteResponse(
            result=result_message(result, self._config.max_answer_bytes)
        )

    @routed(by_session_id)
    async def PromptSession(  # gRPC method names are the proto's
        self, request: runs_pb2.PromptSessionRequest, context: Any
    ) -> runs_pb2.PromptSessionResponse:
        run = run_request(request.run, "prompt", secure_tokens(context))
        run.session_id = request.session_id
        if not run.session_id.strip():
            raise InvalidRequest("session_id is required", field="session_id")
        result = await self._runner.run(run)
        return runs_pb2.PromptSessionResponse(
            result=result_message(result, self._config.max_answer_bytes)
        )

    @routed(by_run_target)
    async def StreamCompletion(  # gRPC method names are the proto's
        self, request: runs_pb2.StreamCompletionRequest, context: Any
    ) -> AsyncIterator[runs_pb2.StreamCompletionResponse]:
        run = run_request(request.run, "completion", secure_tokens(context))
        backlog: asyncio.Queue[runs_pb2.StreamCompletionResponse | None] = asyncio.Queue()
        # Bounded in bytes and items: a client that stopped reading must not grow the gateway's
        # memory. Over the budget it is told it lagged (an event), later events are skipped,
        # and the result still comes when the run ends.
        budget = self._config.follower_buffer_bytes
        queued = [0]  # bytes in the backlog
        lagged = [False]
        pushed_seq = [0]

        def push(message: runs_pb2.StreamCompletionResponse) -> None:
            if lagged[0]:
                return
            size = message.ByteSize()
            if backlog.qsize() >= MAX_STREAM_BACKLOG or (
                backlog.qsize() and queued[0] + size > budget
            ):
                lagged[0] = True
                event = _lagged_event(budget, pushed_seq[0])
                message = runs_pb2.StreamCompletionResponse(event=to_struct(event))
                size = message.ByteSize()
            pushed_seq[0] = message.seq or pushed_seq[0]
            queued[0] += size
            backlog.put_nowait(message)

        def started(session: Session, run_id: str, seq: int) -> None:
            push(
                runs_pb2.StreamCompletionResponse(
                    started=runs_pb2.RunStarted(
                        session_id=session.id, run_id=run_id, logs_path=str(session.dir)
                    ),
                    seq=seq,
                )
            )

        def event(payload: dict[str, Any], seq: int) -> None:
            if lagged[0]:
                return
            push(runs_pb2.StreamCompletionResponse(event=to_struct(payload), seq=seq))

        task = asyncio.ensure_future(self._runner.run(run, on_event=event, on_started=started))
        task.add_done_callback(lambda _: backlog.put_nowait(None))
        try:
            sent = 0
            while (message := await backlog.get()) is not None:
                queued[0] -= message.ByteSize()
                yield message
                sent += 1
                if sent % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a backlog drains without suspending: share the loop
            result = task.result()  # a GatewayError is answered by gateway/api/boundary.py
            yield runs_pb2.StreamCompletionResponse(
                completed=result_message(result, self._config.max_answer_bytes)
            )
        finally:
            if not task.done():
                task.cancel()  # only our wait on it: the run itself belongs to the runner
                with contextlib.suppress(asyncio.CancelledError, GatewayError):
                    await task

    @routed(by_session_id)
    async def NudgeSession(  # gRPC method names are the proto's
        self, request: runs_pb2.NudgeSessionRequest, context: Any
    ) -> runs_pb2.NudgeSessionResponse:
        session = self._session(request.session_id, context)
        given = run_request(request.run, "nudge", secure_tokens(context))
        result = await self._runner.run(nudge_request(session, given))
        return runs_pb2.NudgeSessionResponse(
            result=result_message(result, self._config.max_answer_bytes)
        )

    @routed(by_session_id)  # the fork runs where the parent's codex rollout is
    async def ForkSession(  # gRPC method names are the proto's
        self, request: runs_pb2.ForkSessionRequest, context: Any
    ) -> runs_pb2.ForkSessionResponse:
        parent = self._session(request.session_id, context)
        given = run_request(request.run, "fork", secure_tokens(context))
        result = await self._runner.run(fork_request(parent, given))
        return runs_pb2.ForkSessionResponse(
            result=result_message(result, self._config.max_answer_bytes)
        )

    async def ListSessions(  # gRPC method names are the proto's
        self, request: sessions_pb2.ListSessionsRequest, context: Any
    ) -> sessions_pb2.ListSessionsResponse:
        limit = _limit(request.limit if request.HasField("limit") else None)
        since = _since(request.since) if request.HasField("since") else None
        include_secure = self._access.ok(secure_tokens(context))
        chosen = await self._store.listing(
            limit=limit,
            since=since,
            include_secure=include_secure,
            tenant=tenancy.listed_tenant(),
        )
        # Bounded in bytes too (each session's metadata may be as large as a request body):
        # the newest sessions that fit (GET /sessions/:id reads any one of them).
        listed = first_within([summary(s) for s in chosen], self._config.max_answer_bytes)
        return sessions_pb2.ListSessionsResponse(sessions=listed)

    @routed(by_session_id)
    async def GetSession(  # gRPC method names are the proto's
        self, request: sessions_pb2.GetSessionRequest, context: Any
    ) -> sessions_pb2.GetSessionResponse:
        session = self._session(request.session_id, context)
        lines = self._tail_lines(
            request.tail_lines
            if request.HasField("tail_lines")
            else request.tail
            if request.HasField("tail")
            else None
        )
        files = await read_files(
            session,
            lines=lines,
            max_bytes=self._config.max_answer_bytes,
            stderr=request.include_stderr,
            events=request.include_events,
        )
        events = await asyncio.to_thread(detail_events, files) if files.events is not None else []
        history = await self._store.run_history(session, max_bytes=files.share)
        return sessions_pb2.GetSessionResponse(
            session=detail_with_files(session, files, events, history)
        )

    @routed(by_session_id)
    async def SearchSession(  # gRPC method names are the proto's
        self, request: sessions_pb2.SearchSessionRequest, context: Any
    ) -> sessions_pb2.SearchSessionResponse:
        session = self._session(request.session_id, context)
        query = Query(
            text=request.q,
            fuzzy=request.fuzzy,
            max_results=request.max_results if request.HasField("max_results") else None,
            tail_lines=request.tail_lines if request.HasField("tail_lines") else None,
            min_score=request.min_score if request.HasField("min_score") else None,
        )
        hits = await search_session(session, query, context_chars=self._config.signal_context_chars)
        response = sessions_pb2.SearchSessionResponse(
            session_id=session.id,
            query=request.q,
            signals=[signal(session, i, hit) for i, hit in enumerate(hits)],
        )
        if session.codex_session_id:
            response.codex_session_id = session.codex_session_id
        return response

    @routed(by_session_id)
    async def CancelSession(  # gRPC method names are the proto's
        self, request: sessions_pb2.CancelSessionRequest, context: Any
    ) -> sessions_pb2.CancelSessionResponse:
        session = self._session(request.session_id, context)
        run_id = self._runner.cancel(session)
        response = sessions_pb2.CancelSessionResponse(
            session_id=session.id,
            cancelled=run_id is not None,
            status="cancelling" if run_id else str(session.status),
        )
        if run_id is not None:
            response.run_id = run_id
        return response

    @routed(by_session_id)
    async def GetSessionChanges(  # gRPC method names are the proto's
        self, request: sessions_pb2.GetSessionChangesRequest, context: Any
    ) -> sessions_pb2.GetSessionChangesResponse:
        session = self._session(request.session_id, context)
        run_id = request.run_id.strip() if request.HasField("run_id") else ""
        record = await self._run_record(session, run_id or None)
        found = await self._runner.changes.of_run(
            session,
            record,
            self._runner.active(session.id),
            with_diff=request.diff,
            max_diff_bytes=clamp_max_diff_bytes(
                request.max_diff_bytes if request.HasField("max_diff_bytes") else None
            ),
        )
        return changes_message(session.id, record.run_id, found, self._config.max_answer_bytes)

    async def _run_record(self, session: Session, run_id: str | None) -> RunRecord:
        """The session's run `run_id` (archived ones too), or its last run."""
        records = session.runs
        if run_id is None:
            if records:
                return records[-1]
            raise RunNotFound(session.id, None)
        for record in reversed(records):
            if record.run_id == run_id:
                return record
        for record in reversed(await self._store.run_history(session)):
            if record.run_id == run_id:
                return record
        raise RunNotFound(session.id, run_id)

    @routed(by_session_id)
    def TailSession(  # gRPC method names are the proto's
        self, request: sessions_pb2.TailSessionRequest, context: Any
    ) -> AsyncIterator[sessions_pb2.TailSessionResponse]:
        return self.local_tail(request, context)

    async def local_tail(
        self, request: sessions_pb2.TailSessionRequest, context: Any
    ) -> AsyncIterator[sessions_pb2.TailSessionResponse]:
        """The tail of a session of this replica (TailSession's, and the relay's to others)."""
        session = self._session(request.session_id, context)
        after_seq = request.after_seq if request.HasField("after_seq") else None
        if after_seq is not None and after_seq < 0:
            raise InvalidRequest("after_seq must be at least 0", field="after_seq")
        wanted = TailRequest(
            lines=self._tail_lines(
                request.tail_lines if request.HasField("tail_lines") else None,
                allow_zero=request.follow,
            ),
            follow=request.follow,
            after_seq=after_seq,
            stderr=request.include_stderr,
            events=request.include_events,
        )
        items = tailing.tail(
            session.id,
            lambda: session.files_dir,
            self._feed,
            wanted,
            budget=self._config.follower_buffer_bytes,
        )
        sent = 0
        async for item in items:
            yield tail_message(item)
            sent += 1
            if sent % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a backlog or a full buffer drains without suspending

    async def ListTriggers(  # gRPC method names are the proto's
        self, request: triggers_pb2.ListTriggersRequest, context: Any
    ) -> triggers_pb2.ListTriggersResponse:
        path = self._trigger_file(request)
        views = await self._scheduler.list_triggers(path)
        # json_format costs about 30 us a trigger: 10,000 of them would hold the loop 300 ms.
        messages = await asyncio.to_thread(lambda: [trigger(t) for t in views])
        return triggers_pb2.ListTriggersResponse(trigger_file=str(path), triggers=messages)

    async def GetTrigger(  # gRPC method names are the proto's
        self, request: triggers_pb2.GetTriggerRequest, context: Any
    ) -> triggers_pb2.GetTriggerResponse:
        path = self._trigger_file(request)
        return triggers_pb2.GetTriggerResponse(
            trigger=trigger(await self._scheduler.get_trigger(path, request.trigger_id))
        )

    async def CreateTriggers(  # gRPC method names are the proto's
        self, request: triggers_pb2.CreateTriggersRequest, context: Any
    ) -> triggers_pb2.CreateTriggersResponse:
        path = self._trigger_file(request)
        if not request.HasField("triggers"):
            raise InvalidRequest("a trigger or an array of triggers is required", field="triggers")
        payload = struct_value(request.triggers, "triggers")
        self._check_triggers(payload_items(payload)[0])
        created = await self._scheduler.create(path, payload)
        response = triggers_pb2.CreateTriggersResponse(
            trigger_file=str(path), triggers=[trigger(t) for t in created]
        )
        if isinstance(payload, dict) and "triggers" not in payload:
            response.trigger.CopyFrom(response.triggers[0])
        return response

    async def UpdateTrigger(  # gRPC method names are the proto's
        self, request: triggers_pb2.UpdateTriggerRequest, context: Any
    ) -> triggers_pb2.UpdateTriggerResponse:
        path = self._trigger_file(request)
        patch = struct_value(request.patch, "patch") if request.HasField("patch") else {}
        if not patch:
            raise InvalidRequest("the fields to update are required", field="patch")
        if "cwd" in patch:
            self._check_triggers([patch])
        updated = await self._scheduler.update(path, request.trigger_id, patch)
        return triggers_pb2.UpdateTriggerResponse(trigger=trigger(updated))

    async def DeleteTrigger(  # gRPC method names are the proto's
        self, request: triggers_pb2.DeleteTriggerRequest, context: Any
    ) -> triggers_pb2.DeleteTriggerResponse:
        path = self._trigger_file(request)
        await self._scheduler.delete(path, request.trigger_id)
        return triggers_pb2.DeleteTriggerResponse(trigger_id=request.trigger_id)

    def _check_triggers(self, entries: list[Any]) -> None:
        """The caller's API key's model and workspace restrictions, on the triggers it writes
        (their fires run as the gateway: checked now, not when they fire)."""
        check_triggers(
            principal.current().key,
            entries,
            default_workspace=self._config.default_workspace,
            default_model=self._config.default_model,
        )

    def _trigger_file(self, request: Any) -> Path:
        raw = request.trigger_file if request.HasField("trigger_file") else None
        return self._trigger_files.resolve(raw)

    def _session(self, session_id: str, context: Any) -> Session:
        session = tenancy.resolve(self._store, session_id)  # another tenant's: not found
        self._access.check(session, secure_tokens(context))
        return session

    def _tail_lines(self, requested: int | None, *, allow_zero: bool = False) -> int:
        """`allow_zero`: a following tail's 0 means only what comes next (`tail -n 0 -f`)."""
        if requested is None:
            return self._config.default_tail_lines
        if requested == 0 and allow_zero:
            return 0
        return min(at_least_one(requested, "tail_lines"), self._config.max_tail_lines)


MAX_LIST_LIMIT = 200


def _limit(requested: int | None) -> int:
    """Default 50, clamped to 200 (the documented limits)."""
    if requested is None:
        return 50
    return min(at_least_one(requested, "limit"), MAX_LIST_LIMIT)


def _since(raw: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidRequest(
            f"since is not an ISO timestamp: {quote(raw)}", field="since"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _lagged_event(budget: int, after_seq: int) -> dict[str, Any]:
    return {
        "type": LAGGED_EVENT,
        "message": f"this stream fell more than {budget} bytes behind: later events are "
        "skipped (the run goes on; its result still follows); read them with "
        f"GET /sessions/:id/tail?after_seq={after_seq}&include_events=true",
        "after_seq": after_seq,
    }


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
        metadata=struct_value(message.metadata, "metadata")
        if message.HasField("metadata")
        else None,
        resume_session_id=optional("resume_session_id"),
        secure=message.secure or message.secure_session,
        objective=optional("objective"),
        nudge_prompt=optional("nudge_prompt"),
        secure_tokens=tokens,
        output_schema=struct_value(message.output_schema, "output_schema")
        if message.HasField("output_schema")
        else None,
        images=[
            ImageInput(
                data=image.data if image.HasField("data") else None,
                media_type=image.media_type if image.HasField("media_type") else None,
                path=image.path if image.HasField("path") else None,
            )
            for image in message.images
        ],
    )


def struct_value(message: ProtoMessage, field: str) -> Any:
    """A Struct or Value from the wire as plain data; NaN and Infinity, which JSON cannot hold
    (and json_format refuses), are the client's mistake."""
    try:
        return json_format.MessageToDict(message)
    except (ValueError, TypeError, json_format.Error):
        raise InvalidRequest(
            f"{field} holds a value JSON cannot carry (NaN or Infinity?)", field=field
        ) from None
