"""One run: what it was asked, the session it runs in, its record there, its log and outcome.

The runner (gateway/runs/runner.py) validates requests and drives the agent; a `Run` holds one run's
state from its start to its result, and writes its beginning and its end into the session's
meta (its record in `runs`, the session's status). Saving is the runner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.agent.events import (
    JsonObject,
    OversizedLine,
    RunOutcome,
    Usage,
    canonical_thread_id,
    parse_line,
)
from gateway.changes.reported import ReportedChanges
from gateway.clock import now_iso
from gateway.runs.failure import RunFailure
from gateway.runs.images import CheckedImage, ImageInput
from gateway.runs.prompt import Message
from gateway.runs.schema import Answer, OutputSchema
from gateway.runs.scratch import Scratch
from gateway.sessions import journal
from gateway.sessions.feed import LiveFeed
from gateway.sessions.files import PREVIEW_CHARS
from gateway.sessions.logs import RunLog
from gateway.sessions.model import ForkOrigin, RunRecord, RunStatus, Session, SessionStatus

EventSink = Callable[[JsonObject, int], None]
"""Told about each codex event of a run as it is recorded, with its seq in the session's log."""
StartedSink = Callable[[Session, str, int], None]
"""Told that a run started: its session, its id, and the seq of its run_started notice."""


@dataclass
class RunRequest:
    """A run as asked for, before validation (the wire formats map onto this)."""

    source: str
    messages: list[Message] = field(default_factory=list)
    prompt: str | None = None
    system_prompt: str = ""
    model: str | None = None
    workspace: str | None = None
    session_id: str | None = None
    timeout_ms: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    resume_session_id: str | None = None
    secure: bool = False
    objective: str | None = None
    nudge_prompt: str | None = None
    secure_tokens: Sequence[str] = ()
    output_schema: dict[str, Any] | None = None  # as the wire gave it; checked by the runner
    images: list[ImageInput] = field(default_factory=list)
    fork_of: str | None = None  # ForkSession: the session whose thread a new session forks

    @property
    def resume_thread(self) -> str | None:
        """The thread to resume in its canonical form, the one the store's thread lookups (and
        so the secure check) and codex's argv use."""
        raw = self.resume_session_id
        return canonical_thread_id(raw.strip()) if raw else None


@dataclass
class RunResult:
    session: Session
    run_id: str
    status: str
    model: str | None
    output: str
    messages: list[Message]
    usage: Usage
    events: list[JsonObject]
    tool_calls: list[JsonObject]
    metadata: dict[str, Any]
    duration_ms: int
    attempts: int
    error: str | None = None
    events_omitted: int = 0  # events the run printed that `events` does not hold
    first_seq: int | None = None  # the run's items in the session's log (sessions/journal.py)
    last_seq: int | None = None
    answer: Answer | None = None  # judged against the run's output_schema (valid: `structured`)
    changes: dict[str, Any] | None = None  # the summary (gateway/changes/)
    failure: RunFailure | None = None  # why it did not complete (gateway/runs/failure.py)


@dataclass
class Prepared:
    """A request validated and checked against its target session, before it has a slot."""

    request: RunRequest
    target: Session | None  # None: a new session, created once the run has a slot
    messages: list[Message]
    prompt_text: str
    model: str | None
    workspace: Path
    timeout_ms: int
    env: dict[str, str]
    output_schema: OutputSchema | None = None
    images: tuple[CheckedImage, ...] = ()
    parent: Session | None = None  # a fork's parent (gateway/runs/fork.py)


