"""The cluster's session store: this replica's sessions in local files, all of them in PostgreSQL.

A session lives on its home replica (its logs, workspace and codex thread are there), which writes
its files exactly as the files store does (meta.json and the logs stay the reference's). What the
other replicas must see is written behind, into the `sessions` and `runs` tables:

- `save` stays synchronous (the runner calls it from synchronous code): the local save, then the
  session is marked dirty. The syncer (`run`, a background loop) writes each dirty session's row
  and its changed run records in one transaction, fenced by this replica's epoch. When the
  database is down it retries with backoff and never drops a write: a run that started before
  an outage is recorded once the database is back. `settle` waits for the syncer to have written
  a session's current version (the runner awaits it, bounded, before answering).
- `exclusive` claims the session for the whole cluster, `UPDATE ... SET active_run_id = $run
  WHERE active_run_id IS NULL` (SessionBusy when another run holds it; StorageUnavailable, 503,
  when the database cannot be reached, before any agent starts). The release is written by the
  syncer with the run's last state; a claim of this replica's own finished run still pending
  release takes its place.
- `listing` is one indexed query over every replica's sessions.
- A dead replica's sessions: the reaper's hook (`_reap`) marks their running runs `interrupted`
  in both tables, with the same domain logic as the files store's crash reconciliation.

Fencing: a transaction of the syncer first takes this replica's `replicas` row at its epoch FOR
SHARE (FENCE's condition, with a lock): a reaper, which updates that row, waits for it, and once
this replica was reaped nothing it writes lands until it registered again with a new epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from gateway.clock import now_iso
from gateway.cluster.node import ClusterNode
from gateway.cluster.replicas import FENCE
from gateway.errors import SessionBusy, SessionNotFound, StorageFailed, StorageUnavailable
from gateway.sessions.codec import decode_run, decode_session, encode_session
from gateway.sessions.files import FileSessionStore
from gateway.sessions.model import JsonObject, RunRecord, RunStatus, Session, SessionStatus
from gateway.sessions.store import SessionStore
from gateway.waiting import first_set

log = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[TupleRow]

BATCH = 200
"""Sessions written per transaction."""
RETRY = wait_exponential(multiplier=0.1, min=0.1, max=5.0)
"""The syncer's wait between attempts while the database is down (tenacity's backoff)."""
STOP_GRACE_S = 5.0
# How long a save waits for the write-behind when nobody settles it: a short run's saves (its
# start, its thread, its end) become one write.
COALESCE_S = 0.025
"""At shutdown, how long the syncer keeps trying to write what is left (the local files keep
it either way, and the next start pushes it)."""
LOST_ERROR = "replica {} was lost during this run"
UNREADABLE = "unreadable"  # the status of a session whose meta.json its home cannot read
MAX_PID = 2**31  # runs.agent_pid is an integer column
# A NUL escaped in JSON text (not an escaped backslash followed by "u0000"): jsonb cannot hold it.
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")

_HOLD = (
    "SELECT 1 FROM replicas WHERE replica_id = %(replica)s AND epoch = %(epoch)s"
    " AND state = 'alive' FOR SHARE"
)

_UPSERT_SESSION = (
    "INSERT INTO sessions AS s (session_id, codex_session_id, home_replica, replica_epoch,"
    " secure, status, active_run_id, created_at, updated_at, meta, dir, tenant)"
    " VALUES (%(id)s, %(thread)s, %(replica)s, %(epoch)s, %(secure)s, %(status)s, %(active)s,"
    " coalesce(%(created)s, now()), coalesce(%(updated)s, now()), %(meta)s::jsonb, %(dir)s,"
    " %(tenant)s)"
    " ON CONFLICT (session_id) DO UPDATE SET codex_session_id = EXCLUDED.codex_session_id,"
    " home_replica = EXCLUDED.home_replica, replica_epoch = EXCLUDED.replica_epoch,"
    " secure = EXCLUDED.secure, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,"
    " meta = EXCLUDED.meta, dir = EXCLUDED.dir, tenant = EXCLUDED.tenant"
)
# A startup push: only where the database's row is older (or missing).
_PUSH_SESSION = _UPSERT_SESSION + " WHERE s.updated_at < EXCLUDED.updated_at"

_UPSERT_RUN = (
    "INSERT INTO runs AS r (run_id, session_id, replica_id, replica_epoch, status, source,"
    " agent_pid, started_at, completed_at, record)"
    " VALUES (%(run)s, %(id)s, %(replica)s, %(epoch)s, %(status)s, %(source)s, %(pid)s,"
    " %(started)s, %(completed)s, %(record)s::jsonb)"
    " ON CONFLICT (run_id) DO UPDATE SET replica_id = EXCLUDED.replica_id,"
    " replica_epoch = EXCLUDED.replica_epoch, status = EXCLUDED.status,"
    " source = EXCLUDED.source, agent_pid = EXCLUDED.agent_pid,"
    " started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,"
    " record = EXCLUDED.record"
    " WHERE r.session_id = EXCLUDED.session_id AND r.record IS DISTINCT FROM EXCLUDED.record"
)

_RELEASE = (
    "UPDATE sessions SET active_run_id = NULL WHERE session_id = %(id)s AND active_run_id = %(run)s"
)

# One statement: the row is inserted for a session the syncer has not written yet, and the claim
# succeeds only on a free session (or on one held by this replica's own finished run whose
# release is still pending), and only while this replica holds its epoch.
_CLAIM = (
    "INSERT INTO sessions AS s (session_id, codex_session_id, home_replica, replica_epoch,"
    " secure, status, active_run_id, created_at, updated_at, meta, dir, tenant)"
    " SELECT %(id)s, %(thread)s, %(replica)s, %(epoch)s, %(secure)s, %(status)s, %(run)s,"
    " coalesce(%(created)s, now()), coalesce(%(updated)s, now()), %(meta)s::jsonb, %(dir)s,"
    " %(tenant)s"
    f" WHERE {FENCE}"
    " ON CONFLICT (session_id) DO UPDATE SET active_run_id = EXCLUDED.active_run_id,"
    " replica_epoch = EXCLUDED.replica_epoch"
    " WHERE (s.active_run_id IS NULL OR s.active_run_id = %(pending)s)"
    f" AND {FENCE}"
    " RETURNING s.session_id"
)

_LIST = (
    "SELECT session_id, home_replica, secure, status, updated_at, dir, meta FROM sessions"
    " WHERE {where} ORDER BY updated_at DESC, session_id DESC LIMIT %(limit)s"
)


@dataclass
class _Write:
    """A session's state as the syncer writes it, taken on the loop at one version."""

    session: Session
    version: int
    session_row: dict[str, Any]
    run_rows: list[dict[str, Any]]
    marks: dict[str, int]
    release: str | None


