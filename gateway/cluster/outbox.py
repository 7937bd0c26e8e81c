"""The cluster's webhook outbox: one table (`webhook_outbox`) that every replica delivers from.

Queueing: a finished run's delivery is written to this replica's spool (the embedded outbox's
directory and file format, under the primary session root) before `queue` returns, then
inserted with a NOTIFY `webhook_queued` in one transaction by the outbox's own loop; its spool
file is removed once the row is in. While the database is down the deliveries wait in memory
and in the spool, and are inserted once it is back (tenacity's backoff); a replica that stops
or dies first inserts them at its next start. The insert is `ON CONFLICT DO NOTHING` on the
delivery id, and a run's delivery id is derived from its run id: inserting again (a retry
whose first try did commit, a spool file read again, the reaper's hook for the same run) adds
nothing, and a run has one delivery, whichever replica queued it.

Delivery: any replica leases due rows with `FOR UPDATE SKIP LOCKED` (counting the attempt), for
one attempt's deadline plus a margin, then records the outcome: delivered, due again after the
backoff, or failed. Each outcome is written only while this replica still holds the lease
(`leased_by` is this outbox's own token and `lease_until > now()`), so a replica that lost its
lease (paused past it, or reaped) cannot overwrite the outcome of the replica that took the
delivery over. A lease that expires (the replica died during the attempt) makes the row due
again for every replica; it is delivered again with the same Idempotency-Key. Replicas wake on
the signal and poll as well (a signal is only a hint).

Runs a reaped replica had running are finished runs too (`interrupted`): the reap hook queues
their deliveries, in the reaper's transaction, from the `runs` and `sessions` rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from gateway.agent.events import Usage
from gateway.automation.outbox import (
    FAILED_DIR,
    Delivery,
    JsonObject,
    Outbox,
    Unreadable,
    encode,
    list_outbox,
    write_outbox_file,
)
from gateway.clock import now_iso
from gateway.cluster.database import Database
from gateway.cluster.replicas import Replicas
from gateway.cluster.signals import ControlSignals, notify
from gateway.config import WebhookConfig
from gateway.errors import StorageUnavailable
from gateway.runs.failure import FailureKind, RunFailure
from gateway.sessions.model import DEFAULT_TENANT
from gateway.waiting import first_set

log = logging.getLogger(__name__)

SIGNAL = "webhook_queued"
# How often a replica looks for due deliveries when no signal woke it: the fallback for a
# missed NOTIFY, an expired lease, another replica's retry coming due.
POLL_S = 1.0
# A lease lasts one attempt's deadline plus this, so that an attempt that ends in time always
# records its outcome under its own lease.
LEASE_MARGIN_S = 5.0
# Deliveries inserted per transaction.
INSERT_BATCH = 200
# The backoff of inserts while the database is down: from FLUSH_FIRST_S, up to FLUSH_MAX_S.
FLUSH_FIRST_S = 0.2
FLUSH_MAX_S = 5.0
# Run ids name deliveries: uuid5(this, run id) is a run's delivery id on every replica.
RUN_DELIVERIES = uuid.UUID("5d0f3c1e-8a4b-4c47-9f0e-6b1f2a7c9d31")

_DOWN = (StorageUnavailable, psycopg.Error)
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)

_LEASE = """
WITH due AS (
    SELECT delivery_id FROM webhook_outbox
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_outbox AS o
SET attempts = o.attempts + 1, leased_by = %(me)s,
    lease_until = now() + %(lease_ms)s * interval '1 millisecond',
    next_attempt_at = now() + %(lease_ms)s * interval '1 millisecond'
FROM due WHERE o.delivery_id = due.delivery_id
RETURNING o.delivery_id, o.payload, o.attempts, o.created_at
"""
# Each outcome is written only while this outbox still holds the delivery's lease.
_DELIVERED = (
    "UPDATE webhook_outbox SET status = 'delivered', delivered_at = now(),"
    " leased_by = NULL, lease_until = NULL"
    " WHERE delivery_id = %(id)s AND leased_by = %(me)s AND lease_until > now()"
)
_RETRY = (
    "UPDATE webhook_outbox SET next_attempt_at = now() + %(delay_ms)s * interval '1 millisecond',"
    " leased_by = NULL, lease_until = NULL, last_error = %(reason)s"
    " WHERE delivery_id = %(id)s AND leased_by = %(me)s AND lease_until > now()"
)
_FAILED = (
    "UPDATE webhook_outbox SET status = 'failed', leased_by = NULL, lease_until = NULL,"
    " last_error = %(reason)s"
    " WHERE delivery_id = %(id)s AND leased_by = %(me)s AND lease_until > now()"
)
_INSERT = (
    "INSERT INTO webhook_outbox (delivery_id, payload, attempts) VALUES (%s, %s::jsonb, %s)"
    " ON CONFLICT (delivery_id) DO NOTHING"
)


def delivery_id_for(payload: Mapping[str, Any]) -> str:
    """A run's delivery id (its Idempotency-Key): derived from its run id, so that every
    replica that queues it names it alike; a payload without one gets a random id."""
    run_id = payload.get("run_id")
    if isinstance(run_id, str) and run_id:
        return str(uuid.uuid5(RUN_DELIVERIES, run_id))
    return str(uuid.uuid4())


@dataclass(eq=False)
class _Queued:
    """A delivery not in the database yet: its spool file (None: it could not be written)."""

    id: str
    data: str  # the payload, encoded
    attempts: int
    path: Path | None


@dataclass(eq=False)
class _Leased(Delivery):
    payload: JsonObject | None = None
    created_at: datetime | None = None


class DatabaseOutbox(Outbox):
    """This replica's side of the cluster's outbox."""

    def __init__(
        self,
        database: Database,
        config: WebhookConfig,
        spool: Path,
        *,
        replica_id: str,
        signals: ControlSignals | None = None,
        replicas: Replicas | None = None,
        lease_margin_s: float = LEASE_MARGIN_S,
        poll_s: float = POLL_S,
    ) -> None:
        super().__init__()
        self._db = database
        self._config = config
        self.spool = spool
        self.replica_id = replica_id
        # Who holds a lease: this replica, and this outbox of it (a restarted replica with the
        # same id does not hold its predecessor's leases).
        self.me = f"{replica_id}/{uuid.uuid4().hex[:8]}"
        self._lease_ms = int(config.timeout_ms + lease_margin_s * 1000)
        self._poll_s = poll_s
        self._unsent: dict[str, _Queued] = {}
        self._kick = asyncio.Event()
        self._leased = 0
        # time.monotonic() of the earliest retry this replica scheduled (None: none).
        self._next_retry: float | None = None
        self.lost_leases = 0
        self._unreachable = False
        if signals is not None:
            signals.on(SIGNAL, self._signalled)
        if replicas is not None:
            replicas.on_reap(self._reaped)

    # -- queueing ------------------------------------------------------------------------------

    def queue(self, payload: JsonObject) -> str:
        delivery_id = delivery_id_for(payload)
        if delivery_id not in self._unsent:  # the run's first payload, as in the database
            self._keep(delivery_id, payload, attempts=0)
        return delivery_id

    def _keep(self, delivery_id: str, payload: JsonObject, attempts: int) -> None:
        """Spool one delivery, then have the loop insert it."""
        record = {"id": delivery_id, "created_at": now_iso(), "attempts": attempts}
        data = _storable(encode(payload).decode())
        spooled = self.spool / f"{time.time_ns()}-{delivery_id}.json"
        path: Path | None = spooled
        try:
            write_outbox_file(spooled, encode({**record, "payload": payload}))
        except OSError as exc:
            self.write_errors += 1
            path = None
            log.error(
                "webhook %s: cannot write to the spool (%s); kept in memory until the database "
                "has it",
                delivery_id,
                exc,
            )
        self._unsent[delivery_id] = _Queued(delivery_id, data, attempts, path)
        self._kick.set()

    def load(self) -> None:
        """Queue what this replica's spool holds: deliveries an earlier process could not
        insert (or an embedded gateway's undelivered ones, in the same format)."""
        found = list_outbox(self.spool)
        for path, _, file_id in found or ():
            try:
                record = json.loads(path.read_bytes())
                payload = record["payload"]
                if not isinstance(payload, dict):
                    raise TypeError("no payload object")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("webhook: spool file %s is unreadable (%s); left there", path, exc)
                continue
            delivery_id = str(record.get("id") or file_id)
            if delivery_id in self._unsent:
                continue
            attempts = record.get("attempts", 0)
            data = _storable(encode(payload).decode())
            self._unsent[delivery_id] = _Queued(
                delivery_id, data, attempts if isinstance(attempts, int) else 0, path
            )
        if self._unsent:
            log.info("webhook: %d spooled deliveries to queue", len(self._unsent))
            self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Insert what was queued, until `stop`; then once more, briefly."""
        while not stop.is_set():
            self._kick.clear()
            if self._unsent:
                with contextlib.suppress(_Stopping):
                    await self._flush(stop)
                continue
            await first_set(stop, self._kick)
        if self._unsent:
            try:
                await self._insert()
            except _DOWN as exc:
                log.warning(
                    "webhook: %d deliveries not queued in the database (%s); spooled for the "
                    "next start",
                    len(self._unsent),
                    exc,
                )

    async def _flush(self, stop: asyncio.Event) -> None:
        async def pause(seconds: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            if stop.is_set():
                raise _Stopping

        def told(state: RetryCallState) -> None:
            log.warning(
                "webhook: cannot queue %d deliveries in the database (%s); trying again",
                len(self._unsent),
                state.outcome.exception() if state.outcome else "?",
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_DOWN),
            wait=wait_exponential_jitter(
                multiplier=FLUSH_FIRST_S, max=FLUSH_MAX_S, jitter=FLUSH_FIRST_S
            ),
            sleep=pause,
            before_sleep=told,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._insert()

    async def _insert(self) -> None:
        """Insert the queued deliveries, a batch per transaction with its signal; a delivery
        the database refuses (not an outage: a value jsonb cannot hold, such as NaN) is set
        aside alone, and holds back no other."""
        while self._unsent:
            batch = list(self._unsent.values())[:INSERT_BATCH]
            try:
                await self._insert_batch(batch)
            except psycopg.DataError:
                for queued in batch:
                    try:
                        await self._insert_batch([queued])
                    except psycopg.DataError as exc:
                        self._refused(queued, exc)
            self.wake()

    async def _insert_batch(self, batch: list[_Queued]) -> None:
        async with self._db.connection() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    _INSERT, [(queued.id, queued.data, queued.attempts) for queued in batch]
                )
            await notify(conn, SIGNAL, replica=self.replica_id)
        for queued in batch:
            self._unsent.pop(queued.id, None)
            if queued.path is not None:
                try:
                    queued.path.unlink(missing_ok=True)
                except OSError as exc:  # inserted again at the next start: nothing added
                    log.warning("webhook %s: cannot remove its spool file: %s", queued.id, exc)

    def _refused(self, queued: _Queued, exc: psycopg.Error) -> None:
        self._unsent.pop(queued.id, None)
        kept = "nowhere (it was never written)"
        if queued.path is not None:
            target = self.spool / FAILED_DIR / queued.path.name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                queued.path.replace(target)
                kept = str(target)
            except OSError as moved:
                kept = f"{queued.path} ({moved})"
        log.error(
            "webhook %s: the database refuses the delivery (%s); kept in %s",
            queued.id,
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            kept,
        )

    def _signalled(self, message: Mapping[str, Any] | None) -> None:
        self.wake()

    # -- delivery ------------------------------------------------------------------------------

    async def take(self, limit: int) -> list[Delivery]:
        if self._next_retry is not None and self._next_retry <= time.monotonic():
            self._next_retry = None
        try:
            async with self._db.connection() as conn:
                cursor = await conn.execute(
                    _LEASE, {"limit": limit, "me": self.me, "lease_ms": self._lease_ms}
                )
                rows = await cursor.fetchall()
        except _DOWN as exc:
            if not self._unreachable:  # once per outage, not once per poll
                log.warning("webhook: cannot lease deliveries: %s", exc)
            self._unreachable = True
            return []
        if self._unreachable:
            log.info("webhook: leasing deliveries again")
            self._unreachable = False
        leased = [_leased(row) for row in rows]
        leased.sort(key=lambda delivery: (delivery.created_at or _LONG_AGO, delivery.id))
        self._leased += len(leased)
        return list(leased)

    def due_in_s(self) -> float | None:
        if self._next_retry is None:
            return self._poll_s
        return max(0.0, min(self._poll_s, self._next_retry - time.monotonic()))

    async def open(self, delivery: Delivery) -> JsonObject:
        leased = _lease(delivery)
        if leased.payload is None:
            raise Unreadable("the delivery has no payload object")
        return leased.payload

    async def count_attempt(self, delivery: Delivery) -> None:
        # The lease counted it in the database already.
        delivery.attempts += 1

    async def delivered(self, delivery: Delivery) -> None:
        await self._outcome(
            delivery,
            _DELIVERED,
            {},
        )

    async def retry(self, delivery: Delivery, delay_s: float, reason: str) -> None:
        done = await self._outcome(
            delivery,
            _RETRY,
            {"delay_ms": int(delay_s * 1000), "reason": reason},
        )
        if done:
            due = time.monotonic() + delay_s
            self._next_retry = due if self._next_retry is None else min(due, self._next_retry)
            self.wake()

    async def failed(self, delivery: Delivery, reason: str) -> None:
        done = await self._outcome(
            delivery,
            _FAILED,
            {"reason": reason},
        )
        if done:
            log.warning(
                "webhook %s failed after %d attempt(s): %s; kept in the database's outbox",
                delivery.id,
                delivery.attempts,
                reason,
            )

    def abandon(self, delivery: Delivery) -> None:
        # Its lease runs out and it is due again, for any replica. Releasing it here would
        # need the database in the middle of a cancellation.
        self._leased -= 1

    async def _outcome(self, delivery: Delivery, statement: str, params: JsonObject) -> bool:
        """Record an outcome under this outbox's lease; False when the lease was lost (another
        replica may have the delivery now) or the database stayed unreachable."""
        self._leased -= 1
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_DOWN),
                wait=wait_exponential_jitter(
                    multiplier=FLUSH_FIRST_S, max=FLUSH_MAX_S, jitter=FLUSH_FIRST_S
                ),
                # Past the lease there is nothing left to record: the delivery is due again.
                stop=stop_after_delay(self._lease_ms / 1000),
                reraise=True,
            ):
                with attempt:
                    async with self._db.connection() as conn:
                        cursor = await conn.execute(
                            statement.encode(), {**params, "id": delivery.id, "me": self.me}
                        )
                        held = cursor.rowcount == 1
        except _DOWN as exc:
            log.warning("webhook %s: cannot record the outcome (%s)", delivery.id, exc)
            return False
        if not held:
            self.lost_leases += 1
            log.warning(
                "webhook %s: the lease ran out before the outcome was recorded; the delivery "
                "is due again (same Idempotency-Key)",
                delivery.id,
            )
        return held

    def waiting(self) -> int:
        return len(self._unsent) + self._leased

    async def pending(self) -> int:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM webhook_outbox WHERE status = 'pending'"
            )
            row = await cursor.fetchone()
        return (int(row[0]) if row else 0) + len(self._unsent)

    # -- the runs of a dead replica ------------------------------------------------------------

    async def _reaped(self, conn: psycopg.AsyncConnection[TupleRow], replica_id: str) -> None:
        """Queue the deliveries of the runs `replica_id` had running before its current epoch
        (in the reaper's transaction: they become `interrupted` in it)."""
        if self._config.url is None:
            return
        try:
            # A savepoint: whatever goes wrong here must not undo the reap itself.
            async with conn.transaction():
                await self._queue_interrupted(conn, replica_id)
        except Exception:
            log.exception("webhook: could not queue the runs of reaped replica %s", replica_id)

    async def _queue_interrupted(
        self, conn: psycopg.AsyncConnection[TupleRow], replica_id: str
    ) -> None:
        # Still `running`, or made `interrupted` in this very transaction by the session store's
        # hook (now() is the transaction's start, the same for every statement in it).
        cursor = await conn.execute(
            "SELECT r.run_id, r.status, r.source, r.record, s.session_id, s.codex_session_id,"
            " s.meta FROM runs r JOIN sessions s USING (session_id)"
            " JOIN replicas p ON p.replica_id = r.replica_id"
            " WHERE r.replica_id = %s AND r.replica_epoch < p.epoch"
            " AND (r.status = 'running' OR r.completed_at = now())",
            (replica_id,),
        )
        rows = await cursor.fetchall()
        if not rows:
            return
        payloads = [_interrupted_payload(row, replica_id) for row in rows]
        async with conn.cursor() as insert:
            await insert.executemany(
                _INSERT,
                [(delivery_id_for(p), _storable(encode(p).decode()), 0) for p in payloads],
            )
        await notify(conn, SIGNAL, replica=self.replica_id)
        log.info(
            "webhook: queued the deliveries of %d runs of reaped replica %s", len(rows), replica_id
        )


class _Stopping(Exception):
    """The outbox's loop was told to stop while waiting to try again."""


def _leased(row: tuple[Any, ...]) -> _Leased:
    delivery_id, payload, attempts, created_at = row
    return _Leased(
        str(delivery_id),
        # The lease counted the attempt about to be made; count_attempt makes it this one.
        attempts=int(attempts) - 1,
        payload=payload if isinstance(payload, dict) else None,
        created_at=created_at if isinstance(created_at, datetime) else None,
    )


def _lease(delivery: Delivery) -> _Leased:
    if not isinstance(delivery, _Leased):
        raise TypeError("not a delivery of this outbox")
    return delivery


def _storable(text: str) -> str:
    """JSON text jsonb accepts: jsonb has no NUL character (\\u0000), so one becomes U+FFFD."""
    if "\\u0000" not in text:
        return text
    return json.dumps(_without_nul(json.loads(text)), separators=(",", ":"), ensure_ascii=False)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def _interrupted_payload(row: tuple[Any, ...], replica_id: str) -> JsonObject:
    """A reaped run's payload, from what the database holds of it (CONTRACT.md's fields)."""
    run_id, _status, source, record, session_id, codex_session_id, meta = row
    record = record if isinstance(record, dict) else {}
    meta = meta if isinstance(meta, dict) else {}
    error = record.get("error") or f"replica {replica_id} stopped during this run"
    return {
        "session_id": session_id,
        "gateway_session_id": session_id,
        "tenant": meta["tenant"] if isinstance(meta.get("tenant"), str) else DEFAULT_TENANT,
        "codex_session_id": codex_session_id,
        "run_id": run_id,
        "status": "interrupted",
        "workspace": meta.get("workspace") or "",
        "prompt": _last_prompt(meta) or record.get("prompt_preview") or "",
        "output": "",
        "usage": record.get("usage") or Usage().as_dict(),
        "metadata": record.get("metadata") or meta.get("metadata") or {},
        "error": error,
        # The reaper's record says why (gateway/runs/failure.py); a record from before it did
        # not: the same words.
        "failure": record.get("failure") or RunFailure(FailureKind.INTERRUPTED, error).as_json(),
        "completed_at": record.get("completed_at") or now_iso(),
        "model": record.get("model"),
        "source": source or record.get("source") or "",
        "first_seq": record.get("first_seq"),
        "last_seq": record.get("last_seq"),
    }


def _last_prompt(meta: Mapping[str, Any]) -> str | None:
    """The last user message of the session's last run (the reaped one: it was running)."""
    last = meta.get("last_input")
    messages = last.get("messages") if isinstance(last, dict) else None
    if not isinstance(messages, list):
        return None
    users = [
        m.get("content")
        for m in messages
        if isinstance(m, dict) and str(m.get("role", "")).lower() not in ("assistant", "system")
    ]
    return str(users[-1]) if users and users[-1] is not None else None
