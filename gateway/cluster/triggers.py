"""Triggers in cluster mode: the API's triggers in PostgreSQL, and one ledger of fires.

Design. Embedded, a trigger file is both the definition and the bookkeeping of its fires, and
the scheduler arms each trigger from "now" and from its `last_fired`, re-arming it after every
fire from what the fire wrote. Neither survives several replicas: they would each fire every
instant, and their clocks and their views of the file differ. So in cluster mode:

- Definitions. A trigger created through the API of any replica lives in the `triggers` table
  (`DatabaseTriggerStore`), in the scope of the trigger file the request named (relative to the
  trigger folder, so replicas with their own folders name it alike); list, get, update and
  delete read and write the table, so every replica sees and edits the same triggers. An edit
  locks the scope's rows, writes each changed row only over the version it read (`version`),
  and sends `trigger_changed`: the other replicas reschedule within milliseconds, and poll
  every POLL_S in case a signal was lost. Every trigger defined in the table is scheduled by
  every replica. Trigger files on disk stay what they are: each replica schedules its own
  (the default file, the extra ones, the discovered ones) and lists them with the scope's
  database triggers; an API edit of a trigger defined in this replica's file is written to that
  file, like embedded, and every other edit goes to the database.
- Instants. Every replica must name the same instants, so they come from the schedule alone
  (`arm`, `advance`): an interval on the grid of the trigger's `created_at` (a file entry
  without one: of the Unix epoch), daily and cron on their wall times, a one-shot at its `at`.
  A replica arms a trigger at the first instant after now when it first sees it (or sees it
  changed), then walks the instants one by one: an instant is settled (claimed here, or found
  claimed) before the next is armed, so none is skipped while a replica runs, however late it
  gets (a trigger whose runs outlast its period falls behind, its instants firing late and in
  order, where embedded skips those that came due during a run). Instants missed while every
  replica was down follow the embedded rule: not caught up; a one-shot whose `at` passed
  unfired fires at once. "Now" is the database's: the scheduler's clock is this replica's
  clock corrected by its measured offset to the database's `now()`.
- Fires. A due instant is claimed with `INSERT INTO trigger_fires ... ON CONFLICT DO NOTHING`
  (`DatabaseFireLedger`), by every replica, with no leader: the primary key (trigger_id,
  scheduled_for) makes a second fire of an instant impossible, and only the claimer runs it.
  A file trigger's fires go through the same ledger under the trigger's id, so replicas
  reading the same file fire each instant once; the file is not written (its fires are in the
  table). The fire's row follows its run: running, then completed, error or interrupted (the
  gateway stopped under it). A claim is fenced by the replica's epoch. When a replica is
  reaped, its running fires become `interrupted` (the `on_reap` hook: only rows of an epoch
  older than the replica's current one) and are never re-run: their instant is taken.
- A trigger's session. A trigger's runs continue one session, as embedded; the session lives
  on the replica that ran it (its home: codex resumes a thread from that machine's files). So
  while its home replica is alive only the home claims the trigger's instants (another replica
  that finds an instant due defers, and looks again shortly: if the home has claimed it by
  then, it moves on); once the home's lease has expired, any replica claims the instant and
  starts a new session there, as embedded when a trigger's session is gone. A run is never
  forwarded to another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gateway.automation.ledger import Claimed, Fire, NotYet, Outcome, short
from gateway.automation.schedule import next_fire
from gateway.automation.store import Changed, TriggerStore
from gateway.automation.triggers import (
    Trigger,
    TriggerDocument,
    TriggerFileError,
    TriggerFiles,
    parse_timestamp,
)
from gateway.clock import Clock, iso
from gateway.cluster.node import ClusterNode
from gateway.cluster.replicas import FENCE, Connection
from gateway.cluster.signals import notify
from gateway.config import TriggerConfig
from gateway.errors import Conflict, InvalidRequest, StorageUnavailable
from gateway.waiting import first_set

log = logging.getLogger(__name__)

# The scheduler's key for the triggers defined in the database (a source beside the files).
DATABASE_SOURCE = Path("database:triggers")
SIGNAL = "trigger_changed"
# How often the definitions are read again whatever the signals said.
POLL_S = 5.0
# How soon a replica looks again at an instant that the trigger's home replica should claim.
DEFER = timedelta(milliseconds=500)
# While the database cannot be reached: how often a claim or a fire's record is tried again,
# and for how long a finished fire's record is kept trying.
UNREACHABLE_RETRY = timedelta(seconds=1)
RECORD_FOR = timedelta(minutes=5)
# The gateway's bookkeeping of a trigger: columns of the table, never part of its definition.
_STATE = ("last_fired", "gateway_session_id", "last_status", "last_error", "last_attempt_at")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_TEXT = "1970-01-01T00:00:00.000Z"
_STATUS = {"success": "completed", "error": "error", "interrupted": "interrupted"}


class DatabaseClock:
    """This replica's clock corrected to the database's `now()` (measured at every poll)."""

    def __init__(self, base: Clock) -> None:
        self._base = base
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return self._base() + self.offset

    async def sync(self, conn: Connection) -> None:
        before = self._base()
        cursor = await conn.execute("SELECT now()")
        after = self._base()
        row = await cursor.fetchone()
        if row is not None and isinstance(row[0], datetime):
            self.offset = row[0] - (before + (after - before) / 2)


class DatabaseTriggerStore:
    """TriggerStore: the API's triggers in the `triggers` table, the files passed through."""

    def __init__(
        self, files: TriggerFiles, config: TriggerConfig, node: ClusterNode, clock: DatabaseClock
    ) -> None:
        self._files = files
        self._max_per_file = config.max_per_file
        self._node = node
        self._clock = clock
        self._folder = files.resolve(None).parent
        # Every trigger of the table as the scheduler arms it; replaced whole, never mutated,
        # so the scheduler's worker thread may read it.
        self._snapshot: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        node.signals.on(SIGNAL, lambda _message: self._changed.set())

    def scope(self, path: Path) -> str:
        """A trigger file's name in the table: relative to the trigger folder when inside it."""
        try:
            return path.relative_to(self._folder).as_posix()
        except ValueError:
            return str(path)

    def resolve(self, raw: str | None) -> Path:
        return self._files.resolve(raw)

    def scheduled_files(self) -> list[Path]:
        return self._files.scheduled_files()

    def sources(self) -> list[Path]:
        return [*self._files.scheduled_files(), DATABASE_SOURCE]

    def read(self, path: Path) -> TriggerDocument:
        if path == DATABASE_SOURCE:
            return TriggerDocument({"version": 1, "triggers": list(self._snapshot)})
        document = self._files.read(path)
        # An entry without created_at would get this replica's "now" when read, and with it an
        # interval grid of its own: every replica anchors it on the Unix epoch instead.
        entries = [
            {**entry, "created_at": _EPOCH_TEXT}
            if isinstance(entry, dict) and not entry.get("created_at")
            else entry
            for entry in document.entries
        ]
        return TriggerDocument({**document.data, "triggers": entries})

    async def read_scope(self, path: Path) -> TriggerDocument:
        """The file's own triggers, then the scope's database triggers (which win an id)."""
        on_disk = await asyncio.to_thread(self._files.read, path)
        async with self._node.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT entry, last_fired, session_id, last_status, last_error,"
                " last_attempt_at FROM triggers WHERE scope = %s ORDER BY ordinal",
                (self.scope(path),),
            )
            rows = await cursor.fetchall()
        stored = [_with_state(row) for row in rows]
        ids = {entry["id"] for entry in stored}
        kept = [
            entry
            for entry in on_disk.entries
            if not (isinstance(entry, dict) and str(entry.get("id")) in ids)
        ]
        return TriggerDocument({"version": 1, "triggers": [*kept, *stored]})

    def edit(
        self, path: Path, *, client: bool = True
    ) -> contextlib.AbstractAsyncContextManager[TriggerDocument]:
        if not client:  # the scheduler's own edits are of its files
            return self._files.edit(path, client=False)
        return self._edit(path)

    @contextlib.asynccontextmanager
    async def _edit(self, path: Path) -> AsyncIterator[TriggerDocument]:
        """The scope's rows, locked, each change written over the version that was read; and
        the file's own triggers, a change of which is written to the file."""
        scope = self.scope(path)
        try:
            on_disk = await asyncio.to_thread(self._files.read, path)
        except TriggerFileError:
            on_disk = TriggerDocument({"triggers": []})  # its triggers cannot be edited now
        async with self._node.database.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT trigger_id, entry, version, last_fired, session_id, last_status,"
                " last_error, last_attempt_at FROM triggers WHERE scope = %s"
                " ORDER BY ordinal FOR UPDATE",
                (scope,),
            )
            rows = await cursor.fetchall()
            before = {str(row[0]): (_definition(row[1]), int(str(row[2]))) for row in rows}
            in_file = {
                str(entry["id"]): entry
                for entry in on_disk.entries
                if isinstance(entry, dict) and entry.get("id") and str(entry["id"]) not in before
            }
            stored = [_with_state(row[1:2] + row[3:]) for row in rows]
            document = TriggerDocument({"version": 1, "triggers": [*in_file.values(), *stored]})
            yield document
            cap = self._max_per_file
            if len(document.entries) > cap:
                raise InvalidRequest(
                    f"a trigger file holds at most {cap} triggers", field="triggers"
                )
            after: dict[str, dict[str, Any]] = {}
            after_in_file: dict[str, dict[str, Any]] = {}
            for entry in document.entries:
                if isinstance(entry, dict) and entry.get("id"):
                    if str(entry["id"]) in in_file:
                        after_in_file[str(entry["id"])] = entry
                    else:
                        after[str(entry["id"])] = _definition(entry)
            for trigger_id, (_, version) in before.items():
                if trigger_id not in after:
                    await _write(
                        conn,
                        "DELETE FROM triggers WHERE trigger_id = %(id)s AND version = %(version)s",
                        {"id": trigger_id, "version": version},
                    )
            for trigger_id, entry in after.items():
                params = {
                    "id": trigger_id,
                    "scope": scope,
                    "entry": Jsonb(entry),
                    "enabled": bool(entry.get("enabled", True)),
                }
                if trigger_id not in before:
                    cursor = await conn.execute(
                        "INSERT INTO triggers (trigger_id, scope, entry, enabled)"
                        " VALUES (%(id)s, %(scope)s, %(entry)s, %(enabled)s)"
                        " ON CONFLICT (trigger_id) DO NOTHING",
                        params,
                    )
                    if cursor.rowcount != 1:
                        raise Conflict(
                            f"trigger {trigger_id!r} is defined in another trigger file of "
                            "the cluster (or was created there meanwhile): ids are unique "
                            "in the cluster"
                        )
                elif entry != before[trigger_id][0]:
                    await _write(
                        conn,
                        "UPDATE triggers SET entry = %(entry)s, enabled = %(enabled)s,"
                        " version = version + 1, updated_at = now(), next_fire_at = NULL"
                        " WHERE trigger_id = %(id)s AND version = %(version)s",
                        {**params, "version": before[trigger_id][1]},
                    )
            await notify(conn, SIGNAL, scope=scope)
            changed_in_file = {
                trigger_id: after_in_file.get(trigger_id)
                for trigger_id, entry in in_file.items()
                if after_in_file.get(trigger_id) != entry
            }
            if changed_in_file:  # before the commit: a file that refuses it undoes it all
                await self._edit_file(path, changed_in_file)
        self._changed.set()

    async def _edit_file(self, path: Path, changed: dict[str, dict[str, Any] | None]) -> None:
        """Write the API's changes of the file's own triggers (None: deleted) into it."""
        async with self._files.edit(path) as document:
            for trigger_id, entry in changed.items():
                index = document.index(trigger_id)
                if index is None:
                    continue  # gone from the file meanwhile
                if entry is None:
                    del document.entries[index]
                else:
                    document.entries[index] = entry

    async def refresh(self) -> None:
        """Read every trigger of the table again (and the database's time)."""
        async with self._node.database.connection() as conn:
            await self._clock.sync(conn)
            cursor = await conn.execute("SELECT entry FROM triggers ORDER BY ordinal")
            self._snapshot = [dict(row[0]) for row in await cursor.fetchall()]

    async def follow(self, stop: asyncio.Event, changed: Changed) -> None:
        """Reschedule the database's triggers on a signal, and every POLL_S regardless."""
        while not stop.is_set():
            self._changed.clear()
            try:
                await self.refresh()
            except (StorageUnavailable, psycopg.Error) as exc:
                log.warning("cannot read the cluster's triggers (again soon): %s", exc)
            else:
                await changed(DATABASE_SOURCE)
            await first_set(self._changed, stop, timeout_s=POLL_S)


