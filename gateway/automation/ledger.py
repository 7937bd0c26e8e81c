"""FireLedger: claiming a trigger's scheduled instant, and recording how its fire ended.

The scheduler decides when an instant is due; the ledger decides whether this process runs it
and keeps the record. It also owns the rule that turns a trigger into instants (`arm`,
`advance`), because that rule is what makes an instant a key: embedded, the next fire is
computed from now and from the file's bookkeeping (`last_fired`), and the fire's own writes
re-arm it; in cluster mode every replica must name the same instants, so they come from the
schedule alone and each settled instant is followed by the next one.

Embedded, `FileFireLedger` is today's bookkeeping in the trigger file: the attempt is written
before the run starts (so a reload mid-run cannot fire it twice) and the outcome after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from gateway.automation.store import TriggerStore
from gateway.automation.triggers import Trigger, TriggerDocument, find, normalise
from gateway.clock import Clock, iso
from gateway.errors import InvalidRequest


@dataclass(frozen=True)
class Fire:
    """One scheduled instant of one trigger, as the scheduler armed it."""

    source: Path
    trigger: Trigger
    fingerprint: str
    scheduled_for: datetime


@dataclass(frozen=True)
class Claimed:
    """This process runs the fire: in `session_id` (None: a new session)."""

    session_id: str | None
    attempt: str


@dataclass(frozen=True)
class Outcome:
    """How a fire's run ended: `status` success, error or interrupted (the run never ended:
    the gateway stopped under it)."""

    status: str
    error: str | None = None
    session_id: str | None = None
    run_id: str | None = None


class NotYet(Exception):  # a verdict, not a failure
    """Raised by a claim that cannot be decided now (another replica should take the fire
    first): the scheduler asks again after `retry_after`, without moving on."""

    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(f"not yet: ask again in {retry_after}")
        self.retry_after = retry_after


class FireLedger(Protocol):
    reloads_after_fire: bool
    """Whether a fire changes its source (the scheduler then reads it again)."""

    def arm(self, trigger: Trigger, now: datetime) -> datetime | None:
        """The instant a trigger is armed for when first seen (or seen changed). Pure."""
        ...

    def advance(self, trigger: Trigger, instant: datetime) -> datetime | None:
        """The instant armed once `instant` is settled (claimed here or elsewhere)."""
        ...

    async def claim(self, fire: Fire) -> Claimed | None:
        """Take the fire; None when it is not this process's to run (the trigger changed, or
        another replica has it). Raises NotYet to be asked again later, GatewayError when the
        claim cannot be written."""
        ...

    async def finish(self, fire: Fire, claimed: Claimed, outcome: Outcome) -> None:
        """Record the end of a claimed fire."""
        ...


class FileFireLedger:
    """The trigger file's own bookkeeping: last_attempt_at, last_fired, last_status, ..."""

    reloads_after_fire = True

    def __init__(self, files: TriggerStore, clock: Clock) -> None:
        self._files = files
        self._clock = clock

    def arm(self, trigger: Trigger, now: datetime) -> datetime | None:
        return trigger.next_fire(now)

    def advance(self, trigger: Trigger, instant: datetime) -> datetime | None:
        return instant  # the fire rewrote the file: reading it again re-arms the trigger

    async def claim(self, fire: Fire) -> Claimed | None:
        attempt = _iso(self._clock())
        try:
            async with self._files.edit(fire.source, client=False) as document:
                if not _still_due(document, fire.trigger, fire.fingerprint):
                    raise _NotDue
                find(document, fire.trigger.id)["last_attempt_at"] = attempt
        except _NotDue:
            return None  # deleted, disabled or fired meanwhile: the file is left as it is
        session_id = fire.trigger.entry.get("gateway_session_id")
        return Claimed(session_id if isinstance(session_id, str) else None, attempt)

    async def finish(self, fire: Fire, claimed: Claimed, outcome: Outcome) -> None:
        if outcome.status == "interrupted":
            return  # the attempt is on file; a one-shot is not tried again
        fired = _iso(self._clock())
        async with self._files.edit(fire.source, client=False) as document:
            index = document.index(fire.trigger.id)
            if index is None:
                return
            entry = document.entries[index]
            entry.update(
                last_attempt_at=claimed.attempt,
                last_status=outcome.status,
                # Short: the scheduler's own writes must not grow the file past its cap.
                last_error=None if outcome.error is None else short(outcome.error),
                overdue=False,
            )
            if outcome.session_id is not None:
                entry["gateway_session_id"] = outcome.session_id
            if outcome.status == "success":
                entry["last_fired"] = fired
                if fire.trigger.schedule.mode == "once":
                    del document.entries[index]


class _NotDue(Exception):
    """Raised inside a fire's first edit to leave the file unwritten."""


def _still_due(document: TriggerDocument, trigger: Trigger, fingerprint: str) -> bool:
    """Whether the stored entry is still the enabled trigger that was armed: a reload that read
    the file before a PATCH or a fire must not make it fire."""
    index = document.index(trigger.id)
    if index is None:
        return False
    try:
        # A file's entry without created_at gets one when read: the same one as when armed.
        current = normalise(dict(document.entries[index]), now=trigger.entry["created_at"])
    except InvalidRequest:
        return False
    return current.enabled and fingerprint_of(current) == fingerprint


def fingerprint_of(trigger: Trigger) -> str:
    """What arms a trigger: when any of it changes, the trigger is armed afresh."""
    entry = trigger.entry
    fields = ("schedule", "enabled", "last_fired", "last_attempt_at", "created_at")
    return json.dumps([entry.get(name) for name in fields], sort_keys=True, default=str)


SHORT_CHARS = 300


def short(message: str) -> str:
    return message if len(message) <= SHORT_CHARS else message[:SHORT_CHARS] + "…"


def _iso(moment: datetime) -> str:
    return iso(moment.astimezone(UTC))
