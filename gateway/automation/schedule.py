"""Trigger schedules: parsing a trigger's `schedule` object and computing its next fire time.

Four modes:

- `once`: fires at `at`, an ISO 8601 instant. A timestamp without an offset is wall time in the
  schedule's zone (the reference used the host's zone, Python's monitor used UTC).
- `daily`: fires at `time` ("H:MM") every day, wall clock in the zone.
- `interval`: fires every `interval_minutes` on the grid of its anchor (`last_fired`, else
  `created_at`).
- `cron`: fires on a 5-field cron expression evaluated on the zone's wall clock.

Every schedule has an IANA `timezone` (default UTC); an unknown name is an error, never UTC.

Wall-clock rules, shared by `daily`, `cron` and a naive `once` timestamp, so the two repeating
wall-clock modes agree with each other:

- A wall time that does not exist (inside a spring-forward gap) fires at the instant zoneinfo
  gives it with fold=0, that is read with the offset in force before the gap: 02:30 in New York on
  the spring-forward day is 07:30Z (03:30 EDT), "one hour later", as the reference does.
- A wall time that occurs twice (the repeated hour of a fall-back) fires once, at its first
  occurrence.

So every wall time a schedule names fires exactly once and no day is skipped. Everything here is
pure: no clock reads, no I/O; the caller passes `now`. The cost of `next_fire` does not grow with
the time elapsed since the anchor.

Errors:

    ValueError
     └── ScheduleError(field, message)    the schedule is invalid; `field` names the key
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from gateway.clock import iso
from gateway.errors import quote

MODES = ("once", "daily", "interval", "cron")
MIN_INTERVAL = timedelta(seconds=1)

_DAY = timedelta(days=1)
_TIME_OF_DAY = re.compile(r"([0-9]{1,2}):([0-9]{2})")
# croniter's hashed (H) and random (R) fields: H needs a per-job seed we do not have, and R would
# give a different schedule every time the expression is read.
_UNSTABLE_CRON_FIELD = re.compile(r"[hr](?:\(|/|$)", re.IGNORECASE)
# Names that load but mean whatever the host is set to: the reference's host-local-time bug again.
_HOST_ZONES = frozenset({"localtime", "posixrules"})
# Any instant will do: it only proves the expression matches at least one date.
_CRON_PROBE_START = datetime(2000, 1, 1)  # naive: croniter walks wall times here


class ScheduleError(ValueError):
    """A trigger's `schedule` is invalid; `field` is the offending path, e.g. "schedule.time"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Schedule:
    """A validated schedule. `at` is aware UTC; `hour`/`minute` are wall time in `tz`."""

    mode: str  # one of MODES
    tz: ZoneInfo
    at: datetime | None = None
    hour: int | None = None
    minute: int | None = None
    interval: timedelta | None = None
    cron: str | None = None


def parse_schedule(raw: object) -> Schedule:
    """Validate a trigger's `schedule` JSON value.

    The mode is `mode` (any case) when it is a string; otherwise it is inferred as the reference
    does, plus cron: a `cron` key means cron, `interval_minutes`/`minutes` interval, `time` daily,
    anything else once. A key counts as present unless it is missing or null, so
    `{"interval_minutes": 0}` is an invalid interval rather than a silent one-shot.
    """
    if not isinstance(raw, dict):
        raise ScheduleError("schedule", "must be a JSON object")
    mode = _mode(raw)
    tz = _zone(raw)
    if mode == "once":
        return Schedule(mode, tz, at=_at(raw, tz))
    if mode == "daily":
        hour, minute = _time_of_day(raw)
        return Schedule(mode, tz, hour=hour, minute=minute)
    if mode == "interval":
        return Schedule(mode, tz, interval=_interval(raw))
    return Schedule(mode, tz, cron=_cron(raw))


def next_fire(
    schedule: Schedule,
    *,
    now: datetime,
    last_fired: datetime | None,
    created_at: datetime | None,
) -> datetime | None:
    """The next fire time strictly after `now`, as aware UTC, or None if it never fires again.

    One exception to "strictly after": a `once` schedule whose `at` has passed without it ever
    firing is overdue and fires now, so the result equals `now` ("due now"), as in the reference.
    All datetimes must be aware. A result past the end of `datetime` is None: it never fires.
    """
    for name, given in (("now", now), ("last_fired", last_fired), ("created_at", created_at)):
        if given is not None and given.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime")
    try:
        # An aware instant near either end of the range can overflow when taken to UTC.
        now = _as_utc(now, "now")
        last = None if last_fired is None else _as_utc(last_fired, "last_fired")
        created = None if created_at is None else _as_utc(created_at, "created_at")
        if schedule.mode == "once" and schedule.at is not None:
            if last is not None:
                return None
            return max(schedule.at, now)
        if schedule.mode == "daily" and schedule.hour is not None and schedule.minute is not None:
            return _next_daily(schedule.tz, time(schedule.hour, schedule.minute), now)
        if schedule.mode == "interval" and schedule.interval is not None:
            return _next_interval(schedule.interval, last or created or now, now)
        if schedule.mode == "cron" and schedule.cron is not None:
            return _next_cron(schedule.cron, schedule.tz, now)
    # The end of the range: datetime arithmetic overflows, croniter's dateutil says "year 10000
    # is out of range" (a ValueError) and croniter gives up on dates it cannot find.
    except (OverflowError, ValueError, CroniterBadDateError):
        return None
    raise ValueError(f"incomplete {schedule.mode!r} schedule: {schedule!r}")