class DatabaseFireLedger:
    """FireLedger: `trigger_fires`, claimed by every replica, each instant by one."""

    reloads_after_fire = False

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def arm(self, trigger: Trigger, now: datetime) -> datetime | None:
        return first_instant(trigger, now)

    def advance(self, trigger: Trigger, instant: datetime) -> datetime | None:
        return instant_after(trigger, instant)

    async def claim(self, fire: Fire) -> Claimed | None:
        try:
            return await self._claim(fire)
        except StorageUnavailable:
            # The database is away: ask again shortly (not the doubling hold of a broken
            # file), and fire what came due meanwhile once it is back.
            raise NotYet(UNREACHABLE_RETRY) from None

    async def _claim(self, fire: Fire) -> Claimed | None:
        replicas = self._node.replicas
        params: dict[str, Any] = {
            **replicas.fence(),
            "id": fire.trigger.id,
            "at": fire.scheduled_for,
            "next": self._next(fire),
        }
        session_id: str | None = None
        async with self._node.database.connection() as conn, conn.transaction():
            if fire.source == DATABASE_SOURCE:
                cursor = await conn.execute(
                    "SELECT t.enabled, t.session_id, t.session_home,"
                    " EXISTS (SELECT 1 FROM replicas r WHERE r.replica_id = t.session_home"
                    "  AND r.state = 'alive' AND r.lease_until > now()),"
                    " EXISTS (SELECT 1 FROM trigger_fires f WHERE f.trigger_id = t.trigger_id"
                    "  AND f.status = 'running' AND f.scheduled_for < %(at)s)"
                    " FROM triggers t WHERE t.trigger_id = %(id)s",
                    params,
                )
                row = await cursor.fetchone()
                if row is None or not row[0]:
                    return None  # deleted or disabled meanwhile
                home = row[2]
                if home is not None and home != replicas.replica_id and row[3]:
                    raise NotYet(DEFER)  # its home replica claims it while it is alive
                if home is None and row[4]:
                    # Its first fire still runs and will make its session (and so its home):
                    # the next waits for that, or would start a session of its own elsewhere.
                    raise NotYet(DEFER)
                session_id = (
                    str(row[1]) if row[1] is not None and home == replicas.replica_id else None
                )
            cursor = await conn.execute(
                "INSERT INTO trigger_fires"
                " (trigger_id, scheduled_for, status, replica_id, replica_epoch)"
                " SELECT %(id)s, %(at)s, 'running', %(replica)s, %(epoch)s"
                f" WHERE {FENCE} ON CONFLICT DO NOTHING RETURNING fired_at",
                params,
            )
            row = await cursor.fetchone()
            if row is None:
                return None  # another replica's (or this replica was reaped)
            if fire.source == DATABASE_SOURCE:
                await conn.execute(
                    "UPDATE triggers SET last_attempt_at = now(), next_fire_at = %(next)s"
                    " WHERE trigger_id = %(id)s",
                    params,
                )
        fired_at = row[0]
        return Claimed(session_id, iso(fired_at) if isinstance(fired_at, datetime) else "")

    def _next(self, fire: Fire) -> datetime | None:
        try:
            return self.advance(fire.trigger, fire.scheduled_for)
        except (ValueError, OverflowError, ArithmeticError):
            return None

    async def finish(self, fire: Fire, claimed: Claimed, outcome: Outcome) -> None:
        """Record the end (again every UNREACHABLE_RETRY while the database is away, for up
        to RECORD_FOR: a run that ends during an outage is recorded once it is back)."""
        deadline = asyncio.get_running_loop().time() + RECORD_FOR.total_seconds()
        while True:
            try:
                await self._finish(fire, outcome)
                return
            except StorageUnavailable:
                # Interrupted (the gateway stops): tried once, the reaper or this replica's
                # next registration marks it otherwise.
                if outcome.status == "interrupted" or asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(UNREACHABLE_RETRY.total_seconds())

    async def _finish(self, fire: Fire, outcome: Outcome) -> None:
        params: dict[str, Any] = {
            **self._node.replicas.fence(),
            "id": fire.trigger.id,
            "at": fire.scheduled_for,
            "status": _STATUS.get(outcome.status, "error"),
            "last_status": outcome.status,
            "error": None if outcome.error is None else short(outcome.error),
            "run": outcome.run_id,
            "session": outcome.session_id,
            "success": outcome.status == "success",
        }
        async with self._node.database.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "UPDATE trigger_fires SET status = %(status)s, run_id = %(run)s,"  # noqa: S608  # FENCE is our constant; values are parameters
                " session_id = %(session)s, error = %(error)s, finished_at = now()"
                " WHERE trigger_id = %(id)s AND scheduled_for = %(at)s"
                " AND replica_id = %(replica)s AND replica_epoch = %(epoch)s"
                f" AND status = 'running' AND {FENCE}",
                params,
            )
            if cursor.rowcount != 1 or fire.source != DATABASE_SOURCE:
                return  # a file trigger; or reaped meanwhile: its fire stays interrupted
            if outcome.status == "success" and fire.trigger.schedule.mode == "once":
                await conn.execute("DELETE FROM triggers WHERE trigger_id = %(id)s", params)
                await notify(conn, SIGNAL, trigger_id=fire.trigger.id)
                return
            await conn.execute(
                "UPDATE triggers SET last_status = %(last_status)s, last_error = %(error)s,"
                " last_fired = CASE WHEN %(success)s THEN now() ELSE last_fired END,"
                " session_id = coalesce(%(session)s, session_id),"
                " session_home = CASE WHEN %(session)s::text IS NULL THEN session_home"
                "  ELSE %(replica)s END"
                " WHERE trigger_id = %(id)s",
                params,
            )


