"""Webhook delivery: finished-run notifications POSTed from an outbox, with retries.

Every finished run becomes one delivery. `enqueue` keeps it in the outbox (gateway/automation/
outbox.py: a directory in embedded mode, the database's table in cluster mode) before it returns
and wakes the delivery loop; the loop takes due deliveries from the outbox, POSTs them and tells
the outbox the outcome. What is still in the outbox when the process stops is delivered later
(by the next process, or in cluster mode by any replica), so a webhook survives a restart.

Delivery is at least once. The delivery id is chosen by the outbox at enqueue time and sent as
`Idempotency-Key` and `X-Codex-Gateway-Delivery` on every attempt, in this process and the
next, so a receiver drops duplicates by it. `X-Codex-Gateway-Attempt` counts attempts from 1,
across restarts (the outbox counts each attempt before it is made).

Each attempt has one deadline, SESSION_WEBHOOK_TIMEOUT_MS, for all of it: connecting, sending,
the answer's headers and the little of its body that is read (at most `_REASON_BYTES` of a
refusal; a 2xx answer's body is never read). A receiver that drips its answer a byte at a time
holds an attempt no longer than that.

Retries (tenacity's wait strategy): connection errors, timeouts, HTTP 5xx and 429 are retried
with full-jitter exponential backoff (window `retry_base_ms * 2**(n-1)` after the n-th attempt, at
most `retry_max_ms`), or after the `Retry-After` of a 429/503 answer (capped at `retry_max_ms`),
until `max_attempts` attempts have been made. Any other answer (4xx, or a 3xx: redirects are not
followed) is permanent. A delivery that fails for good is set aside by the outbox, never deleted.

Scheduling: deliveries are independent. A delivery waiting for its next attempt holds nothing
(it is back in the outbox with the time it is due); at most `concurrency` attempts pace the
receiver at once, in the order they are due (creation order for new ones), so a backlog after
an outage arrives as a trickle. An attempt still unanswered after
`_SLOW_AFTER_S` stops counting against that bound (up to `_MAX_SLOW` of them), so slow or
stuck answers to some deliveries never hold up the others beyond their own backoff.

Signature (when SESSION_WEBHOOK_SECRET is set), computed afresh for every attempt:

    X-Codex-Gateway-Timestamp: <unix seconds, integer>
    X-Codex-Gateway-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

The secret is used as its UTF-8 bytes, the raw body is the exact request body bytes (compact
JSON, UTF-8). A receiver recomputes the HMAC over `f"{timestamp}.".encode() + body`, compares it
with `hmac.compare_digest`, and rejects a timestamp too far from its own clock (say 5 minutes)
so that a captured request cannot be replayed later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry import trace
from tenacity import RetryCallState, wait_random_exponential

from bridge.logformat import bind
from gateway import tracing
from gateway.agent.events import Usage
from gateway.automation.outbox import FAILED_DIR, Delivery, DirectoryOutbox, Outbox, Unreadable
from gateway.automation.outbox import encode as _encode
from gateway.config import WebhookConfig
from gateway.waiting import first_set

if TYPE_CHECKING:
    from gateway.runs.run import Run

__all__ = ["FAILED_DIR", "WebhookSender", "finished_payload", "retry_after_seconds", "sign"]

log = logging.getLogger(__name__)

# Attempts in flight at once that pace the receiver, so a backlog after an outage reaches it as
# a trickle, in creation order, not a flood.
CONCURRENCY = 4
# An attempt unanswered for this long is slow: it gives its pacing slot to the next delivery.
_SLOW_AFTER_S = 1.0
# Slow attempts in flight at once (open connections beyond the paced ones); past it, a slow
# attempt keeps its slot until its deadline.
_MAX_SLOW = 32
# Enough of a refusing receiver's answer to explain it in the log line.
_REASON_BYTES = 200


class _Retryable(Exception):
    """This attempt failed in a way that another attempt may not."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class _Permanent(Exception):
    """The receiver refused the delivery; sending it again would be refused again."""


