"""The trigger scheduler: which triggers exist, when each fires next, firing them, and the CRUD
operations of the trigger API (each of which reschedules at once).

Time comes from an injectable clock so tests can step it. The loop sleeps until the earliest
next fire, at most a minute at a time (no timer to overflow however far away a fire is), and
wakes early when a file changes on disk (watchfiles) or through the API. A trigger fires through
the same runner and concurrency limit as every run, waiting for a slot, never dropped; while it
runs it is marked in flight, and its attempt is written to the file before the run starts, so a
reload mid-run cannot fire it twice. Who runs a due instant, where its fire is recorded and which
instants a trigger has are the FireLedger's (automation/ledger.py): the file's own bookkeeping
embedded, the cluster's ledger of fires in cluster mode; where triggers are read from and
edited is the TriggerStore's (automation/store.py).

Reading, parsing and scheduling a trigger file happen in a worker thread (`asyncio.to_thread`):
whatever a file holds, the event loop only swaps in the result. Reloads run concurrently and may
finish in any order, so each takes a generation number when it starts and a result older than the
last one applied for its file is dropped (a stale read never brings back a trigger that was
disabled, or the `last_fired` of before a fire). A file or an entry that cannot be used is
reported in /status and skipped; it never stops the loop. The triggers of a file that cannot be
read are not armed until it reads well again, and a fire whose bookkeeping cannot be written is
held back for a while (doubling), so a broken file never makes the loop spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import watchfiles

from gateway.auth import tenancy
from gateway.automation.ledger import (
    Claimed,
    FileFireLedger,
    Fire,
    FireLedger,
    NotYet,
    Outcome,
    fingerprint_of,
)
from gateway.automation.store import TriggerStore
from gateway.automation.triggers import (
    Trigger,
    TriggerDocument,
    TriggerFileError,
    find,
    normalise,
    parse_entries,
    payload_items,
    trigger_images,
)
from gateway.clock import Clock, iso, system_clock
from gateway.config import TriggerConfig
from gateway.errors import GatewayError, InvalidRequest, SessionNotFound, TriggerNotFound
from gateway.runs.childenv import check_request_env
from gateway.runs.run import RunRequest
from gateway.runs.runner import Runner
from gateway.runs.workspace import resolve_workspace
from gateway.sessions.store import SessionStore

log = logging.getLogger(__name__)
MAX_SLEEP = timedelta(seconds=60)
# How many of a file's invalid entries /status spells out (the rest are counted).
MAX_PROBLEMS_SHOWN = 20
_PROBLEM_CHARS = 300
# A trigger whose fire could not be recorded waits this long before it is tried again, doubling
# up to the cap; a successful attempt forgets it.
RETRY_AFTER = timedelta(seconds=5)
MAX_RETRY_AFTER = timedelta(minutes=10)
# A fire claimed this long after its instant (the gateway was down or its loop held up) started
# late: it runs, and counts as a misfire.
LATE_AFTER = timedelta(seconds=60)

Armed = tuple[str, datetime | None]


@dataclass
class _FileState:
    triggers: dict[str, Trigger] = field(default_factory=dict)
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    skipped: int = 0


@dataclass
class _Loaded:
    """One file as read in the worker thread: its triggers already armed, or why it failed."""

    error: str | None = None
    triggers: dict[str, Trigger] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    skipped: int = 0
    armed: dict[str, Armed] = field(default_factory=dict)
    missing_ids: bool = False


@dataclass
class FireCounts:
    """What this process's fires came to, for the metrics (read at scrape time). `fired` by how
    the run ended (success, error, interrupted); `misfired` by why the instant was missed or
    late: `late` (claimed LATE_AFTER past its instant; it still runs), `unrecorded` (its
    bookkeeping could not be written, so it did not run then and is tried again later)."""

    fired: dict[str, int] = field(default_factory=dict)
    misfired: dict[str, int] = field(default_factory=dict)

    def count(self, table: dict[str, int], label: str) -> None:
        table[label] = table.get(label, 0) + 1


class Scheduler:
    def __init__(
        self,
        config: TriggerConfig,
        files: TriggerStore,
        runner: Runner,
        store: SessionStore,
        *,
        default_workspace: Path,
        workspace_roots: tuple[Path, ...],
        request_env_allow: tuple[str, ...] | None = None,
        clock: Clock = system_clock,
        ledger: FireLedger | None = None,
    ) -> None:
        self._config = config
        # A trigger written through the API is held to the same allow-list as a request's env
        # (400 at once, not an error at every fire); one edited on disk meets it when it runs.
        self._env_allow = request_env_allow
        self._files = files
        # Who runs a due instant and where its fire is recorded (the file's bookkeeping, or
        # the cluster's ledger).
        self._ledger: FireLedger = ledger or FileFireLedger(files, clock)
        self._runner = runner
        self._store = store
        self._workspace = (default_workspace, workspace_roots)
        self._clock = clock
        self._state: dict[Path, _FileState] = {}
        self._in_flight: set[tuple[Path, str]] = set()
        # When each trigger fires next, fixed when its definition was last seen to change: a
        # time computed afresh from "now" would always lie ahead and never come due.
        self._armed: dict[tuple[Path, str], tuple[str, datetime | None]] = {}
        # What was armed in a file that cannot be read now: armed again, at the same time,
        # once the file reads well with those triggers unchanged.
        self._disarmed: dict[tuple[Path, str], Armed] = {}
        self._wake = asyncio.Event()
        self._fires: set[asyncio.Task[None]] = set()
        # Reload generations: the last started, and the last applied per file and for a
        # reload of every file (which alone decides which files are scheduled at all).
        self._generation = 0
        self._applied: dict[Path, int] = {}
        self._applied_all = 0
        # Triggers whose fire could not be recorded: not before when, and the delay to double.
        self._held: dict[tuple[Path, str], tuple[datetime, timedelta]] = {}
        self.counts = FireCounts()

    # -- what is scheduled -------------------------------------------------------------------

    async def reload(self, path: Path | None = None) -> None:
        """Re-read one scheduled file (or all); a file that cannot be read keeps its last good
        triggers for listing, disarmed, and reports the error. The reading, parsing and arming
        run in a thread; a reload that finishes after a later one has been applied is dropped."""
        self._generation += 1
        generation = self._generation
        previous = {**self._disarmed, **self._armed}
        files, loaded = await asyncio.to_thread(self._load, path, self._clock(), previous)
        self._apply(path, files, loaded, generation)

    def _load(
        self, path: Path | None, now: datetime, previous: dict[tuple[Path, str], Armed]
    ) -> tuple[list[Path], dict[Path, _Loaded]]:
        """Worker thread: read and arm the files. `previous` is only read (the loop replaces
        the dict, never mutates it)."""
        files = self._files.sources()
        scheduled = set(files)
        loaded: dict[Path, _Loaded] = {}
        for each in [path] if path is not None else files:
            if each in scheduled:
                loaded[each] = _load_file(self._files, self._ledger, each, now, previous)
        return files, loaded

    def _apply(
        self,
        path: Path | None,
        files: list[Path],
        loaded: dict[Path, _Loaded],
        generation: int,
    ) -> None:
        """On the loop: swap in what the thread read (a few dict operations per trigger),
        except what a reload started later has already replaced."""
        if path is None and generation > self._applied_all:
            self._applied_all = generation
            for stale in set(self._state) - set(files):
                del self._state[stale]
        loaded = {
            each: result
            for each, result in loaded.items()
            if generation > self._applied.get(each, 0)
            # not a file that a later reload of every file found unscheduled
            and (each in self._state or generation >= self._applied_all)
        }
        for each in loaded:
            self._applied[each] = generation
        for each, result in loaded.items():
            state = self._state.setdefault(each, _FileState())
            if result.error is not None:
                if result.error != state.error:
                    log.warning("trigger file not scheduled until it reads well: %s", result.error)
                state.error = result.error
                continue
            if result.missing_ids:
                # Give them ids on disk first: an id made up on every read would make the
                # trigger a new one at each reload (and fire it again).
                self._track(asyncio.create_task(self._write_ids(each)))
            if result.problems and result.problems != state.problems:
                log.warning(
                    "trigger file %s: %d invalid entries skipped, first: %s",
                    each,
                    result.skipped,
                    result.problems[0],
                )
            state.triggers = result.triggers
            state.error = None
            state.problems = result.problems
            state.skipped = result.skipped
        fresh = {each for each, result in loaded.items() if result.error is None}
        armed: dict[tuple[Path, str], Armed] = {}
        disarmed: dict[tuple[Path, str], Armed] = {}
        for key, value in {**self._disarmed, **self._armed}.items():
            kept = self._state.get(key[0])
            if key[0] in fresh or kept is None or key[1] not in kept.triggers:
                continue
            if kept.error is None:
                armed[key] = value
            else:  # an unreadable file's triggers are not armed
                disarmed[key] = value
        self._disarmed = disarmed
        for each in fresh:
            for trigger_id, value in loaded[each].armed.items():
                armed[(each, trigger_id)] = value
        self._armed = armed
        self._held = {key: value for key, value in self._held.items() if key in armed}
        self._wake.set()

    def status(self) -> tuple[bool, list[tuple[str, int, str | None]]]:
        files = []
        for path, state in sorted(self._state.items()):
            error = state.error
            if error is None and state.problems:
                error = "; ".join(state.problems)
                if state.skipped > len(state.problems):
                    error += f"; and {state.skipped - len(state.problems)} more"
            files.append((str(path), len(state.triggers), error))
        return not self._config.disabled, files

    def file_problems(self, path: str) -> tuple[int, list[str]]:
        """How many entries of a scheduled file were skipped, and the first messages."""
        state = self._state.get(Path(path))
        return (0, []) if state is None else (state.skipped, list(state.problems))

    def next_fires(self) -> list[tuple[datetime, Path, Trigger]]:
        upcoming = []
        for path, state in self._state.items():
            for trigger in state.triggers.values():
                armed = self._armed.get((path, trigger.id))
                if armed is not None and armed[1] is not None:
                    upcoming.append((armed[1], path, trigger))
        return sorted(upcoming, key=lambda item: item[0])

    def _earliest(self) -> datetime | None:
        times = []
        for key, (_, when) in self._armed.items():
            if when is not None:
                held = self._held.get(key)
                times.append(when if held is None else max(when, held[0]))
        return min(times) if times else None

    def due(self, now: datetime) -> list[tuple[Path, Trigger]]:
        found = []
        for (path, trigger_id), (_, when) in self._armed.items():
            if when is None or when > now or (path, trigger_id) in self._in_flight:
                continue
            held = self._held.get((path, trigger_id))
            if held is not None and held[0] > now:
                continue
            state = self._state.get(path)
            trigger = state.triggers.get(trigger_id) if state is not None else None
            if trigger is not None:
                found.append((when, path, trigger))
        found.sort(key=lambda item: item[0])
        return [(path, trigger) for _, path, trigger in found]

    # -- firing ------------------------------------------------------------------------------

    async def _write_ids(self, path: Path) -> None:
        try:
            async with self._files.edit(path, client=False) as document:
                for i, entry in enumerate(document.entries):
                    if isinstance(entry, dict) and not (entry.get("id") or entry.get("trigger_id")):
                        with contextlib.suppress(InvalidRequest):
                            document.entries[i] = normalise(entry).entry
        except GatewayError:
            log.exception("could not write ids into %s", path)
        await self.reload(path)

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._fires.add(task)
        task.add_done_callback(self._fires.discard)
        return task

    async def settle(self) -> None:
        """Wait for the fires and file writes under way (tests, shutdown)."""
        while self._fires:
            await asyncio.gather(*list(self._fires), return_exceptions=True)

    async def fire_due(self, now: datetime | None = None) -> list[asyncio.Task[None]]:
        """Start every due trigger; the tasks are returned (and tracked) so tests can await."""
        started = []
        for path, trigger in self.due(now or self._clock()):
            self._in_flight.add((path, trigger.id))
            fingerprint, when = self._armed[(path, trigger.id)]
            if when is None:  # due() returns armed times only
                continue
            fire = Fire(path, trigger, fingerprint, when)
            started.append(self._track(asyncio.create_task(self._fire(fire))))
        return started

    async def _fire(self, fire: Fire) -> None:
        path, trigger = fire.source, fire.trigger
        key = (path, trigger.id)
        settled = False
        try:
            try:
                claimed = await self._ledger.claim(fire)
            except NotYet as exc:
                # Asked again after a while; a failure meanwhile is held from RETRY_AFTER.
                self._held[key] = (self._clock() + exc.retry_after, RETRY_AFTER / 2)
                return
            except GatewayError:
                self._hold(key)
                self.counts.count(self.counts.misfired, "unrecorded")
                raise
            settled = True
            if claimed is None:
                return
            self._held.pop(key, None)
            if self._clock() - fire.scheduled_for >= LATE_AFTER:
                self.counts.count(self.counts.misfired, "late")
            outcome = await self._finishing(fire, claimed)
            self.counts.count(self.counts.fired, outcome.status)
            await self._ledger.finish(fire, claimed, outcome)
        except GatewayError:
            log.exception("trigger %s in %s: could not record its fire", trigger.id, path)
        finally:
            self._in_flight.discard(key)
            if settled:
                self._advance(fire)
            if self._ledger.reloads_after_fire:
                await self.reload(path)

    async def _finishing(self, fire: Fire, claimed: Claimed) -> Outcome:
        """The claimed fire's run; cancelled (the gateway stops), its fire is recorded as
        interrupted where the ledger keeps such a record, and the cancellation goes on."""
        try:
            return await self._run(fire.trigger, claimed.session_id)
        except asyncio.CancelledError:
            self.counts.count(self.counts.fired, "interrupted")
            with contextlib.suppress(GatewayError):
                await asyncio.shield(
                    self._ledger.finish(
                        fire, claimed, Outcome("interrupted", "the gateway stopped")
                    )
                )
            raise

    def _advance(self, fire: Fire) -> None:
        """Arm the instant after a settled one, unless a reload armed the trigger meanwhile."""
        key = (fire.source, fire.trigger.id)
        if self._armed.get(key) != (fire.fingerprint, fire.scheduled_for):
            return
        try:
            after = self._ledger.advance(fire.trigger, fire.scheduled_for)
        except (ValueError, OverflowError, ArithmeticError):
            after = None
        if after != fire.scheduled_for:
            self._held.pop(key, None)
        self._armed[key] = (fire.fingerprint, after)
        self._wake.set()

    def _hold(self, key: tuple[Path, str]) -> None:
        """Do not try this trigger again for a while: its file cannot be edited."""
        before = self._held.get(key)
        delay = RETRY_AFTER if before is None else min(before[1] * 2, MAX_RETRY_AFTER)
        self._held[key] = (self._clock() + delay, delay)

    async def _run(self, trigger: Trigger, session_id: str | None) -> Outcome:
        # As the trigger's tenant: its session is made for it, and continues only one of its.
        with tenancy.acting_as(tenancy.trigger_principal(trigger.entry)):
            return await self._run_as_owner(trigger, session_id)

    async def _run_as_owner(self, trigger: Trigger, session_id: str | None) -> Outcome:
        entry = trigger.entry
        if isinstance(session_id, str):
            try:
                tenancy.resolve(self._store, session_id)
            except SessionNotFound:
                session_id = None  # the session is gone (or not its tenant's): start a new one
        request = RunRequest(
            source="trigger",
            prompt=str(entry["prompt_text"]),
            system_prompt=str(entry.get("system_prompt") or ""),
            env=dict(entry.get("env") or {}),
            workspace=entry.get("cwd"),
            timeout_ms=entry.get("timeout_ms"),
            session_id=session_id if isinstance(session_id, str) else None,
            metadata={"trigger_id": trigger.id, "trigger_title": str(entry.get("title", ""))},
            output_schema=entry.get("output_schema"),  # checked again by the runner
            images=trigger_images(entry.get("images")),
        )
        try:
            result = await self._runner.run(request, wait_for_slot=True)
        except GatewayError as exc:
            log.warning("trigger %s failed: %s", trigger.id, exc.message)
            return Outcome("error", exc.message)
        return Outcome("success", session_id=result.session.id, run_id=result.run_id)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Fire triggers on time until `stop` is set; watch the trigger files meanwhile."""
        await self.reload()
        if self._config.disabled:
            await stop.wait()
            return
        async with asyncio.TaskGroup() as group:
            watch = group.create_task(self._watch(stop))
            follow = group.create_task(self._files.follow(stop, self.reload))
            while not stop.is_set():
                await self.fire_due()
                self._wake.clear()
                earliest = self._earliest()
                delay = MAX_SLEEP
                if earliest is not None:
                    delay = min(MAX_SLEEP, max(timedelta(0), earliest - self._clock()))
                waiters = {
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                }
                _, pending = await asyncio.wait(
                    waiters,
                    timeout=max(delay.total_seconds(), 0.01),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for waiter in pending:
                    waiter.cancel()
            # A reload in progress (seconds of work in its thread for a large file) is not
            # waited for: the next start reads the file again.
            watch.cancel()
            follow.cancel()
            for task in list(self._fires):
                task.cancel()

    async def _watch(self, stop: asyncio.Event) -> None:
        """Reload a trigger file within a second of an edit on disk."""
        while not stop.is_set():
            directories, discovery = await asyncio.to_thread(self._watched_directories)
            if not directories:
                await _wait(stop, 5)
                continue
            rescan = asyncio.Event()
            try:
                async for changes in watchfiles.awatch(
                    *directories,
                    stop_event=_either(stop, rescan),
                    debounce=self._config.debounce_ms,
                    step=50,
                    recursive=False,
                    rust_timeout=1000,
                ):
                    await self._on_changes({Path(p) for _, p in changes}, discovery, rescan)
            except (OSError, RuntimeError) as exc:
                log.warning("watching trigger files failed, polling instead: %s", exc)
                await _wait(stop, 1)
                await self.reload()

    def _watched_directories(self) -> tuple[set[Path], Path | None]:
        directories = {p.parent for p in self._files.scheduled_files() if p.parent.is_dir()}
        discovery = self._config.discovery_dir
        if discovery is not None and discovery.is_dir():
            directories.add(discovery)
        return directories, discovery

    async def _on_changes(
        self, changed: set[Path], discovery: Path | None, rescan: asyncio.Event
    ) -> None:
        scheduled = set(await asyncio.to_thread(self._files.scheduled_files))
        if discovery is not None and any(path.parent == discovery for path in changed):
            await self.reload()  # a session folder came or went: files to schedule changed
            rescan.set()
            return
        for path in changed & scheduled:
            await self.reload(path)

    # -- the trigger API ---------------------------------------------------------------------

    def view(self, trigger: Trigger, path: Path | None = None) -> dict[str, Any]:
        shown = dict(trigger.entry)
        shown[tenancy.TENANT_FIELD] = tenancy.trigger_owner(trigger.entry)
        armed = self._armed.get((path, trigger.id)) if path is not None else None
        if armed is not None and armed[0] == fingerprint_of(trigger):
            when = armed[1]
        else:
            when = self._ledger.arm(trigger, self._clock())
        shown["next_fire"] = iso(when, timespec="auto") if when else None
        return shown

    async def list_triggers(self, path: Path) -> list[dict[str, Any]]:
        document = await self._listed(path)
        return await asyncio.to_thread(self._list, path, document, None)

    async def get_trigger(self, path: Path, trigger_id: str) -> dict[str, Any]:
        document = await self._listed(path)
        found = await asyncio.to_thread(self._list, path, document, trigger_id)
        if not found:
            raise TriggerNotFound(trigger_id)
        return found[0]

    async def _listed(self, path: Path) -> TriggerDocument:
        try:
            return await self._files.read_scope(path)
        except TriggerFileError as exc:
            raise InvalidRequest(
                f"Unable to read trigger configuration: {exc}", field="trigger_file"
            ) from None

    def _list(
        self, path: Path, document: TriggerDocument, only: str | None
    ) -> list[dict[str, Any]]:
        """Worker thread: the scope's valid triggers (or the one named `only`) the caller sees
        (asyncio.to_thread carries the caller's context) as views."""
        triggers, _ = parse_entries(document)
        return [
            self.view(t, path)
            for t in triggers
            if (only is None or t.id == only) and tenancy.sees_trigger(t.entry)
        ]

    async def create(self, path: Path, payload: Any) -> list[dict[str, Any]]:
        """Create or replace one trigger (an object) or a batch (an array or {"triggers": [..]})."""
        items, batch = payload_items(payload)
        if not items:
            raise InvalidRequest("no trigger given", field="triggers")
        if len(items) > self._config.max_per_file:
            raise InvalidRequest(
                f"a trigger file holds at most {self._config.max_per_file} triggers",
                field="triggers",
            )
        named = [
            tenancy.given_tenant(item, where=f"triggers[{i}]." if batch else "")
            for i, item in enumerate(items)
        ]
        triggers = await asyncio.to_thread(self._normalise_batch, items, batch)
        async with self._files.edit(path) as document:
            positions = _positions(document)
            for item, trigger, tenant in zip(items, triggers, named, strict=True):
                index = positions.get(trigger.id)
                # The key's tenant; replacing a trigger keeps its own (unless an admin names one).
                trigger.entry[tenancy.TENANT_FIELD] = tenant or tenancy.creating_tenant()
                if index is None:
                    positions[trigger.id] = len(document.entries)
                    document.entries.append(trigger.entry)
                else:
                    old = document.entries[index]
                    if isinstance(old, dict):  # another tenant's id: not found, as ever
                        tenancy.check_trigger(old, trigger.id)
                        if tenant is None:
                            trigger.entry[tenancy.TENANT_FIELD] = tenancy.trigger_owner(old)
                    if isinstance(old, dict) and "created_at" not in (item or {}):
                        trigger.entry["created_at"] = old.get(
                            "created_at", trigger.entry["created_at"]
                        )
                    document.entries[index] = trigger.entry
        await self.reload(path)
        return await asyncio.to_thread(lambda: [self.view(t, path) for t in triggers])

    def _normalise_batch(self, items: list[Any], batch: bool) -> list[Trigger]:
        """Worker thread: validate every item (cron parsing and path checks are not free)."""
        triggers = []
        for i, item in enumerate(items):
            where = f"triggers[{i}]." if batch else ""
            trigger = normalise(item, where=where)
            self._check_workspace(trigger, where)
            self._check_env(trigger, where)
            triggers.append(trigger)
        return triggers

    async def update(self, path: Path, trigger_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        tenant = tenancy.given_tenant(patch)
        async with self._files.edit(path) as document:
            existing = find(document, trigger_id)
            tenancy.check_trigger(existing, trigger_id)
            merged = {**existing, **patch, "id": existing.get("id", trigger_id)}
            merged[tenancy.TENANT_FIELD] = tenant or tenancy.trigger_owner(existing)
            merged["created_at"] = existing.get("created_at", merged.get("created_at"))
            for name in ("last_fired", "last_attempt_at", "last_status", "last_error"):
                if not patch.get(name):
                    merged[name] = existing.get(name)
            trigger = normalise(merged)
            self._check_workspace(trigger, "")
            self._check_env(trigger, "")
            document.entries[document.index(trigger_id) or 0] = trigger.entry
        await self.reload(path)
        return self.view(trigger, path)

    async def delete(self, path: Path, trigger_id: str) -> None:
        async with self._files.edit(path) as document:
            tenancy.check_trigger(find(document, trigger_id), trigger_id)
            index = document.index(trigger_id)
            if index is not None:
                del document.entries[index]
        await self.reload(path)

    def _check_workspace(self, trigger: Trigger, where: str) -> None:
        cwd = trigger.entry.get("cwd")
        if cwd is None:
            return
        default, roots = self._workspace
        try:
            resolve_workspace(cwd, default=default, roots=roots)
        except InvalidRequest as exc:
            raise InvalidRequest(
                exc.message.replace("workspace", "cwd", 1), field=f"{where}cwd"
            ) from None

    def _check_env(self, trigger: Trigger, where: str) -> None:
        env = trigger.entry.get("env")
        if not env or self._env_allow is None:
            return
        try:
            check_request_env(env, self._env_allow)
        except InvalidRequest as exc:
            raise InvalidRequest(exc.message, field=f"{where}env") from None


def _missing_ids(document: TriggerDocument) -> bool:
    return any(
        isinstance(entry, dict) and not (entry.get("id") or entry.get("trigger_id"))
        for entry in document.entries
    )


def _positions(document: TriggerDocument) -> dict[str, int]:
    """Each stored id's index (the first, as TriggerDocument.index finds), in one pass."""
    positions: dict[str, int] = {}
    for i, entry in enumerate(document.entries):
        if isinstance(entry, dict) and (entry.get("id") or entry.get("trigger_id")):
            positions.setdefault(str(entry.get("id") or entry.get("trigger_id")), i)
    return positions


def _load_file(
    files: TriggerStore,
    ledger: FireLedger,
    path: Path,
    now: datetime,
    previous: dict[tuple[Path, str], Armed],
) -> _Loaded:
    """Worker thread: one file read, validated and armed. Nothing here raises for what the
    file holds: a bad file is an error, a bad entry a problem, and both are reported."""
    try:
        document = files.read(path)
        triggers, problems = parse_entries(document)
        stored = _positions(document)
    except TriggerFileError as exc:
        return _Loaded(error=str(exc))
    except GatewayError as exc:  # `triggers` is not an array
        return _Loaded(error=exc.message)
    result = _Loaded(missing_ids=_missing_ids(document), skipped=len(problems))
    result.problems = [_short(p) for p in problems[:MAX_PROBLEMS_SHOWN]]
    for trigger in triggers:
        if trigger.id not in stored:
            continue  # its id is written to the file first
        fingerprint = fingerprint_of(trigger)
        before = previous.get((path, trigger.id))
        if before is not None and before[0] == fingerprint:
            result.armed[trigger.id] = before
        else:
            try:
                result.armed[trigger.id] = (fingerprint, ledger.arm(trigger, now))
            except (ValueError, OverflowError, ArithmeticError) as exc:
                result.skipped += 1
                if len(result.problems) < MAX_PROBLEMS_SHOWN:
                    result.problems.append(_short(f"{trigger.id}: cannot be scheduled: {exc}"))
                continue
        result.triggers[trigger.id] = trigger
    return result


def _short(message: str) -> str:
    return message if len(message) <= _PROBLEM_CHARS else message[:_PROBLEM_CHARS] + "…"


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class _either:  # reads as a function at the call site
    """An event-like object that is set when either event is (watchfiles' stop_event)."""

    def __init__(self, first: asyncio.Event, second: asyncio.Event) -> None:
        self._events = (first, second)

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)

    def set(self) -> None:
        """watchfiles sets its stop event when cancelled: end this watch only."""
        self._events[1].set()