def first_instant(trigger: Trigger, now: datetime) -> datetime | None:
    """The first instant of a trigger after `now`: from its schedule alone, so that every
    replica names the same ones."""
    if not trigger.enabled:
        return None
    schedule = trigger.schedule
    if schedule.mode == "once":
        return schedule.at  # overdue: due at once, and its key is still `at`
    return next_fire(schedule, now=now, last_fired=None, created_at=_anchor(trigger))


def instant_after(trigger: Trigger, instant: datetime) -> datetime | None:
    """The trigger's instant after a settled one (None: a one-shot has no other)."""
    schedule = trigger.schedule
    if schedule.mode == "once" or not trigger.enabled:
        return None
    return next_fire(schedule, now=instant, last_fired=None, created_at=_anchor(trigger))


async def interrupt_fires(conn: Connection, replica_id: str) -> None:
    """Reap hook: a dead replica's running fires are interrupted (and never run again)."""
    await conn.execute(
        "UPDATE trigger_fires f SET status = 'interrupted', finished_at = now(),"
        " error = 'the replica running it was lost'"
        " FROM replicas r WHERE r.replica_id = %s AND f.replica_id = r.replica_id"
        " AND f.status = 'running' AND f.replica_epoch < r.epoch",
        (replica_id,),
    )


