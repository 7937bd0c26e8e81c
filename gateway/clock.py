"""Clock: the gateway's time (a `Clock` the scheduler and the watcher can be given) and its
timestamps as text, UTC with a `Z`, in one format."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

Clock = Callable[[], datetime]
"""Now, as an aware datetime: `system_clock`, or a test's stepped clock."""
Timespec = Literal["auto", "seconds", "milliseconds", "microseconds"]


def system_clock() -> datetime:
    return datetime.now(UTC)


def now_iso() -> str:
    """Now, as every record the gateway writes stamps it: `2026-11-01T12:00:00.000Z`."""
    return iso(system_clock())


def iso(moment: datetime, *, timespec: Timespec = "milliseconds") -> str:
    """`moment` in ISO 8601 with `+00:00` written `Z` (another offset is kept as it is).

    Milliseconds unless `timespec` says otherwise: "auto" is for values read back from a user
    (a trigger's `at`), shown as precise as they were given.
    """
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