class _Fenced(Exception):
    """This replica's epoch is gone (it was reaped): nothing is written until it registered
    again."""


class ClusterSessionStore(SessionStore):
    """This replica's sessions (a files store) mirrored into the cluster's database."""

    def __init__(self, files: FileSessionStore, node: ClusterNode) -> None:
        self._files = files
        self._node = node
        self._db = node.database
        self._replicas = node.replicas
        self._dirty: dict[str, Session] = {}
        self._versions: dict[str, int] = {}
        self._synced: dict[str, int] = {}
        self._releases: dict[str, str] = {}  # session id -> the finished run to release
        self._run_marks: dict[str, dict[str, int]] = {}  # session -> run id -> record's hash
        self._pushing: list[Session] = []
        self._unreadable: dict[str, Session] = {}
        self._wake = asyncio.Event()
        self._wake_later: asyncio.TimerHandle | None = None
        # Sessions created here and never written: no other replica can know their ids.
        self._fresh: set[str] = set()
        self._write_ok = False
        self._progress = asyncio.Condition()
        self._running = False
        self.writes = 0
        """Sessions written to the database (tests and the lead's benchmarks read it)."""
        node.replicas.on_reap(self._reap)
        node.replicas.on_fenced(self._fenced)

    @property
    def replica_id(self) -> str:
        return self._node.replica_id

    # What is this replica's: the files store.

    def load(self) -> None:
        """Index and reconcile the local sessions (their saves reach the database), and push
        every local session to the database once, from the syncer: where its row is older."""
        self._files.load()
        self._pushing = list(self._files)  # unreadable ones too: listed, as the files store does
        self._unreadable = {s.id: s for s in self._pushing if s.error is not None}
        self._wake.set()

    def close(self) -> None:
        self._files.close()

    def __iter__(self) -> Iterator[Session]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def resolve(self, session_id: str) -> Session:
        return self._files.resolve(session_id)

    def create(
        self,
        *,
        secure: bool,
        metadata: dict[str, Any] | None = None,
        workspace: str | None = None,
        persist: bool = True,
        tenant: str | None = None,
    ) -> Session:
        session = self._files.create(
            secure=secure, metadata=metadata, workspace=workspace, persist=persist, tenant=tenant
        )
        self._fresh.add(session.id)
        if persist:
            self._mark(session)
        return session

    def save(self, session: Session) -> None:
        self._files.save(session)
        self._mark(session)

    async def run_history(
        self, session: Session, *, max_bytes: int | None = None
    ) -> list[RunRecord]:
        return await self._files.run_history(session, max_bytes=max_bytes)

    def thread_owner(self, thread_id: str) -> Session | None:
        return self._files.thread_owner(thread_id)

    def thread_is_secure(self, thread_id: str) -> bool:
        return self._files.thread_is_secure(thread_id)

    def remember_thread(self, session: Session) -> None:
        self._files.remember_thread(session)

    def busy(self, session: Session) -> bool:
        return self._files.busy(session)

    def active_run(self, session: Session) -> str | None:
        return self._files.active_run(session)

    # What every replica reads: the database.

    async def listing(
        self,
        *,
        limit: int,
        since: datetime | None,
        include_secure: bool,
        tenant: str | None = None,
    ) -> list[Session]:
        """Every replica's sessions, newest first (one query on the updated_at index, or on the
        tenant's); this replica's own as its files store has them now."""
        where = ["TRUE"] if include_secure else ["NOT secure"]
        params: dict[str, Any] = {"limit": limit}
        if tenant is not None:
            where.append("tenant = %(tenant)s")
            params["tenant"] = tenant
        if since is not None:
            where.append("updated_at > %(since)s")
            params["since"] = since
        query = _LIST.format(where=" AND ".join(where))
        try:
            async with self._db.connection() as conn:
                cursor = await conn.execute(query, params)
                rows = await cursor.fetchall()
        except psycopg.Error as exc:
            raise StorageUnavailable(f"the cluster database is unavailable: {exc}") from exc
        listed = []
        for session_id, home, secure, status, updated_at, directory, meta in rows:
            local = self._files_session(str(session_id)) if home == self.replica_id else None
            listed.append(
                local or _listed(str(session_id), bool(secure), status, updated_at, directory, meta)
            )
        return listed

    def _files_session(self, session_id: str) -> Session | None:
        try:
            return self._files.resolve(session_id)
        except SessionNotFound:  # not indexed here (or unreadable)
            return self._unreadable.get(session_id)

    # One run per session, across the cluster.

    @contextlib.asynccontextmanager
    async def exclusive(self, session: Session, run_id: str) -> AsyncIterator[None]:
        async with self._files.exclusive(session, run_id):
            await self._claim(session, run_id)
            try:
                yield
            finally:
                self._releases[session.id] = run_id  # written with the run's last state
                self._mark(session)

    async def _claim(self, session: Session, run_id: str) -> None:
        if session.id in self._fresh and self._write_ok and self._node.signals.connected.is_set():
            # A session made for this run: nobody else knows its id, so there is nothing to
            # claim it from; its row is written, with its active run, by the next write. (The
            # database known to be reachable: otherwise the claim below says so, 503.)
            return
        params = {
            **self._session_row(session, _document(session)),
            "run": run_id,
            "pending": self._releases.get(session.id),
        }
        try:
            async with self._db.connection() as conn:
                cursor = await conn.execute(_CLAIM.encode(), params)
                claimed = await cursor.fetchone() is not None
                if not claimed:
                    cursor = await conn.execute(f"SELECT {FENCE}".encode(), params)
                    row = await cursor.fetchone()
                    if row is None or not row[0]:
                        raise StorageUnavailable(
                            f"replica {self.replica_id} is re-joining the cluster"
                        )
        except psycopg.Error as exc:
            raise StorageUnavailable(f"the cluster database is unavailable: {exc}") from exc
        if not claimed:
            raise SessionBusy(session.id)
        if self._releases.get(session.id) is not None:
            del self._releases[session.id]  # taken over by this claim

    # The write-behind.

    def _mark(self, session: Session) -> None:
        """The session changed: its next version is for the syncer to write, within
        COALESCE_S (the saves of a short run become one write) or at once for a `settle`."""
        self._dirty[session.id] = session
        self._versions[session.id] = self._versions.get(session.id, 0) + 1
        if self._wake_later is None and not self._wake.is_set():
            self._wake_later = asyncio.get_running_loop().call_later(COALESCE_S, self._wake_now)

    def _wake_now(self) -> None:
        if self._wake_later is not None:
            self._wake_later.cancel()
            self._wake_later = None
        self._wake.set()

    async def settle(self, session: Session) -> None:
        """Until the syncer wrote the session's current version (at once when it does not run)."""
        self._wake_now()
        wanted = self._versions.get(session.id, 0)
        async with self._progress:
            await self._progress.wait_for(
                lambda: not self._running or self._synced.get(session.id, 0) >= wanted
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Write dirty sessions until `stop`, then what is left (within STOP_GRACE_S)."""
        self._running = True
        failures = 0
        stopped_at: float | None = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._dirty and not self._pushing:
                    if stop.is_set():
                        return
                    self._wake.clear()
                    await first_set(stop, self._wake)
                    continue
                try:
                    await self._write_some()
                    failures = 0
                except (StorageUnavailable, psycopg.Error, _Fenced) as exc:
                    self._write_ok = False
                    failures += 1
                    if failures == 1 or failures % 50 == 0:
                        log.warning("sessions wait to be written to the database: %s", exc)
                    if stop.is_set():
                        stopped_at = stopped_at if stopped_at is not None else loop.time()
                        if loop.time() - stopped_at > STOP_GRACE_S:
                            log.warning(
                                "%d sessions not written to the database: the next start "
                                "pushes them",
                                len(self._dirty),
                            )
                            return
                    await _nap(stop, _delay(failures))
        finally:
            self._running = False
            async with self._progress:
                self._progress.notify_all()

    async def _write_some(self) -> None:
        if self._dirty:
            chosen = list(self._dirty.values())[:BATCH]
            writes = [self._snapshot(session) for session in chosen]
            await self._commit(writes, push=False)
            self._write_ok = True
            for write in writes:
                self._fresh.discard(write.session.id)  # in the database: others may know it
                if self._versions.get(write.session.id) == write.version:
                    self._dirty.pop(write.session.id, None)
                self._synced[write.session.id] = write.version
                self._run_marks[write.session.id] = write.marks
                if write.release is not None and self._releases.get(write.session.id) == (
                    write.release
                ):
                    del self._releases[write.session.id]
            async with self._progress:
                self._progress.notify_all()
            return
        chosen = self._pushing[:BATCH]
        writes = [self._snapshot(session, every_run=True) for session in chosen]
        await self._commit(writes, push=True)
        del self._pushing[: len(chosen)]

    async def _commit(self, writes: list[_Write], *, push: bool) -> None:
        """Write them in one transaction; an outage (StorageUnavailable, _Fenced) is raised for
        the syncer to retry. A row the database refuses (not an outage: a value it cannot hold)
        must not hold back every other session: then each is written alone, and one refused
        alone is logged and left to the local files."""
        try:
            await self._write(writes, push=push)
            return
        except psycopg.Error as exc:
            if _outage(exc):
                raise
        for write in writes:
            try:
                await self._write([write], push=push)
            except psycopg.Error as exc:
                if _outage(exc):
                    raise
                log.error("session %s: the database refuses it: %s", write.session.id, exc)

    def _snapshot(self, session: Session, *, every_run: bool = False) -> _Write:
        # An unreadable session (the push at startup) is listed as such, never read nor written.
        document = _document(session) if session.error is None else {"session_id": session.id}
        marks = {}
        runs = []
        known = {} if every_run else self._run_marks.get(session.id, {})
        for record in document.get("runs") or ():
            if not isinstance(record, dict):
                continue
            run_id = record.get("run_id")
            if not isinstance(run_id, str) or not run_id:
                continue
            text = _json(record)
            marks[run_id] = hash(text)
            if known.get(run_id) != marks[run_id]:
                runs.append(self._run_row(session, record, text))
        return _Write(
            session=session,
            version=self._versions.get(session.id, 0),
            session_row=self._session_row(session, document),
            run_rows=runs,
            marks=marks,
            release=self._releases.get(session.id),
        )

    def _session_row(self, session: Session, document: JsonObject) -> dict[str, Any]:
        return {
            **self._replicas.fence(),
            "id": session.id,
            "thread": session.codex_session_id,
            "secure": session.secure,
            "status": UNREADABLE
            if session.error is not None
            else str(session.status) or SessionStatus.IDLE.value,
            "active": self._files.active_run(session),
            "created": _moment(session.created_at),
            "updated": _moment(session.updated_at) or session.modified_at,
            "meta": _json(document),
            "dir": str(session.dir),
            "tenant": session.owner,
        }

    def _run_row(self, session: Session, record: JsonObject, text: str) -> dict[str, Any]:
        pid = record.get("agent_pid")
        source = record.get("source")
        status = record.get("status")
        return {
            **self._replicas.fence(),
            "run": record["run_id"],
            "id": session.id,
            "status": status if isinstance(status, str) else "",
            "source": source if isinstance(source, str) else None,
            "pid": pid if isinstance(pid, int) and 0 < pid < MAX_PID else None,
            "started": _moment(record.get("started_at")),
            "completed": _moment(record.get("completed_at")),
            "record": text,
        }

    async def _write(self, writes: list[_Write], *, push: bool) -> None:
        fence = self._replicas.fence()
        async with self._db.connection() as conn:
            if push:
                async with conn.transaction():
                    await self._hold(await conn.execute(_HOLD.encode(), fence), fence)
                    await self._statements(conn, writes, fence, push=True)
            else:
                # One round trip: every statement sent at once, the hold's answer read last;
                # a hold that failed raises inside the transaction, which rolls the rest back.
                async with conn.pipeline(), conn.transaction():
                    held = await conn.execute(_HOLD.encode(), fence)
                    await self._statements(conn, writes, fence, push=False)
                    await self._hold(held, fence)
        self.writes += len(writes)

    async def _hold(self, cursor: psycopg.AsyncCursor[TupleRow], fence: dict[str, object]) -> None:
        if await cursor.fetchone() is None:
            raise _Fenced(f"replica {self.replica_id} epoch {fence['epoch']} was reaped")

    async def _statements(
        self, conn: Connection, writes: list[_Write], fence: dict[str, object], *, push: bool
    ) -> None:
        upsert = (_PUSH_SESSION if push else _UPSERT_SESSION).encode()
        for write in writes:
            # The epoch is the one just held, whatever the snapshot saw.
            cursor = await conn.execute(upsert, {**write.session_row, **fence})
            if push and cursor.rowcount == 0:
                continue  # the database's row is as new: its records too
            for run_row in write.run_rows:
                await conn.execute(_UPSERT_RUN.encode(), {**run_row, **fence})
            if write.release is not None:
                await conn.execute(
                    _RELEASE.encode(), {"id": write.session.id, "run": write.release}
                )

    # A dead replica's sessions.

    async def _reap(self, conn: Connection, replica_id: str) -> None:
        """In the reaper's transaction: the running runs of `replica_id`'s sessions written
        before its current epoch become `interrupted`, in both tables, and its sessions are
        freed."""
        error = LOST_ERROR.format(replica_id)
        cursor = await conn.execute(
            "SELECT s.session_id, s.secure, s.dir, s.meta FROM sessions s"
            " JOIN replicas r ON r.replica_id = s.home_replica"
            " WHERE s.home_replica = %s AND s.replica_epoch < r.epoch"
            " AND (s.active_run_id IS NOT NULL OR s.status = 'running')"
            " FOR UPDATE OF s",
            (replica_id,),
        )
        for session_id, secure, directory, meta in await cursor.fetchall():
            document = meta if isinstance(meta, dict) else {"session_id": session_id}
            session = decode_session(
                str(session_id), Path(directory or "."), document, secure=bool(secure)
            )
            stamp = now_iso()
            running = [r for r in session.runs if r.status == RunStatus.RUNNING]
            session.interrupt(error, stamp)
            session.updated_at = stamp
            encoded = encode_session(session)
            await conn.execute(
                "UPDATE sessions SET status = %s, active_run_id = NULL, updated_at = now(),"
                " meta = %s::jsonb WHERE session_id = %s",
                (str(session.status), _json(encoded), session_id),
            )
            for record in running:
                if record.run_id and record.stored is not None:
                    await conn.execute(
                        "UPDATE runs SET status = %s, agent_pid = NULL, completed_at = now(),"
                        " record = %s::jsonb WHERE run_id = %s AND session_id = %s",
                        (str(record.status), _json(record.stored), record.run_id, session_id),
                    )
        # A running record the meta did not have (written by an older version of it).
        await conn.execute(
            "UPDATE runs u SET status = 'interrupted', agent_pid = NULL, completed_at = now(),"
            " record = (u.record - 'agent_pid') || jsonb_build_object('status', 'interrupted',"
            " 'error', %(error)s::text, 'completed_at', %(stamp)s::text, 'failure',"
            " jsonb_build_object('kind', 'interrupted', 'message', %(error)s::text,"
            " 'retry_after_ms', NULL))"
            " FROM replicas r WHERE r.replica_id = u.replica_id AND u.replica_id = %(replica)s"
            " AND u.status = 'running' AND u.replica_epoch < r.epoch",
            {"error": error, "stamp": now_iso(), "replica": replica_id},
        )

    async def _fenced(self) -> None:
        """This replica was reaped: the cluster recorded its running runs `interrupted` and
        acted on it (their slots freed, their webhooks queued). Runs that ended here since then
        take the reaper's record, so that what this replica writes once registered again never
        overwrites it. (The runner's own fenced hook stops the runs still going.)"""
        log.warning(
            "replica %s: its session writes wait until it registered again", self.replica_id
        )
        try:
            async with self._db.connection() as conn:
                cursor = await conn.execute(
                    "SELECT session_id, run_id, record FROM runs WHERE replica_id = %s"
                    " AND replica_epoch = %s AND status = 'interrupted'",
                    (self.replica_id, self._replicas.epoch),
                )
                interrupted = await cursor.fetchall()
        except (StorageUnavailable, psycopg.Error) as exc:
            log.warning(
                "replica %s: cannot read what the reaper recorded: %s", self.replica_id, exc
            )
            return
        for session_id, run_id, stored in interrupted:
            session = self._files_session(str(session_id))
            if session is None or not isinstance(stored, dict):
                continue
            reaped = decode_run(stored)
            for record in session.runs:
                if record.run_id == run_id and record.status != RunStatus.INTERRUPTED:
                    record.status, record.error = RunStatus.INTERRUPTED, reaped.error
                    record.failure = reaped.failure
                    record.completed_at, record.agent_pid = reaped.completed_at, None
                    if session.runs[-1] is record:
                        session.status = SessionStatus.INTERRUPTED
                    try:
                        self.save(session)
                    except StorageFailed:
                        log.exception("session %s: could not record its reaped run", session_id)


def _json(document: JsonObject) -> str:
    """The document as jsonb text; a NUL in a string (which jsonb refuses) reads U+FFFD there."""
    text = json.dumps(document, separators=(",", ":"))
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def _outage(exc: psycopg.Error) -> bool:
    """The database or the connection failed (retry), rather than refused what was written."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def _document(session: Session) -> JsonObject:
    """The session's meta.json document as last saved (or as created, before its first save)."""
    if session.stored is None:
        return encode_session(session)
    return session.stored


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _listed(
    session_id: str,
    secure: bool,
    status: object,
    updated_at: object,
    directory: object,
    meta: object,
) -> Session:
    """Another replica's session as its row has it (its files are on its home replica)."""
    path = Path(str(directory or ""))
    if status == UNREADABLE or not isinstance(meta, dict):
        session = Session(session_id, path, secure, error="unreadable on its home replica")
    else:
        session = decode_session(session_id, path, meta, secure=secure)
    if isinstance(updated_at, datetime):  # in UTC, as the home shows it (not the server's zone)
        session.modified_at = updated_at.astimezone(UTC)
    return session


def _delay(failures: int) -> float:
    """The wait after the `failures`th failure in a row."""
    state = RetryCallState(AsyncRetrying(), None, (), {})
    state.attempt_number = failures
    return float(RETRY(state))


async def _nap(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds` before the next attempt; once stopping, at most half a second."""
    if stop.is_set():
        await asyncio.sleep(min(seconds, 0.5))
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
