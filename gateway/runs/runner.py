"""Runs: admit a run request, hold a slot and the session, drive codex, record the result.

Every run source (completion, prompt, nudge, trigger, watcher) goes through `Runner.run`. A run
belongs to the runner, not to the request that asked for it: it survives its client going away
and is stopped only by its deadline, by `cancel`, or by shutdown. One run's own state is a
`Run` (gateway/runs/run.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_exponential

from bridge.logformat import bind
from gateway import tracing
from gateway.agent import codex
from gateway.agent.budget import OutputBudget
from gateway.agent.events import RunOutcome, canonical_thread_id
from gateway.agent.process import AgentProcess
from gateway.auth import principal, tenancy
from gateway.auth.quotas import KeyQuotas, Quotas, Release, releasing
from gateway.changes.tracker import ChangeTracker
from gateway.config import Config
from gateway.errors import (
    AgentFailed,
    ConcurrencyLimitReached,
    GatewayError,
    InvalidRequest,
    OutputSchemaMismatch,
    RateLimited,
    RunCancelled,
    RunInterrupted,
    RunStalled,
    RunTimedOut,
    SessionBusy,
    ShuttingDown,
    StorageFailed,
)
from gateway.metrics.families import GatewayMetrics
from gateway.runs import images
from gateway.runs.admission import BACKGROUND_SOURCES, Admission
from gateway.runs.childenv import child_environment
from gateway.runs.concurrency import Slots
from gateway.runs.failure import child_zone, classify_agent, of_error, warnings_in
from gateway.runs.prompt import GlobalSystemPrompt, Message, messages_or_prompt
from gateway.runs.run import EventSink, Prepared, Run, RunRequest, RunResult, StartedSink
from gateway.runs.schema import repair_prompt
from gateway.runs.scratch import Scratch
from gateway.runs.watchdog import Watchdogs
from gateway.sessions.access import SecureAccess
from gateway.sessions.feed import LiveFeed
from gateway.sessions.model import Session
from gateway.sessions.store import SessionStore

log = logging.getLogger(__name__)

THREAD_SAVE_DELAY_S = 0.25
LINES_PER_TURN = 32
SETTLE_S = 2.0
"""How long a run's caller waits for its end to be durable where every reader reads it (the
store's `settle`); past that (a database that is down) it is answered and the write lands later."""
# Told about every finished run (webhooks). Must not block.
FinishedSink = Callable[[Run], None]


class _EmptyOutput(Exception):
    """An attempt produced nothing and CODEX_GATEWAY_RETRY_ON_EMPTY asks for another."""


