"""Clock: the gateway's time (a `Clock` the scheduler and the watcher can be given) and its
timestamps as text, UTC with a `Z`, in one format."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

Clock = Callable[[], datetime]
"""Now, as an aware datetime: `system_clock`, or a test's stepped clock."""
Timespec = Literal["auto", "seconds", "milliseconds", "microseconds"]


def system_clock() -> datetime:
    return datetime.now(UTC)


def now_iso() -> str:
    """Now, as every record the gateway writes stamps it: `2026-11-01T12:00:00.000Z`.

    A run stamps half a dozen records within the same millisecond: the text is made once per
    millisecond (as `iso` would make it: the time truncated to the millisecond)."""
    global _stamped
    millis = time.time_ns() // 1_000_000
    if millis != _stamped[0]:
        seconds, fraction = divmod(millis, 1000)
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _stamped = (millis, f"{moment}.{fraction:03d}Z")
    return _stamped[1]


_stamped: tuple[int, str] = (-1, "")


def iso(moment: datetime, *, timespec: Timespec = "milliseconds") -> str:
    """`moment` in ISO 8601 with `+00:00` written `Z` (another offset is kept as it is).

    Milliseconds unless `timespec` says otherwise: "auto" is for values read back from a user
    (a trigger's `at`), shown as precise as they were given.
    """
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")