class WebhookSender:
    """Queues finished-run payloads in an outbox and delivers them in the background.

    `outbox` is an `Outbox`, or a directory for a `DirectoryOutbox` there. `enqueue` is called
    on the event loop's thread (or before `run` starts); `run` is the delivery loop, one per
    sender.
    """

    def __init__(
        self,
        config: WebhookConfig,
        outbox: Outbox | Path,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int = CONCURRENCY,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._config = config
        # A span per delivery attempt, in the run's trace (a no-op tracer: traces off).
        self._tracer = tracer or trace.NoOpTracer()
        self._outbox = outbox if isinstance(outbox, Outbox) else DirectoryOutbox(outbox)
        self._outbox.wake = self._wake_loop
        self._transport = transport
        self._concurrency = max(1, concurrency)
        self._backoff = wait_random_exponential(
            multiplier=config.retry_base_ms / 1000, max=config.retry_max_ms / 1000
        )
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._delivered = 0
        self._failed = 0
        self._retried = 0
        self._paced = 0  # attempts in flight that count against `concurrency`
        self._slow = 0  # attempts in flight past _SLOW_AFTER_S that gave their slot up

    @property
    def configured(self) -> bool:
        return self._config.url is not None

    @property
    def write_errors(self) -> int:
        """Enqueued deliveries the outbox could not write (a full disk): each was kept in
        memory instead, delivered if the process lives, lost if it does not."""
        return self._outbox.write_errors

    def status(self) -> dict[str, int]:
        """This process's counts; `pending` is what this process holds, queued or in flight."""
        return {
            "delivered": self._delivered,
            "failed": self._failed,
            "pending": self._outbox.waiting(),
        }

    @property
    def retried(self) -> int:
        """Attempts of this process that failed and were scheduled again (metrics)."""
        return self._retried

    async def pending(self) -> int:
        """Deliveries not yet delivered nor failed, as the outbox counts them (in cluster mode,
        the cluster's: a query); StorageUnavailable when it cannot be counted."""
        return await self._outbox.pending()

    # -- queueing ------------------------------------------------------------------------------

    def run_finished(self, run: Run) -> None:
        """The runner's hook: queue the delivery of a finished run's payload."""
        self.enqueue(finished_payload(run))

    def enqueue(self, payload: dict[str, Any]) -> None:
        """Queue one delivery of `payload`; a no-op when no URL is configured. Never raises."""
        if not self.configured:
            return
        try:
            self._outbox.queue(payload)
        except Exception:
            # The runner's hook must not fail a finished run; a payload that cannot even be
            # encoded (a circular structure) is the only way here, and it is said loudly.
            self._failed += 1
            run_id = payload.get("run_id") if isinstance(payload, dict) else None
            log.exception("webhook: could not queue the delivery of run %s", run_id)
            return
        self._wake_loop()

    def _wake_loop(self) -> None:
        loop = self._loop
        if loop is None:
            return  # the loop is not running yet; it looks at the outbox when it starts
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            # A closed loop cannot be woken; the delivery is queued for the next run() anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver queued webhooks until `stop` is set; what is undelivered stays queued."""
        if not self.configured:
            await stop.wait()
            return
        self._loop = asyncio.get_running_loop()
        self._outbox.load()
        timeout_s = self._config.timeout_ms / 1000
        client = httpx.AsyncClient(
            # Per read; the whole attempt is bounded by the same figure in _attempt.
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=self._concurrency + _MAX_SLOW),
            trust_env=False,
            follow_redirects=False,
            transport=self._transport,
        )
        try:
            async with client, asyncio.TaskGroup() as group:
                group.create_task(self._outbox.run(stop))
                in_flight: set[asyncio.Task[None]] = set()
                while not stop.is_set():
                    self._wake.clear()
                    free = self._concurrency - self._paced
                    for delivery in await self._outbox.take(free) if free > 0 else ():
                        self._paced += 1
                        task = group.create_task(self._attempt_once(client, delivery))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                    wait_s = None
                    if self._paced < self._concurrency:
                        wait_s = self._outbox.due_in_s()
                    await first_set(stop, self._wake, timeout_s=wait_s)
                # An attempt cut short here is counted in the outbox and made again later.
                for task in in_flight:
                    task.cancel()
        finally:
            self._loop = None

    async def _attempt_once(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        """One attempt at a delivery, holding a pacing slot (taken by the loop) until it ends
        or turns slow; then the delivery is done, failed, or back in the outbox for later."""
        paced = True

        def turned_slow() -> None:
            nonlocal paced
            if paced and self._slow < _MAX_SLOW:
                paced = False
                self._paced -= 1
                self._slow += 1
                self._wake.set()  # a slot is free

        timer = asyncio.get_running_loop().call_later(_SLOW_AFTER_S, turned_slow)
        try:
            await self._deliver(client, delivery)
        finally:
            timer.cancel()
            if paced:
                self._paced -= 1
            else:
                self._slow -= 1
            self._wake.set()

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        """Make the delivery's next attempt; never raises but for cancellation."""
        try:
            payload = await self._outbox.open(delivery)
        except Unreadable as exc:
            await self._fail(delivery, f"unreadable: {exc}")
            return
        except asyncio.CancelledError:
            self._outbox.abandon(delivery)
            raise
        # This delivery's task (of its own) logs with its run's ids.
        bind(**{key: str(payload.get(key) or "") for key in ("session_id", "run_id")})
        try:
            if delivery.attempts >= self._config.max_attempts:
                # The last attempt was cut short by a stop; it may well have arrived.
                raise _Permanent("no attempts left after a restart")
            with self._tracer.start_as_current_span(
                "webhook delivery",
                context=tracing.linked_context(payload.get("trace_id"), payload.get("span_id")),
                kind=trace.SpanKind.CLIENT,
                attributes={
                    "codex_gateway.delivery_id": delivery.id,
                    tracing.ATTEMPT: delivery.attempts + 1,
                },
            ):
                await self._attempt(client, delivery, _encode(payload))
        except _Retryable as exc:
            if delivery.attempts >= self._config.max_attempts:
                await self._fail(delivery, str(exc))
            else:
                self._retried += 1
                await self._outbox.retry(delivery, self._wait(delivery, exc), str(exc))
        except _Permanent as exc:
            await self._fail(delivery, str(exc))
        except asyncio.CancelledError:
            # Stopping: due again later, so a restarted loop (or another process) sends it too.
            self._outbox.abandon(delivery)
            raise
        except Exception as exc:
            # A bug here must not end the loop or lose the payload.
            log.exception("webhook %s: delivery crashed", delivery.id)
            await self._fail(delivery, f"internal error: {exc!r}")
        else:
            # Counted once the outbox has it (whatever became of that): a reader of status()
            # that sees the count finds the outbox past it, never the delivery still pending.
            try:
                await self._outbox.delivered(delivery)
            finally:
                self._delivered += 1

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery, body: bytes) -> None:
        await self._outbox.count_attempt(delivery)
        url = self._config.url
        if url is None:
            raise _Permanent("no webhook URL configured")
        headers = self._headers(delivery, body)
        timeout_ms = self._config.timeout_ms
        try:
            # One deadline for the whole attempt: httpx's timeouts are per read, and a receiver
            # sending a byte at a time would never trip them.
            async with (
                asyncio.timeout(timeout_ms / 1000),
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                status = response.status_code
                if 200 <= status < 300:
                    return
                reason = f"HTTP {status}"
                if snippet := await _read_some(response):
                    reason += f": {snippet}"
        except TimeoutError as exc:
            log.debug("webhook %s attempt %d: timed out", delivery.id, delivery.attempts)
            raise _Retryable(f"no complete answer within {timeout_ms} ms") from exc
        except httpx.TransportError as exc:
            log.debug("webhook %s attempt %d: %r", delivery.id, delivery.attempts, exc)
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        log.debug("webhook %s attempt %d: %s", delivery.id, delivery.attempts, reason)
        if status == 429 or status >= 500:
            retry_after = None
            if status in (429, 503):
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
            raise _Retryable(reason, retry_after)
        raise _Permanent(reason)

    def _headers(self, delivery: Delivery, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._config.auth_bearer:
            headers["Authorization"] = f"Bearer {self._config.auth_bearer}"
        headers.update(self._config.headers)
        headers.update(tracing.w3c_headers())  # the attempt's span (traces on), W3C style
        # Set last: these carry the delivery protocol and must not be overridden by config.
        headers["Idempotency-Key"] = delivery.id
        headers["X-Codex-Gateway-Delivery"] = delivery.id
        headers["X-Codex-Gateway-Attempt"] = str(delivery.attempts)
        if self._config.secret:
            timestamp = str(int(time.time()))
            headers["X-Codex-Gateway-Timestamp"] = timestamp
            headers["X-Codex-Gateway-Signature"] = sign(self._config.secret, timestamp, body)
        return headers

    def _wait(self, delivery: Delivery, failure: _Retryable) -> float:
        """Seconds before the next attempt: the receiver's Retry-After, or full jitter."""
        cap_s = self._config.retry_max_ms / 1000
        if failure.retry_after_s is not None:
            return min(failure.retry_after_s, cap_s)
        # tenacity's full-jitter strategy, asked for one attempt's wait: the outbox schedules the
        # attempts itself, so that a delivery waiting for its retry holds no slot.
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # no Retrying here
        state.attempt_number = delivery.attempts
        return min(float(self._backoff(state)), cap_s)

    async def _fail(self, delivery: Delivery, reason: str) -> None:
        try:
            await self._outbox.failed(delivery, reason)
        finally:
            self._failed += 1  # after the outbox, as a delivery is counted


def finished_payload(run: Run) -> dict[str, Any]:
    """What a receiver is told about a finished run, whatever its status (CONTRACT.md)."""
    session, record, request = run.session, run.record, run.request
    users = [
        m.content for m in run.prepared.messages if m.role.lower() not in ("assistant", "system")
    ]
    payload = {
        "session_id": session.id,
        "gateway_session_id": session.id,
        "tenant": session.owner,  # who owns the session (issue 17)
        "codex_session_id": session.codex_session_id,
        "run_id": run.id,
        "status": run.status,
        "workspace": str(run.prepared.workspace),
        "prompt": users[-1] if users else "",
        # An answer that did not match the run's output_schema is kept too (its errors below).
        "output": run.outcome.output if run.status == "completed" or run.answer else "",
        "usage": record.usage or Usage().as_dict(),
        "metadata": request.metadata or dict(session.metadata),
        "error": run.error,
        # Why it did not complete (kind, message, retry_after_ms); null when it completed.
        "failure": run.failure.as_json() if run.failure is not None else None,
        "completed_at": record.completed_at,
        "model": record.model,
        "source": request.source,
        # The run's items in the session's log: GET /sessions/:id/tail?after_seq=<first - 1>.
        "first_seq": record.first_seq,
        "last_seq": record.last_seq,
        # The answer parsed, when it matched the run's output_schema; else what was wrong.
        **_structured(run),
        # What the run changed, in sum (GET /sessions/:id/changes?run_id= lists it).
        "changes": record.changes,
    }
    if record.trace_id is not None:  # traces on: the run's trace, and its span (to parent
        # deliveries under it, and for a receiver to continue)
        payload["trace_id"] = record.trace_id
        payload["span_id"] = tracing.span_id()
    if session.forked_from is not None:  # a fork's session names its parent
        payload["forked_from"] = session.forked_from.as_dict()
    return payload


def _structured(run: Run) -> dict[str, Any]:
    answer = run.answer
    if answer is None:
        return {}
    if answer.valid:
        return {"structured": answer.value}
    return {"schema_errors": [error.as_dict() for error in answer.errors]}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Codex-Gateway-Signature value for a body sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def _read_some(response: httpx.Response) -> str:
    """The start of a refusal's body, for the log; the rest is never read."""
    chunk = b""
    with contextlib.suppress(httpx.HTTPError):
        async for part in response.aiter_bytes():
            chunk += part
            if len(chunk) >= _REASON_BYTES:
                break
    return chunk[:_REASON_BYTES].decode(errors="replace").strip()