def describe(schedule: Schedule) -> dict[str, object]:
    """The normalised JSON form, which `parse_schedule` reads back to an equal `Schedule`."""
    out: dict[str, object] = {"mode": schedule.mode, "timezone": schedule.tz.key}
    if schedule.at is not None:
        out["at"] = iso(schedule.at, timespec="auto")
    if schedule.hour is not None and schedule.minute is not None:
        out["time"] = f"{schedule.hour:02d}:{schedule.minute:02d}"
    if schedule.interval is not None:
        minutes = schedule.interval / timedelta(minutes=1)
        out["interval_minutes"] = int(minutes) if minutes.is_integer() else minutes
    if schedule.cron is not None:
        out["cron"] = schedule.cron
    return out


# --- parsing -------------------------------------------------------------------------------------


def _present(raw: dict[str, object], key: str) -> bool:
    return raw.get(key) is not None


def _first(raw: dict[str, object], *keys: str) -> tuple[str, object] | None:
    """The first of `keys` with a value; "" counts as absent, as the reference's `a || b` does."""
    for key in keys:
        value = raw.get(key)
        if value is not None and value != "":
            return key, value
    return None


def _mode(raw: dict[str, object]) -> str:
    mode = raw.get("mode")
    if isinstance(mode, str):
        mode = mode.strip().lower()
        if mode not in MODES:
            raise ScheduleError("schedule.mode", f"must be one of {', '.join(MODES)}")
        return mode
    if _present(raw, "cron"):
        return "cron"
    if _present(raw, "interval_minutes") or _present(raw, "minutes"):
        return "interval"
    if _present(raw, "time"):
        return "daily"
    return "once"


def _zone(raw: dict[str, object]) -> ZoneInfo:
    found = _first(raw, "timezone", "tz")
    if found is None:
        return ZoneInfo("UTC")
    key, name = found
    field = f"schedule.{key}"
    if not isinstance(name, str) or name in _HOST_ZONES:
        raise ScheduleError(field, f"not an IANA time zone name: {quote(name)}")
    try:
        return ZoneInfo(name)
    # Unknown names raise ZoneInfoNotFoundError (a KeyError); malformed ones ValueError; a
    # directory such as "America" an OSError.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(field, f"unknown IANA time zone: {quote(name)}") from None