class Runner:
    def __init__(
        self,
        config: Config,
        store: SessionStore,
        slots: Slots,
        access: SecureAccess,
        system_prompt: GlobalSystemPrompt,
        feed: LiveFeed | None = None,
        on_finished: FinishedSink | None = None,
        metrics: GatewayMetrics | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._config = config
        self._metrics = metrics  # None: not measured (the benchmark's baseline)
        self._feed = feed
        self._on_finished = on_finished
        self._store = store
        self._slots = slots
        self._admission = Admission(config, store, access, system_prompt)
        # Per API key: this process's runs, or the cluster's (docs/design/tenants.md).
        self.quotas: Quotas = quotas if quotas is not None else KeyQuotas()
        self._active: dict[str, Run] = {}
        self._deferred_saves: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[RunResult]] = set()
        self._closing = False
        self.changes = ChangeTracker(config)
        # What all the runs' agents together may print a second (gateway/agent/budget.py).
        self.output = OutputBudget(config.output_lines_per_s, config.output_bytes_per_s)
        self._tracer = tracing.tracer(config)  # a no-op one when tracing is off
        self.watchdogs = Watchdogs(config.stall_timeout_ms, metrics)

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def closing(self) -> bool:
        return self._closing

    async def run(
        self,
        request: RunRequest,
        *,
        wait_for_slot: bool = False,
        on_event: EventSink | None = None,
        on_started: StartedSink | None = None,
    ) -> RunResult:
        """Validate, then run in a task of the runner's own; the caller may leave early."""
        if self._closing:
            raise ShuttingDown
        try:
            prepared = self._admission.prepare(request)
        except SessionBusy as exc:  # the session runs: refused before the run has a task
            self._count_refusal_of(exc)
            raise
        # The caller's key's quotas, before the gateway-wide slot; given back when the run's
        # task ends, whatever way (the gateway-wide limit's refusal included), before its
        # caller hears (a cluster's place is a row); the done-callback covers a task
        # cancelled before it started.
        release = await self._key_quota(request)
        span, span_context = tracing.task_span(self._tracer, "run")

        def work() -> Coroutine[Any, Any, RunResult]:
            return self._run(prepared, wait_for_slot, on_event, on_started)

        task = asyncio.create_task(
            work() if release is None else releasing(work, release), context=span_context
        )
        if span_context is not None:
            task.add_done_callback(lambda done: tracing.end_task_span(span, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if release is not None:
            task.add_done_callback(lambda _: release())
        task.add_done_callback(_settled)
        if self._metrics is not None:
            task.add_done_callback(self._count_refusal)
        return await asyncio.shield(task)

    async def _key_quota(self, request: RunRequest) -> Release | None:
        """A place within the caller's API key's max_concurrent and runs_per_minute, or the
        429 that refuses it; None for a key without quotas and for the gateway's own runs."""
        if request.source in BACKGROUND_SOURCES:
            return None
        try:
            return await self.quotas.take(principal.current().key)
        except (ConcurrencyLimitReached, RateLimited) as exc:
            self._count_refusal_of(exc)
            raise

    async def _run(
        self,
        prepared: Prepared,
        wait_for_slot: bool,
        on_event: EventSink | None,
        on_started: StartedSink | None,
    ) -> RunResult:
        run_id = str(uuid.uuid4())  # first: the slot is taken for it
        # This task's log lines, and those of every task it starts, name the run.
        bind(run_id=run_id, session_id=prepared.target.id if prepared.target else None)
        asked = asyncio.get_running_loop().time()
        slot = self._slots.slot(run_id, wait=wait_for_slot)
        if self._config.tracing is not None:
            slot = tracing.entered_within(self._tracer, "slot wait", slot)
        async with slot, AsyncExitStack() as parent_hold:
            if self._metrics is not None:
                self._metrics.slot_wait.observe(asyncio.get_running_loop().time() - asked)
            if self._closing:
                raise ShuttingDown
            if prepared.parent is not None:
                # Held as a run holds its session (409 while it runs) until codex has forked
                # its thread: no turn of the parent is under way while its rollout is copied.
                await parent_hold.enter_async_context(
                    self._store.exclusive(prepared.parent, run_id)
                )
            session = prepared.target
            if session is None:
                session = self._store.create(
                    secure=prepared.request.secure,
                    metadata=prepared.request.metadata or {},
                    workspace=str(prepared.workspace),
                    persist=False,  # the run's first save writes it
                    tenant=tenancy.creating_tenant(),  # the caller's (a trigger's: its own)
                )
                bind(session_id=session.id)
            claimed = False
            try:
                async with self._store.exclusive(session, run_id):
                    claimed = True
                    current = asyncio.current_task()
                    if current is None:
                        raise RuntimeError("runs execute inside the runner's task")
                    run = Run(
                        run_id,
                        prepared,
                        session,
                        current,
                        default_model=self._config.default_model,
                        on_event=on_event,
                        on_started=on_started,
                        scratch=Scratch(run_id, self._config.agent_user, self._config.scratch_root),
                        parent_hold=parent_hold,
                    )
                    try:
                        return await self._run_in_session(run)
                    finally:
                        run.scratch.close()
            finally:
                if claimed:  # a refused run (busy, the database down) is answered at once
                    await self._settle(session)

    async def _settle(self, session: Session) -> None:
        """The run's end (and the session's release) durable for every reader, within a bound."""
        try:
            async with asyncio.timeout(SETTLE_S):  # not wait_for: 3.11's can lose a cancel
                await self._store.settle(session)
        except TimeoutError:
            log.warning("session %s: its last run is not recorded everywhere yet", session.id)

    async def _run_in_session(self, run: Run) -> RunResult:
        run.begin()
        session = run.session
        if self._config.tracing is not None:  # the run's span (Runner.run) is current here
            run.record.trace_id = tracing.name_run(run.id, session.id)
        self._active[session.id] = run
        try:
            await run.open_log(self._feed)
        except OSError as exc:
            self._active.pop(session.id, None)
            run.error = str(exc)
            error = _failed(run, StorageFailed(f"Cannot open the session logs: {exc.strerror}"))
            self._finish(run)
            raise error from exc
        if self._metrics is not None:
            self._metrics.run_started(run)
        run.record.first_seq = run.log.start()
        log.info(
            "run %s started (%s) in session %s", run.id, run.prepared.request.source, session.id
        )
        if run.on_started is not None:
            run.on_started(session, run.id, run.record.first_seq)
        try:
            await self.changes.begin(run)  # the workspace as the run found it
            run.images = await images.copy_async(
                run.prepared.images,
                run.prepared.workspace,
                run.scratch,
                max_bytes=self._config.max_image_bytes,
            )
            run.outcome = await self._attempts(run)
            run.status = "completed"
        except asyncio.CancelledError:
            if run.stop_reason is None:
                raise
            run.task.uncancel()
            run.status = run.stop_reason
            if run.status == "cancelled":
                run.error = "run cancelled"
                raise _failed(run, RunCancelled(f"Run {run.id} was cancelled")) from None
            run.error = run.stop_detail or "gateway shut down during the run"
            raise _failed(
                run,
                RunInterrupted(
                    f"Run {run.id} was interrupted: "
                    f"{run.stop_detail or 'the gateway is shutting down'}"
                ),
            ) from None
        except (RunTimedOut, RunStalled) as exc:  # a stall is a timeout of another kind
            run.status, run.error = "timeout", exc.message
            _failed(run, exc)
            raise
        except GatewayError as exc:
            run.status, run.error = "error", exc.message
            _failed(run, exc)
            raise
        finally:
            await self._record_changes(run)
            self._active.pop(session.id, None)
            run.record.last_seq = run.log.end(run.status)
            run.log.close()
            self._finish(run)
            if self._metrics is not None:
                self._metrics.run_finished(run)
            self._announce(run)
            log.info("run %s ended: %s", run.id, run.status)
        return run.result()

    async def _record_changes(self, run: Run) -> None:
        """What the run changed, whatever its status; a cancel while it is recorded (the
        gateway's shutdown past its grace) does not stop the run's end from being recorded."""
        if self.changes.end_at_once(run):  # most runs: nothing to wait for, no task for it
            return
        recording = asyncio.ensure_future(self.changes.end(run))
        try:
            await asyncio.shield(recording)
        except asyncio.CancelledError:  # the recording goes on, shielded, and lands in the record
            log.warning("run %s: cancelled while its changes were recorded", run.id)
        except Exception:  # recording what changed must never break the run it reports
            log.exception("run %s: could not record its changes", run.id)

    def active(self, session_id: str) -> Run | None:
        """The session's running run in this process, if any."""
        return self._active.get(session_id)

    def _count_refusal(self, task: asyncio.Task[RunResult]) -> None:
        self._count_refusal_of(None if task.cancelled() else task.exception())

    def _count_refusal_of(self, error: BaseException | None) -> None:
        """A 429 (no slot) or a 409 (the session runs), by reason."""
        if isinstance(error, (ConcurrencyLimitReached, RateLimited, SessionBusy)) and self._metrics:
            self._metrics.runs_rejected.labels(error.reason.lower()).inc()

    def _announce(self, run: Run) -> None:
        if self._on_finished is None:
            return
        try:
            self._on_finished(run)
        except Exception:  # a notification must never break the run it reports
            log.exception("the finished-run hook failed for run %s", run.id)

    def _finish(self, run: Run) -> None:
        run.end()
        pending = self._deferred_saves.pop(run.session.id, None)
        if pending is not None:
            pending.cancel()
        try:
            self._store.save(run.session)
        except StorageFailed:
            log.exception("could not record the end of run %s", run.id)

    async def _attempts(self, run: Run) -> RunOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + run.prepared.timeout_ms / 1000
        if self._config.max_retries == 0:  # the common case needs no retry machinery
            run.record.attempts = 1
            with self._tracer.start_as_current_span("attempt", attributes={tracing.ATTEMPT: 1}):
                outcome = await self._attempt(run, deadline)
            return await self._conformed(run, outcome, deadline)

        class _BudgetSpent(stop_base):
            def __call__(self, state: RetryCallState) -> bool:
                return loop.time() + (state.upcoming_sleep or 0) + 1.0 >= deadline

        delay_s = self._config.retry_delay_ms / 1000
        backoff = wait_exponential(multiplier=delay_s, min=delay_s, max=max(delay_s, 30.0))

        def wait(state: RetryCallState) -> float:
            """Until the time the provider named (a rate or usage limit), else the backoff;
            a wait past the budget stops the retries (`_BudgetSpent`)."""
            error = state.outcome.exception() if state.outcome is not None else None
            if isinstance(error, GatewayError):
                after_ms = of_error(error).retry_after_ms
                if after_ms is not None:
                    return after_ms / 1000
            return float(backoff(state))

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._config.max_retries + 1) | _BudgetSpent(),
            wait=wait,
            retry=retry_if_exception(_retried),
            reraise=True,
        )
        outcome = RunOutcome()
        async for attempt in retrying:
            with attempt:
                number = attempt.retry_state.attempt_number
                run.record.attempts = number
                with self._tracer.start_as_current_span(
                    "attempt", attributes={tracing.ATTEMPT: number}
                ):
                    outcome = await self._attempt(run, deadline)
                if (
                    self._config.retry_on_empty
                    and outcome.is_empty
                    and number <= self._config.max_retries
                ):
                    raise _EmptyOutput
        return await self._conformed(run, outcome, deadline)

    async def _conformed(self, run: Run, outcome: RunOutcome, deadline: float) -> RunOutcome:
        """The outcome, once its answer matches the run's output schema (if it has one): an
        answer that does not gets one repair turn, resuming the run's thread with what is
        wrong; `OutputSchemaMismatch` when that does not help either."""
        schema = run.prepared.output_schema
        if schema is None:
            return outcome
        run.outcome = outcome  # kept, whatever the repair does
        run.answer = answer = schema.judge(outcome.output)
        if answer.valid:
            return outcome
        thread = outcome.thread_id or run.session.codex_session_id or run.resume_thread
        repair_failed: str | None = None
        if thread is None:
            repair_failed = "codex reported no thread to resume for a repair turn"
        else:
            try:
                outcome = await self._attempt(
                    run,
                    deadline,
                    thread=thread,
                    prompt_text=repair_prompt(answer.errors),
                    outcome=outcome,
                )
            except AgentFailed as exc:
                repair_failed = f"the repair turn failed: {exc.message}"
            else:
                run.outcome = outcome
                run.answer = answer = schema.judge(outcome.output)
                if answer.valid:
                    return outcome
        first = answer.errors[0]
        raise OutputSchemaMismatch(
            f"The answer does not match output_schema"
            f"{' (' + repair_failed + ')' if repair_failed else ', even after a repair turn'}: "
            f"{len(answer.errors)} error(s), first at {first.path or '(root)'}: {first.message}",
            session_id=run.session.id,
            run_id=run.id,
            errors=[(error.path, error.message) for error in answer.errors],
        )

    async def _attempt(
        self,
        run: Run,
        deadline: float,
        *,
        thread: str | None = None,
        prompt_text: str | None = None,
        outcome: RunOutcome | None = None,
    ) -> RunOutcome:
        """One codex process for the run: its prompt in a new thread or the run's resumed one;
        a repair turn resumes `thread` with `prompt_text`, folding into the run's `outcome`."""
        session, prepared, run_log = run.session, run.prepared, run.log
        resume_thread = thread or run.resume_thread
        agent = AgentProcess(
            codex.argv(
                self._config,
                prepared.workspace,
                run.model,
                resume_thread,
                output_schema=run.schema_file(),
                images=run.images,
                # A repair turn resumes the fork's own new thread.
                fork_thread=run.fork_thread if thread is None else None,
                prompt=bool(prepared.messages) or prompt_text is not None,
            ),
            env=child_environment(self._config.child_env, prepared.env)
            # codex continues the attempt's trace in its own export when configured so
            | (tracing.agent_environment() if self._config.tracing is not None else {}),
            cwd=prepared.workspace,
            stdin_text=prompt_text or prepared.prompt_text,
            max_line_bytes=self._config.max_line_bytes,
            stderr_tail_bytes=self._config.stderr_tail_bytes,
            nice=self._config.agent_nice,
            on_stderr=run_log.stderr,
            roots=(*self._config.workspace_roots, self._config.default_workspace),
            user=self._config.agent_user,
            output=self.output.meter(),
        )
        try:
            with self._tracer.start_as_current_span("agent spawn"):
                await agent.start()
        except GatewayError:
            if self._metrics is not None:
                self._metrics.spawn_failures.inc()
            raise
        if outcome is None:
            outcome = RunOutcome()
        started: str | None = None  # the thread this process reported
        grace_s = self._config.stop_grace_ms / 1000
        try:
            # The run is on disk from here, with the pid that reconciliation after a crash needs.
            session.runs[-1].agent_pid = agent.pid
            self._store.save(session)
            async with asyncio.timeout_at(deadline), self.watchdogs.watch() as watchdog:
                async for batch in agent.batches():
                    watchdog.feed()
                    for index, line in enumerate(batch, 1):
                        event = run.take_line(line)
                        if event is not None:
                            outcome.observe(event)
                            watchdog.observe(event)
                            if event["type"] == "thread.started":
                                started = canonical_thread_id(event.get("thread_id"))
                                if not _same_thread(outcome.thread_id, run.fork_thread):
                                    self._learn_thread(session, outcome.thread_id)
                                await run.release_parent()
                            if run.on_event is not None:
                                run.on_event(event, run_log.last_seq or 0)
                        if index % LINES_PER_TURN == 0:
                            # A chatty agent must not hold the loop: a turn for everyone else
                            # every few lines (flushed first, for tails that read the files).
                            run_log.flush()
                            await asyncio.sleep(0)
                    run_log.flush()
                code = await agent.wait()
        except TimeoutError:
            await agent.stop(grace_s)
            raise RunTimedOut(prepared.timeout_ms) from None
        finally:
            run_log.flush()
            if agent.returncode is None:
                await agent.stop(grace_s)
        agent.reap()
        reported = outcome.failure_message()
        if code != 0 or reported:
            stderr_tail = agent.stderr_tail()
            why = classify_agent(
                message=reported,
                exit_code=code,
                stderr_tail=stderr_tail,
                warnings=warnings_in(outcome.events),
                zone=child_zone(prepared.env),
            )
            raise AgentFailed(why.message, exit_code=code, stderr_tail=stderr_tail, failure=why)
        started = started or outcome.thread_id  # a repair turn folds into the run's outcome
        if resume_thread and started and started != resume_thread:
            raise AgentFailed(
                f"codex started thread {started} instead of resuming {resume_thread}",
                exit_code=code,
            )
        if run.fork_thread and (
            outcome.thread_id is None or _same_thread(outcome.thread_id, run.fork_thread)
        ):
            raise AgentFailed(
                f"codex did not fork thread {run.fork_thread} into a new one "
                f"(it reported {outcome.thread_id or 'no thread'})",
                exit_code=code,
            )
        return outcome

    def _learn_thread(self, session: Session, thread_id: str | None) -> None:
        """Known at once by id lookups; on disk shortly, or with the end of a quick run."""
        thread = canonical_thread_id(thread_id)
        if thread is None or session.codex_session_id == thread:
            return
        session.codex_session_id = thread
        self._store.remember_thread(session)
        if session.id not in self._deferred_saves:
            self._deferred_saves[session.id] = asyncio.get_running_loop().call_later(
                THREAD_SAVE_DELAY_S, self._save_later, session
            )

    def _save_later(self, session: Session) -> None:
        self._deferred_saves.pop(session.id, None)
        try:
            self._store.save(session)
        except StorageFailed:
            log.exception("session %s: could not record its thread id", session.id)

    def cancel(self, session: Session) -> str | None:
        """Ask the session's running run to stop; its id, or None when nothing runs."""
        run = self._active.get(session.id)
        if run is None:
            return None
        run.stop("cancelled")
        return run.id

    async def interrupt_all(self, detail: str) -> None:
        """Stop every running run as `interrupted` (`detail` says why) and wait for them to
        end; new runs are still taken. Cluster mode: this replica was declared dead, and the
        cluster has recorded its runs so."""
        runs = list(self._active.values())
        for run in runs:
            run.stop("interrupted", detail)
        if runs:
            await asyncio.wait({run.task for run in runs})

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new runs, give running ones `grace_s`, then stop them as interrupted."""
        self._closing = True
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for run in list(self._active.values()):
                run.stop("interrupted")
            for task in pending:
                task.cancel()
            await asyncio.wait(tasks)


def _settled(task: asyncio.Task[Any]) -> None:
    """Its caller may have left (the run outlives it): the outcome is recorded in the session,
    so retrieve it here rather than have asyncio report it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _same_thread(thread_id: str | None, other: str | None) -> bool:
    return other is not None and canonical_thread_id(thread_id) == other