def cluster_triggers(
    node: ClusterNode, files: TriggerFiles, config: TriggerConfig, clock: Clock
) -> tuple[TriggerStore, DatabaseFireLedger, DatabaseClock]:
    """The cluster's trigger store, fire ledger and database-corrected clock, wired to the
    node (its signals and its reaper)."""
    database_clock = DatabaseClock(clock)
    node.replicas.on_reap(interrupt_fires)
    return (
        DatabaseTriggerStore(files, config, node, database_clock),
        DatabaseFireLedger(node),
        database_clock,
    )


async def _write(conn: Connection, query: str, params: dict[str, Any]) -> None:
    cursor = await conn.execute(query.encode(), params)
    if cursor.rowcount != 1:
        raise Conflict("the trigger was changed meanwhile through another replica: try again")


def _definition(entry: object) -> dict[str, Any]:
    """A trigger's entry without the gateway's bookkeeping."""
    if not isinstance(entry, dict):
        return {}
    return {key: value for key, value in entry.items() if key not in _STATE}


def _with_state(row: tuple[Any, ...]) -> dict[str, Any]:
    """(entry, last_fired, session_id, last_status, last_error, last_attempt_at) as the API
    shows a trigger."""
    entry, last_fired, session_id, status, error, attempt = row
    shown = dict(entry)
    shown.update(
        last_fired=_shown(last_fired),
        gateway_session_id=session_id,
        last_status=status,
        last_error=error,
        last_attempt_at=_shown(attempt),
    )
    return shown


def _shown(moment: object) -> str | None:
    return iso(moment.astimezone(UTC)) if isinstance(moment, datetime) else None


def _anchor(trigger: Trigger) -> datetime:
    """Where an interval's grid starts: the trigger's created_at (the Unix epoch for a file
    entry without one, see `read`)."""
    created = trigger.entry.get("created_at")
    if isinstance(created, str) and created:
        with contextlib.suppress(ValueError):
            return parse_timestamp(created)
    return _EPOCH