def _at(raw: dict[str, object], tz: ZoneInfo) -> datetime:
    found = _first(raw, "at", "time")
    if found is None:
        raise ScheduleError("schedule.at", "missing: an ISO 8601 timestamp is required")
    key, text = found
    field = f"schedule.{key}"
    if not isinstance(text, str):
        raise ScheduleError(field, "must be an ISO 8601 timestamp string")
    stripped = text.strip()
    if stripped.endswith("z"):
        stripped = stripped[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(stripped)
        return _wall_to_utc(parsed, tz) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ScheduleError(field, f"not an ISO 8601 timestamp: {quote(text)}") from None


def _time_of_day(raw: dict[str, object]) -> tuple[int, int]:
    found = _first(raw, "time", "at")
    if found is None:
        raise ScheduleError("schedule.time", 'missing: a wall time "HH:MM" is required')
    key, text = found
    match = _TIME_OF_DAY.fullmatch(text.strip()) if isinstance(text, str) else None
    hour, minute = (int(match[1]), int(match[2])) if match else (-1, -1)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ScheduleError(f"schedule.{key}", f'must be a wall time "HH:MM", not {quote(text)}')
    return hour, minute


def _interval(raw: dict[str, object]) -> timedelta:
    found = _first(raw, "interval_minutes", "minutes")
    if found is None:
        raise ScheduleError("schedule.interval_minutes", "missing: a number of minutes")
    key, value = found
    field = f"schedule.{key}"
    problem = f"must be a number of minutes, at least {MIN_INTERVAL / timedelta(minutes=1):.6g}"
    # bool is an int to Python but not a number to JSON.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ScheduleError(field, problem)
    try:
        minutes = float(value)
        interval = timedelta(minutes=minutes)
    except (ValueError, OverflowError):
        raise ScheduleError(field, problem) from None
    if not math.isfinite(minutes) or interval < MIN_INTERVAL:
        raise ScheduleError(field, problem)
    return interval


def _cron(raw: dict[str, object]) -> str:
    text = raw.get("cron")
    fields = text.split() if isinstance(text, str) else []
    if len(fields) != 5:
        raise ScheduleError("schedule.cron", "must be a 5-field cron expression")
    if any(_UNSTABLE_CRON_FIELD.match(field) for field in fields):
        raise ScheduleError("schedule.cron", "hashed (H) and random (R) fields are not supported")
    expression = " ".join(fields)
    try:
        # strict rejects day/month pairs that never occur ("0 0 31 2 *"); the probe catches any
        # other expression croniter cannot find a date for.
        valid = croniter.is_valid(expression, strict=True)
        if valid:
            croniter(expression, _CRON_PROBE_START, ret_type=datetime).get_next(datetime)
    # croniter reports bad expressions as ValueErrors. Its parser is third-party code fed client
    # input, so a slip into another lookup or type error also means "invalid", not a 500.
    except (ValueError, TypeError, LookupError):
        valid = False
    if not valid:
        raise ScheduleError("schedule.cron", f"not a valid cron expression: {quote(text)}")
    return expression


# --- next fire -----------------------------------------------------------------------------------


def _as_utc(value: datetime, name: str) -> datetime:
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive wall time in `tz` as UTC; gap and repeated times resolve with fold=0."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    """False for a wall time inside a spring-forward gap (it does not survive a round trip)."""
    return _wall_to_utc(wall, tz).astimezone(tz).replace(tzinfo=None) == wall


def _next_daily(tz: ZoneInfo, at: time, now: datetime) -> datetime:
    # Candidates are built per local date, never by adding hours to an instant (the reference's
    # "+25 h" skipped a day after 23:00). Tomorrow's is nearly always after now; the third date is
    # for a fall-back across midnight (America/St_Johns at 00:01 until 2011): during the repeated
    # hour, tomorrow's early wall times have already had their first occurrence.
    today = now.astimezone(tz).date()
    for days in (0, 1):
        fire = _wall_to_utc(datetime.combine(today + timedelta(days=days), at), tz)
        if fire > now:
            return fire
    return _wall_to_utc(datetime.combine(today + timedelta(days=2), at), tz)


def _next_interval(interval: timedelta, anchor: datetime, now: datetime) -> datetime:
    # The smallest k >= 1 with anchor + k * interval > now, in O(1): a stale anchor years back
    # costs nothing (the reference stepped through every missed interval).
    steps = max(1, (now - anchor) // interval + 1)
    return anchor + steps * interval


def _next_cron(expression: str, tz: ZoneInfo, now: datetime) -> datetime:
    """The earliest wall time matching `expression` whose fold=0 instant is after `now`.

    croniter is asked only for naive wall times, because its own zone handling disagrees with the
    rules above: it moves a gap time to the end of the gap (02:30 -> 03:00 EDT rather than 03:30)
    and fires a repeated wall time twice (01:30 EDT and 01:30 EST). Mapping wall times to instants
    with fold=0 is monotonic except that gap times land among the wall times just after the gap,
    out of order, so the walk starts early enough to see a gap that just ended, keeps the earliest
    instant, and stops at the first real (non-gap) wall time after now. It covers at most the
    matches within about two DST shifts of now, however long ago the schedule last ran.
    """
    local = now.astimezone(tz)
    wall = local.replace(tzinfo=None)
    # How far the offset moved forward in the last day: gap wall times that far before `wall` map
    # to instants after now.
    day_before = (now - _DAY).astimezone(tz).replace(tzinfo=None)
    forward_shift = max(wall - day_before - _DAY, timedelta(0))
    candidates = croniter(expression, wall - forward_shift, ret_type=datetime)
    best: datetime | None = None
    best_wall = wall
    while True:
        candidate = candidates.get_next(datetime)
        # A wall time more than a day after best's own cannot map to an earlier instant: no zone's
        # offset has ever moved by more than a day (Pacific/Apia skipped exactly one in 2011).
        if best is not None and candidate > best_wall + _DAY:
            return best
        fire = _wall_to_utc(candidate, tz)
        if fire <= now:
            # Already past: the look-back, or a repeated hour's wall times, fired the first time.
            continue
        if best is None or fire < best:
            best, best_wall = fire, fire.astimezone(tz).replace(tzinfo=None)
        if _exists(candidate, tz):
            return best