class Run:
    """One run in its session, inside the runner's task `task`."""

    def __init__(
        self,
        run_id: str,
        prepared: Prepared,
        session: Session,
        task: asyncio.Task[Any],
        *,
        default_model: str | None,
        on_event: EventSink | None = None,
        on_started: StartedSink | None = None,
        scratch: Scratch | None = None,
        parent_hold: contextlib.AsyncExitStack | None = None,
    ) -> None:
        self.prepared = prepared
        self.request = prepared.request
        self.session = session
        self.task = task
        self.on_event = on_event
        self.on_started = on_started
        self.id = run_id
        self.model = prepared.model or session.model or default_model
        self.resume_thread = session.codex_session_id or self.request.resume_thread
        # A fork (its parent held by `parent_hold` until codex started the fork's thread).
        parent = prepared.parent
        self.fork = ForkOrigin.of(parent) if parent is not None else None
        self.fork_thread = self.fork.codex_session_id if self.fork else None
        self._parent_hold = parent_hold
        # Usage is cumulative per codex thread, and a fork's thread starts with its parent's:
        # this run's share is the difference.
        self.inherited_usage = dict(parent.thread_usage or {}) if parent is not None else None
        self.usage_before = Usage.from_event(
            session.thread_usage if self.resume_thread else self.inherited_usage
        )
        self.record = RunRecord(run_id=self.id)
        self.started = time.monotonic()
        self.outcome = RunOutcome()
        self.status = "error"
        self.error: str | None = None
        self.failure: RunFailure | None = None  # why it did not complete, set with `error`
        self.stop_reason: str | None = None  # "cancelled" | "interrupted" once asked to stop
        self.stop_detail: str | None = None  # why, when not the gateway's shutdown
        self._log: RunLog | None = None
        self._schema_file: Path | None = None
        self.answer: Answer | None = None  # the answer judged against the output schema
        self.images: list[Path] = []  # copies in the scratch dir, passed on every attempt
        self.reported = ReportedChanges(prepared.workspace)  # codex's file_change items
        self.scratch = scratch or Scratch(
            run_id
        )  # files codex reads for this run; closed at its end

    @property
    def log(self) -> RunLog:
        if self._log is None:
            raise RuntimeError("the run's log is not open")
        return self._log

    def schema_file(self) -> Path | None:
        """The output schema as codex reads it (`--output-schema`), written on first use."""
        schema = self.prepared.output_schema
        if schema is None:
            return None
        if self._schema_file is None:
            self._schema_file = self.scratch.write("output-schema.json", schema.text)
        return self._schema_file

    @property
    def duration_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def begin(self) -> None:
        """The run's record in the session's history, and the session's state while it runs
        (in memory: written once the agent is spawned, with its pid; one write fewer per run)."""
        request, prepared, session = self.request, self.prepared, self.session
        self.record = record = RunRecord(
            run_id=self.id,
            status=RunStatus.RUNNING,
            started_at=now_iso(),
            prompt_preview=prepared.prompt_text[:PREVIEW_CHARS],
            timeout_ms=prepared.timeout_ms,
            resume_session_id=self.resume_thread,
            model=self.model,
            source=request.source,
            metadata=request.metadata or {},
        )
        session.runs.append(record)
        session.status = SessionStatus.RUNNING
        session.model = self.model
        session.execution_timeout_ms = prepared.timeout_ms
        session.last_activity_at = record.started_at
        session.last_input = {
            "messages": [{"role": m.role, "content": m.content} for m in prepared.messages],
            "system_prompt": request.system_prompt,
        }
        if prepared.output_schema is not None:  # a nudge without one of its own replays it
            session.last_input["output_schema"] = prepared.output_schema.schema
        if request.source == "nudge" and request.metadata is not None:
            session.metadata = request.metadata  # already merged with the session's
        if self.fork is not None and session.forked_from is None:
            session.forked_from = self.fork
            session.thread_usage = self.inherited_usage or None
        if request.objective and not session.objective:
            session.objective = request.objective.strip()
        if request.nudge_prompt and request.nudge_prompt.strip():
            session.nudge_prompt = request.nudge_prompt.strip()
        self.started = time.monotonic()

    async def release_parent(self) -> None:
        """A fork's thread exists (or never will): its parent may run again."""
        hold, self._parent_hold = self._parent_hold, None
        if hold is not None:
            await hold.aclose()

    async def open_log(self, feed: LiveFeed | None) -> None:
        """OSError when the session's log files cannot be opened."""
        directory = self.session.files_dir
        try:
            self._log = RunLog(self.session, self.id, feed)
        except journal.Unindexed:
            # A crash's leftovers (or an older gateway's logs): numbered off the loop first.
            await asyncio.to_thread(journal.ensure_indexed, directory)
            self._log = RunLog(self.session, self.id, feed, repaired=True)

    def take_line(self, line: bytes | OversizedLine) -> JsonObject | None:
        """One line of the agent's stdout into the log; its event, if it is one."""
        if isinstance(line, OversizedLine):
            self.log.stdout_line(line.text)
            return None
        self.log.stdout_line(line.decode(errors="replace"))
        event = parse_line(line)
        if event is not None:
            self.log.event(event, line)
            self.reported.observe(event)
        return event

    def stop(self, reason: str, detail: str | None = None) -> None:
        """Cancel the run's task; the first reason given is the one recorded."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_detail = reason, detail
        self.task.cancel()

    def end(self) -> None:
        """The run's status, error and outcome into its record and the session's state."""
        stamp = now_iso()
        record, session = self.record, self.session
        record.status = RunStatus(self.status)
        record.completed_at = stamp
        record.duration_ms = self.duration_ms
        if record.attempts is None:
            record.attempts = 0
        record.agent_pid = None
        if self.error is not None:
            record.error = self.error[:2000]
        if self.failure is not None:
            record.failure = self.failure.as_json()
        # An answer that did not match the schema ends the run `error`, its output kept.
        if self.status == "completed" or self.answer is not None:
            outcome = self.outcome
            record.content_preview = outcome.output[:PREVIEW_CHARS]
            if outcome.usage is not None:
                record.usage = dict(outcome.usage.minus(self.usage_before).as_dict())
                session.thread_usage = dict(outcome.usage.as_dict())
        session.status = SessionStatus(self.status)
        session.last_activity_at = stamp

    def result(self) -> RunResult:
        outcome, session, request = self.outcome, self.session, self.request
        usage = outcome.usage.minus(self.usage_before) if outcome.usage else Usage()
        return RunResult(
            session=session,
            run_id=self.id,
            status=self.status,
            model=self.model,
            output=outcome.output,
            messages=[*self.prepared.messages, Message("assistant", outcome.output)],
            usage=usage,
            events=outcome.events,
            tool_calls=outcome.tool_calls,
            metadata=request.metadata if request.metadata is not None else dict(session.metadata),
            duration_ms=self.duration_ms,
            attempts=self.record.attempts or 0,
            events_omitted=outcome.events_dropped,
            first_seq=self.record.first_seq,
            last_seq=self.record.last_seq,
            answer=self.answer,
            changes=self.record.changes,
            failure=self.failure,
        )