def _failed(run: Run, error: GatewayError) -> GatewayError:
    """`error`, the end of `run`, with the run's failure (kind, message, retry_after_ms) on
    both: the record keeps it, the answer reports it."""
    run.failure = error.failure = of_error(error)
    return error


def _retried(error: BaseException) -> bool:
    """Whether another attempt may cure this attempt's failure (gateway/runs/failure.py)."""
    if isinstance(error, _EmptyOutput):
        return True
    return isinstance(error, GatewayError) and of_error(error).retried


def nudge_request(session: Session, given: RunRequest) -> RunRequest:
    """What a nudge runs: the given prompt or messages, else the session's last input, else its
    stored `nudge_prompt`; the given metadata is merged into the session's."""
    last = session.last_input or {}
    messages = messages_or_prompt(given.messages, given.prompt)
    system_prompt = given.system_prompt
    if not messages and isinstance(last.get("messages"), list):
        messages = [
            Message(str(m.get("role", "user")), m["content"])
            for m in last["messages"]
            if isinstance(m, dict) and isinstance(m.get("content"), str)
        ]
        system_prompt = system_prompt or str(last.get("system_prompt") or "")
    if not messages:
        messages = messages_or_prompt((), session.nudge_prompt)
    if not messages:
        raise InvalidRequest("No nudge prompt configured", field="prompt")
    merged = dict(session.metadata)
    merged.update(given.metadata or {})
    output_schema = given.output_schema
    if output_schema is None and isinstance(last.get("output_schema"), dict):
        output_schema = last["output_schema"]
    return dataclasses.replace(
        given,
        source="nudge",
        messages=messages,
        prompt=None,
        system_prompt=system_prompt,
        session_id=session.id,
        metadata=merged,
        output_schema=output_schema,
    )
