"""Trigger schedules: parsing, validation and next-fire computation in every mode and zone."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from gateway.automation.schedule import (
    Schedule,
    ScheduleError,
    describe,
    next_fire,
    parse_schedule,
)

NY = "America/New_York"
LONDON = "Europe/London"
KOLKATA = "Asia/Kolkata"  # +05:30, no DST
CHATHAM = "Pacific/Chatham"  # +12:45 / +13:45
LORD_HOWE = "Australia/Lord_Howe"  # +10:30 / +11:00: a 30-minute DST shift
DUBLIN = "Europe/Dublin"  # tzdata models Irish time with a negative DST offset in winter
ZONES = ["UTC", NY, LONDON, KOLKATA, CHATHAM, LORD_HOWE, DUBLIN]


def utc(text: str) -> datetime:
    """'2026-03-08T07:30Z' (or any ISO form with an offset) as aware UTC."""
    return datetime.fromisoformat(text).astimezone(UTC)


def fire(
    raw: dict[str, object],
    now: str,
    *,
    last_fired: str | None = None,
    created_at: str | None = None,
) -> datetime | None:
    return next_fire(
        parse_schedule(raw),
        now=utc(now),
        last_fired=None if last_fired is None else utc(last_fired),
        created_at=None if created_at is None else utc(created_at),
    )


def wall_to_utc(day: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The documented mapping: a wall time read with fold=0."""
    return datetime.combine(day.date(), at).replace(tzinfo=tz).astimezone(UTC)


# --- next fire: table ----------------------------------------------------------------------------

NEXT_FIRE_CASES = [
    # once
    pytest.param(
        {"at": "2026-05-01T10:00:00Z"},
        "2026-04-01T00:00Z",
        {},
        "2026-05-01T10:00Z",
        id="once-future",
    ),
    pytest.param(
        {"mode": "once", "at": "2026-05-01T10:00:00+02:00"},
        "2026-04-01T00:00Z",
        {},
        "2026-05-01T08:00Z",
        id="once-explicit-offset",
    ),
    pytest.param(
        {"at": "2026-07-01T09:00", "timezone": KOLKATA},
        "2026-04-01T00:00Z",
        {},
        "2026-07-01T03:30Z",
        id="once-naive-is-wall-time-in-zone",
    ),
    pytest.param(
        {"at": "2026-03-08T02:30", "timezone": NY},
        "2026-03-01T00:00Z",
        {},
        "2026-03-08T07:30Z",
        id="once-naive-in-dst-gap-reads-fold0",
    ),
    pytest.param(
        {"at": "2026-05-01T10:00:00z"},
        "2026-04-01T00:00Z",
        {},
        "2026-05-01T10:00Z",
        id="once-lowercase-z",
    ),
    pytest.param(
        {"mode": "once", "time": "2026-05-01T10:00:00Z"},
        "2026-04-01T00:00Z",
        {},
        "2026-05-01T10:00Z",
        id="once-falls-back-to-time",
    ),
    pytest.param(
        {"at": "2026-05-01T10:00:00Z"},
        "2026-06-01T00:00Z",
        {},
        "2026-06-01T00:00Z",
        id="once-overdue-never-fired-is-due-now",
    ),
    pytest.param(
        {"at": "2026-05-01T10:00:00Z"},
        "2026-05-01T10:00Z",
        {},
        "2026-05-01T10:00Z",
        id="once-exactly-now-is-due-now",
    ),
    pytest.param(
        {"at": "2026-05-01T10:00:00Z"},
        "2026-04-01T00:00Z",
        {"last_fired": "2026-03-01T00:00Z"},
        None,
        id="once-already-fired-never-again",
    ),
    pytest.param(
        {"at": "2026-05-01T10:00:00Z"},
        "2026-04-01T10:00Z",
        {},
        "2026-05-01T10:00Z",
        id="once-30-days-ahead-is-not-a-timer-overflow",
    ),
    pytest.param(
        {"at": "2036-04-01T10:00:00Z"},
        "2026-04-01T10:00Z",
        {},
        "2036-04-01T10:00Z",
        id="once-10-years-ahead",
    ),
    pytest.param(
        {"at": "9999-12-31T23:00:00Z"},
        "2026-04-01T10:00Z",
        {},
        "9999-12-31T23:00Z",
        id="once-at-the-end-of-time",
    ),
    # daily
    pytest.param(
        {"time": "09:00"}, "2026-06-15T08:00Z", {}, "2026-06-15T09:00Z", id="daily-later-today"
    ),
    pytest.param(
        {"time": "9:00"},
        "2026-06-15T09:00Z",
        {},
        "2026-06-16T09:00Z",
        id="daily-exactly-now-is-tomorrow",
    ),
    pytest.param(
        {"time": "09:00"},
        "2026-06-15T09:00:00.000001Z",
        {},
        "2026-06-16T09:00Z",
        id="daily-just-after-is-tomorrow",
    ),
    pytest.param(
        {"time": "09:00", "timezone": NY},
        "2026-06-16T03:30Z",
        {},
        "2026-06-16T13:00Z",
        id="daily-at-2330-local-is-tomorrow-not-the-day-after",
    ),
    pytest.param(
        {"time": "23:15", "timezone": NY},
        "2026-06-16T03:16Z",
        {},
        "2026-06-17T03:15Z",
        id="daily-2315-rescheduled-at-2316-is-next-day",
    ),
    pytest.param(
        {"time": "09:00", "tz": KOLKATA},
        "2026-06-15T00:00Z",
        {},
        "2026-06-15T03:30Z",
        id="daily-kolkata-half-hour-offset",
    ),
    pytest.param(
        {"time": "09:00", "timezone": CHATHAM},
        "2026-07-01T00:00Z",
        {},
        "2026-07-01T20:15Z",
        id="daily-chatham-winter-1245",
    ),
    pytest.param(
        {"time": "09:00", "timezone": CHATHAM},
        "2026-01-10T00:00Z",
        {},
        "2026-01-10T19:15Z",
        id="daily-chatham-summer-1345",
    ),
    pytest.param(
        {"time": "09:00", "timezone": LONDON},
        "2026-07-01T00:00Z",
        {},
        "2026-07-01T08:00Z",
        id="daily-london-bst",
    ),
    pytest.param(
        {"time": "09:00", "timezone": LONDON},
        "2026-01-05T00:00Z",
        {},
        "2026-01-05T09:00Z",
        id="daily-london-gmt",
    ),
    pytest.param(
        {"time": "02:30", "timezone": NY},
        "2026-03-08T00:00Z",
        {},
        "2026-03-08T07:30Z",
        id="daily-ny-spring-gap-fires-an-hour-later",
    ),
    pytest.param(
        {"time": "02:30", "timezone": NY},
        "2026-03-08T07:30Z",
        {},
        "2026-03-09T06:30Z",
        id="daily-ny-after-gap-next-day-normal",
    ),
    pytest.param(
        {"time": "01:30", "timezone": NY},
        "2026-11-01T00:00Z",
        {},
        "2026-11-01T05:30Z",
        id="daily-ny-repeated-hour-first-occurrence",
    ),
    pytest.param(
        {"time": "01:30", "timezone": NY},
        "2026-11-01T05:30Z",
        {},
        "2026-11-02T06:30Z",
        id="daily-ny-repeated-hour-never-second-occurrence",
    ),
    pytest.param(
        {"time": "01:30", "timezone": NY},
        "2026-11-01T06:10Z",
        {},
        "2026-11-02T06:30Z",
        id="daily-ny-evaluated-inside-second-occurrence",
    ),
    pytest.param(
        {"time": "01:30", "timezone": LONDON},
        "2026-03-29T00:00Z",
        {},
        "2026-03-29T01:30Z",
        id="daily-london-spring-gap",
    ),
    pytest.param(
        {"time": "01:30", "timezone": LONDON},
        "2026-10-25T00:30Z",
        {},
        "2026-10-26T01:30Z",
        id="daily-london-repeated-hour-once",
    ),
    pytest.param(
        {"time": "02:15", "timezone": LORD_HOWE},
        "2026-10-03T00:00Z",
        {},
        "2026-10-03T15:45Z",
        id="daily-lord-howe-30-minute-gap",
    ),
    pytest.param(
        {"time": "01:45", "timezone": LORD_HOWE},
        "2026-04-04T00:00Z",
        {},
        "2026-04-04T14:45Z",
        id="daily-lord-howe-repeated-half-hour-first",
    ),
    pytest.param(
        {"time": "01:45", "timezone": LORD_HOWE},
        "2026-04-04T14:45Z",
        {},
        "2026-04-05T15:15Z",
        id="daily-lord-howe-repeated-half-hour-once",
    ),
    pytest.param(
        # St John's fell back from 00:01 NDT to 23:01 NST; at 23:30 NST (the second time round)
        # 00:00 on the 7th has already been, in NDT, so the next is the 8th.
        {"time": "00:00", "timezone": "America/St_Johns"},
        "2010-11-07T03:00Z",
        {},
        "2010-11-08T03:30Z",
        id="daily-fall-back-across-midnight-needs-the-third-date",
    ),
    pytest.param(
        {"time": "12:00"},
        "2028-02-28T13:00Z",
        {},
        "2028-02-29T12:00Z",
        id="daily-leap-year-feb-28-to-29",
    ),
    pytest.param(
        {"time": "12:00"},
        "2027-02-28T13:00Z",
        {},
        "2027-03-01T12:00Z",
        id="daily-common-year-feb-28-to-mar-1",
    ),
    pytest.param(
        {"time": "00:15", "timezone": KOLKATA},
        "2028-02-28T19:00Z",
        {},
        "2028-02-29T18:45Z",
        id="daily-leap-day-local-to-mar-1",
    ),
    pytest.param(
        {"time": "00:00"}, "2026-12-31T12:00Z", {}, "2027-01-01T00:00Z", id="daily-year-end"
    ),
    pytest.param(
        {"time": "23:59"}, "2026-04-30T23:59:30Z", {}, "2026-05-01T23:59Z", id="daily-month-end"
    ),
    pytest.param(
        {"time": "23:59"}, "9999-12-31T23:59:30Z", {}, None, id="daily-past-the-end-of-time-never"
    ),
    # interval
    pytest.param(
        {"interval_minutes": 15},
        "2026-01-01T00:20Z",
        {"created_at": "2026-01-01T00:00Z"},
        "2026-01-01T00:30Z",
        id="interval-on-created-at-grid",
    ),
    pytest.param(
        {"interval_minutes": 15},
        "2026-01-01T00:20Z",
        {"created_at": "2026-01-01T00:00Z", "last_fired": "2026-01-01T00:07Z"},
        "2026-01-01T00:22Z",
        id="interval-last-fired-wins",
    ),
    pytest.param(
        {"minutes": "15"},
        "2026-01-01T00:30Z",
        {"created_at": "2026-01-01T00:00Z"},
        "2026-01-01T00:45Z",
        id="interval-now-on-grid-is-next-point",
    ),
    pytest.param(
        {"interval_minutes": 15},
        "2026-01-01T00:20Z",
        {},
        "2026-01-01T00:35Z",
        id="interval-no-anchor-starts-now",
    ),
    pytest.param(
        {"interval_minutes": 15},
        "2026-01-01T00:20Z",
        {"created_at": "2026-02-01T00:00Z"},
        "2026-02-01T00:15Z",
        id="interval-future-anchor-first-step",
    ),
    pytest.param(
        {"interval_minutes": 1.5},
        "2026-01-01T00:02Z",
        {"created_at": "2026-01-01T00:00Z"},
        "2026-01-01T00:03Z",
        id="interval-fractional-minutes",
    ),
    pytest.param(
        {"interval_minutes": 1 / 60},
        "2099-12-31T23:59:59.5Z",
        {"created_at": "2000-01-01T00:00Z"},
        "2100-01-01T00:00Z",
        id="interval-one-second-stale-anchor-a-century-back",
    ),
    pytest.param(
        {"interval_minutes": 7},
        "2026-03-08T12:00Z",
        {"created_at": "2026-03-08T05:00Z", "last_fired": None},
        "2026-03-08T12:07Z",
        id="interval-ignores-dst-it-is-elapsed-time",
    ),
    pytest.param(
        {"interval_minutes": 525_600 * 100},
        "9990-01-01T00:00Z",
        {"created_at": "9980-01-01T00:00Z"},
        None,
        id="interval-past-the-end-of-time",
    ),
    # cron
    pytest.param(
        {"cron": "0 0 29 2 *"}, "2026-03-01T00:00Z", {}, "2028-02-29T00:00Z", id="cron-leap-day"
    ),
    pytest.param(
        {"cron": "0 0 29 2 *"},
        "2096-03-01T00:00Z",
        {},
        "2104-02-29T00:00Z",
        id="cron-leap-day-skips-2100",
    ),
    pytest.param(
        {"cron": "0 0 L * *"},
        "2028-02-10T00:00Z",
        {},
        "2028-02-29T00:00Z",
        id="cron-last-day-of-leap-february",
    ),
    pytest.param(
        {"cron": "0 0 31 * *"},
        "2026-04-01T00:00Z",
        {},
        "2026-05-31T00:00Z",
        id="cron-31st-skips-short-months",
    ),
    pytest.param(
        {"cron": "0 0 13 * 5"},
        "2026-03-01T00:00Z",
        {},
        "2026-03-06T00:00Z",
        id="cron-day-of-month-or-day-of-week",
    ),
    pytest.param(
        {"cron": "0 9 * * 1-5", "timezone": KOLKATA},
        "2026-06-19T12:00Z",
        {},
        "2026-06-22T03:30Z",
        id="cron-weekdays-kolkata-friday-evening-to-monday",
    ),
    pytest.param(
        {"cron": "0 12 * * *", "timezone": CHATHAM},
        "2026-07-01T00:00Z",
        {},
        "2026-07-01T23:15Z",
        id="cron-chatham",
    ),
    pytest.param(
        {"cron": "30 2 * * *", "timezone": NY},
        "2026-03-08T00:00Z",
        {},
        "2026-03-08T07:30Z",
        id="cron-ny-spring-gap-like-daily",
    ),
    pytest.param(
        {"cron": "30 2 * * *", "timezone": NY},
        "2026-03-08T07:30Z",
        {},
        "2026-03-09T06:30Z",
        id="cron-ny-after-gap-next-day",
    ),
    pytest.param(
        {"cron": "30 1 * * *", "timezone": NY},
        "2026-11-01T00:00Z",
        {},
        "2026-11-01T05:30Z",
        id="cron-ny-repeated-hour-first-occurrence",
    ),
    pytest.param(
        {"cron": "30 1 * * *", "timezone": NY},
        "2026-11-01T05:30Z",
        {},
        "2026-11-02T06:30Z",
        id="cron-ny-repeated-hour-never-twice",
    ),
    pytest.param(
        # 02:45 does not exist that day; read with fold=0 it is 03:45 EDT, still ahead at 03:10.
        {"cron": "45 2 * * *", "timezone": NY},
        "2026-03-08T07:10Z",
        {},
        "2026-03-08T07:45Z",
        id="cron-evaluated-just-after-the-gap-sees-gap-times",
    ),
    pytest.param(
        {"cron": "*/30 * * * *", "timezone": NY},
        "2026-11-01T06:10Z",
        {},
        "2026-11-01T07:00Z",
        id="cron-evaluated-inside-second-occurrence",
    ),
    pytest.param(
        {"cron": "30 2 8-14 3 0", "timezone": NY},
        "2026-01-01T00:00Z",
        {},
        "2026-03-01T07:30Z",
        id="cron-day-of-month-or-sunday-in-march",
    ),
    pytest.param(
        {"cron": "30 2 * 3 0#2", "timezone": NY},
        "2026-03-08T07:30Z",
        {},
        "2027-03-14T07:30Z",
        id="cron-always-in-the-gap-still-terminates",
    ),
    pytest.param(
        {"cron": "15 2 * * *", "timezone": LORD_HOWE},
        "2026-10-03T00:00Z",
        {},
        "2026-10-03T15:45Z",
        id="cron-lord-howe-30-minute-gap",
    ),
    pytest.param(
        {"cron": "0 0 * * *", "timezone": "America/St_Johns"},
        "2010-11-07T03:00Z",
        {},
        "2010-11-08T03:30Z",
        id="cron-fall-back-across-midnight-like-daily",
    ),
    pytest.param(
        {"cron": "0 0 1 1 *"}, "2026-04-01T00:00Z", {}, "2027-01-01T00:00Z", id="cron-yearly"
    ),
]


@pytest.mark.parametrize(("raw", "now", "anchors", "expected"), NEXT_FIRE_CASES)
def test_next_fire(
    raw: dict[str, object], now: str, anchors: dict[str, str | None], expected: str | None
) -> None:
    result = fire(raw, now, **anchors)
    assert result == (None if expected is None else utc(expected))
    if result is not None:
        assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "start", "expected"),
    [
        pytest.param(
            {"time": "02:30", "timezone": NY},
            "2026-03-07T00:00Z",
            ["2026-03-07T07:30Z", "2026-03-08T07:30Z", "2026-03-09T06:30Z", "2026-03-10T06:30Z"],
            id="daily-across-spring-forward",
        ),
        pytest.param(
            {"cron": "30 2 * * *", "timezone": NY},
            "2026-03-07T00:00Z",
            ["2026-03-07T07:30Z", "2026-03-08T07:30Z", "2026-03-09T06:30Z", "2026-03-10T06:30Z"],
            id="cron-across-spring-forward",
        ),
        pytest.param(
            {"time": "01:30", "timezone": NY},
            "2026-10-31T00:00Z",
            ["2026-10-31T05:30Z", "2026-11-01T05:30Z", "2026-11-02T06:30Z", "2026-11-03T06:30Z"],
            id="daily-across-fall-back",
        ),
        pytest.param(
            {"cron": "30 1 * * *", "timezone": NY},
            "2026-10-31T00:00Z",
            ["2026-10-31T05:30Z", "2026-11-01T05:30Z", "2026-11-02T06:30Z", "2026-11-03T06:30Z"],
            id="cron-across-fall-back",
        ),
        pytest.param(
            # Gap times 02:00 and 02:30 read with fold=0 are 03:00 and 03:30 EDT, which the
            # expression names anyway: each instant fires once.
            {"cron": "*/30 * * * *", "timezone": NY},
            "2026-03-08T06:00Z",
            ["2026-03-08T06:30Z", "2026-03-08T07:00Z", "2026-03-08T07:30Z", "2026-03-08T08:00Z"],
            id="cron-half-hourly-through-the-gap",
        ),
        pytest.param(
            # Wall times 01:00 and 01:30 fire once, in EDT; the repeated EST hour is quiet. This
            # is the price of "every wall time fires once", and the same rule as daily.
            {"cron": "*/30 * * * *", "timezone": NY},
            "2026-11-01T04:50Z",
            ["2026-11-01T05:00Z", "2026-11-01T05:30Z", "2026-11-01T07:00Z", "2026-11-01T07:30Z"],
            id="cron-half-hourly-through-the-repeated-hour",
        ),
        pytest.param(
            # Lord Howe skips 02:00-02:30. Gap time 02:20 reads as 02:50, after the real 02:40,
            # so the fires come out of the expression's order.
            {"cron": "20,40 2 * * *", "timezone": LORD_HOWE},
            "2026-10-03T00:00Z",
            ["2026-10-03T15:40Z", "2026-10-03T15:50Z", "2026-10-04T15:20Z", "2026-10-04T15:40Z"],
            id="cron-lord-howe-gap-time-fires-after-a-later-wall-time",
        ),
    ],
)
def test_consecutive_fires_across_dst_never_double_or_skip(
    raw: dict[str, object], start: str, expected: list[str]
) -> None:
    schedule = parse_schedule(raw)
    now = utc(start)
    fires = []
    for _ in expected:
        result = next_fire(schedule, now=now, last_fired=None, created_at=None)
        assert result is not None
        fires.append(result)
        now = result
    assert fires == [utc(text) for text in expected]


def test_croniter_alone_moves_gap_times_and_double_fires() -> None:
    """Pins what croniter 7 does with a zone-aware start, the reason schedule.py walks naive
    wall times itself. If this starts failing, croniter changed and the workaround may go."""
    tz = ZoneInfo(NY)
    gap = croniter("30 2 * * *", datetime(2026, 3, 8, 0, 0, tzinfo=tz), ret_type=datetime)
    assert gap.get_next(datetime).astimezone(UTC) == utc("2026-03-08T07:00Z")  # not 07:30Z
    repeated = croniter("30 1 * * *", datetime(2026, 11, 1, 0, 0, tzinfo=tz), ret_type=datetime)
    # (Compared in UTC: an aware time in a repeated hour never equals one in another zone.)
    assert [repeated.get_next(datetime).astimezone(UTC) for _ in range(2)] == [
        utc("2026-11-01T05:30Z"),
        utc("2026-11-01T06:30Z"),  # the same wall time again, an hour later
    ]


def test_next_fire_needs_aware_datetimes() -> None:
    schedule = parse_schedule({"time": "09:00"})
    with pytest.raises(ValueError, match="now"):
        next_fire(schedule, now=datetime(2026, 1, 1), last_fired=None, created_at=None)
    with pytest.raises(ValueError, match="created_at"):
        next_fire(
            schedule,
            now=utc("2026-01-01T00:00Z"),
            last_fired=None,
            created_at=datetime(2026, 1, 1),
        )


def test_next_fire_refuses_an_incomplete_schedule() -> None:
    with pytest.raises(ValueError, match="daily"):
        next_fire(
            Schedule("daily", ZoneInfo("UTC")),
            now=utc("2026-01-01T00:00Z"),
            last_fired=None,
            created_at=None,
        )


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        pytest.param({"cron": "0 9 * * *"}, "cron", id="cron-key"),
        pytest.param(
            {"cron": "0 9 * * *", "time": "09:00", "minutes": 5}, "cron", id="cron-key-wins"
        ),
        pytest.param({"interval_minutes": 5}, "interval", id="interval-minutes-key"),
        pytest.param({"minutes": "5", "time": "09:00"}, "interval", id="minutes-key-beats-time"),
        pytest.param({"time": "09:00"}, "daily", id="time-key"),
        pytest.param({"at": "2026-01-01T00:00Z"}, "once", id="otherwise-once"),
        pytest.param({"interval_minutes": None, "time": "09:00"}, "daily", id="null-is-absent"),
        pytest.param({"mode": "DAILY", "time": "09:00"}, "daily", id="mode-any-case"),
        pytest.param({"mode": " Interval ", "minutes": 5}, "interval", id="mode-trimmed"),
        pytest.param({"mode": "once", "time": "2026-01-01T00:00Z"}, "once", id="mode-beats-keys"),
        pytest.param({"mode": 7, "time": "09:00"}, "daily", id="non-string-mode-is-inferred"),
        pytest.param({"mode": None, "cron": "* * * * *"}, "cron", id="null-mode-is-inferred"),
    ],
)
def test_mode_is_given_or_inferred(raw: dict[str, object], mode: str) -> None:
    assert parse_schedule(raw).mode == mode


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(None, "schedule", id="null"),
        pytest.param([], "schedule", id="array"),
        pytest.param("daily", "schedule", id="string"),
        pytest.param({"mode": "weekly"}, "schedule.mode", id="unknown-mode"),
        pytest.param({"mode": ""}, "schedule.mode", id="empty-mode"),
        pytest.param(
            {"time": "09:00", "timezone": "Mars/Base"}, "schedule.timezone", id="tz-unknown"
        ),
        pytest.param(
            {"time": "09:00", "timezone": "america/new_york"},
            "schedule.timezone",
            id="tz-wrong-case",
        ),
        pytest.param(
            {"time": "09:00", "timezone": "America"}, "schedule.timezone", id="tz-directory"
        ),
        pytest.param(
            {"time": "09:00", "timezone": "../../etc/passwd"}, "schedule.timezone", id="tz-path"
        ),
        pytest.param(
            {"time": "09:00", "timezone": "localtime"}, "schedule.timezone", id="tz-host-local-time"
        ),
        pytest.param({"time": "09:00", "timezone": 5}, "schedule.timezone", id="tz-number"),
        pytest.param({"time": "09:00", "tz": "Nope/Nope"}, "schedule.tz", id="tz-alias"),
        pytest.param({}, "schedule.at", id="once-missing"),
        pytest.param({"at": "tomorrow"}, "schedule.at", id="once-garbage"),
        pytest.param({"at": 1767225600}, "schedule.at", id="once-epoch-number"),
        pytest.param({"at": "2026-02-30T00:00:00Z"}, "schedule.at", id="once-no-such-date"),
        pytest.param({"mode": "once", "time": "soon"}, "schedule.time", id="once-time-fallback"),
        pytest.param({"mode": "daily"}, "schedule.time", id="daily-missing"),
        pytest.param({"time": "24:00"}, "schedule.time", id="daily-24-00"),
        pytest.param({"time": "09:60"}, "schedule.time", id="daily-minute-60"),
        pytest.param({"time": "9"}, "schedule.time", id="daily-no-minutes"),
        pytest.param({"time": "9:5"}, "schedule.time", id="daily-one-digit-minute"),
        pytest.param({"time": "09:00:00"}, "schedule.time", id="daily-seconds"),
        pytest.param({"time": "123:00"}, "schedule.time", id="daily-three-digit-hour"),
        pytest.param(
            {"time": "\uff10\uff19:\uff10\uff10"}, "schedule.time", id="daily-non-ascii-digits"
        ),
        pytest.param({"time": 900}, "schedule.time", id="daily-number"),
        pytest.param({"mode": "daily", "at": "25:00"}, "schedule.at", id="daily-at-fallback"),
        pytest.param({"mode": "interval"}, "schedule.interval_minutes", id="interval-missing"),
        pytest.param({"interval_minutes": 0}, "schedule.interval_minutes", id="interval-zero"),
        pytest.param({"interval_minutes": -5}, "schedule.interval_minutes", id="interval-negative"),
        pytest.param(
            {"interval_minutes": 0.01}, "schedule.interval_minutes", id="interval-under-a-second"
        ),
        pytest.param({"interval_minutes": True}, "schedule.interval_minutes", id="interval-bool"),
        pytest.param({"interval_minutes": "abc"}, "schedule.interval_minutes", id="interval-text"),
        pytest.param({"interval_minutes": "nan"}, "schedule.interval_minutes", id="interval-nan"),
        pytest.param({"interval_minutes": "inf"}, "schedule.interval_minutes", id="interval-inf"),
        pytest.param({"interval_minutes": 1e30}, "schedule.interval_minutes", id="interval-huge"),
        pytest.param(
            {"interval_minutes": 10**400}, "schedule.interval_minutes", id="interval-huge-int"
        ),
        pytest.param({"interval_minutes": [5]}, "schedule.interval_minutes", id="interval-list"),
        pytest.param({"minutes": 0}, "schedule.minutes", id="interval-minutes-alias"),
        pytest.param({"cron": ""}, "schedule.cron", id="cron-empty"),
        pytest.param({"cron": 5}, "schedule.cron", id="cron-number"),
        pytest.param({"cron": "* * * *"}, "schedule.cron", id="cron-four-fields"),
        pytest.param({"cron": "0 * * * * *"}, "schedule.cron", id="cron-six-fields"),
        pytest.param({"cron": "@daily"}, "schedule.cron", id="cron-alias"),
        pytest.param({"cron": "60 * * * *"}, "schedule.cron", id="cron-out-of-range"),
        pytest.param({"cron": "*/0 * * * *"}, "schedule.cron", id="cron-zero-step"),
        pytest.param({"cron": "0 0 31 2 *"}, "schedule.cron", id="cron-feb-31-never"),
        pytest.param({"cron": "0 0 31 4,6 *"}, "schedule.cron", id="cron-31-in-30-day-months"),
        pytest.param({"cron": "R * * * *"}, "schedule.cron", id="cron-random"),
        pytest.param({"cron": "H * * * *"}, "schedule.cron", id="cron-hashed"),
        pytest.param({"cron": "0 0 * * FOO"}, "schedule.cron", id="cron-bad-name"),
    ],
)
def test_invalid_schedules_name_their_field(raw: object, field: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(raw)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        pytest.param(
            {"at": "2026-05-01T10:00:00Z"},
            {"mode": "once", "timezone": "UTC", "at": "2026-05-01T10:00:00Z"},
            id="once",
        ),
        pytest.param(
            {"at": "2026-05-01T10:00:00.250", "tz": KOLKATA},
            {"mode": "once", "timezone": KOLKATA, "at": "2026-05-01T04:30:00.250000Z"},
            id="once-naive-in-zone",
        ),
        pytest.param(
            {"mode": "Daily", "at": "7:05", "timezone": NY},
            {"mode": "daily", "timezone": NY, "time": "07:05"},
            id="daily",
        ),
        pytest.param(
            {"minutes": "90"},
            {"mode": "interval", "timezone": "UTC", "interval_minutes": 90},
            id="interval-whole",
        ),
        pytest.param(
            {"interval_minutes": 0.5},
            {"mode": "interval", "timezone": "UTC", "interval_minutes": 0.5},
            id="interval-fraction",
        ),
        pytest.param(
            {"cron": "  */5   9-17 * * MON-FRI ", "timezone": LONDON},
            {"mode": "cron", "timezone": LONDON, "cron": "*/5 9-17 * * MON-FRI"},
            id="cron-whitespace-normalised",
        ),
        pytest.param(
            {"time": "09:00", "timezone": "", "tz": CHATHAM},
            {"mode": "daily", "timezone": CHATHAM, "time": "09:00"},
            id="empty-timezone-falls-back-to-tz",
        ),
    ],
)
def test_describe_gives_the_normalised_form(
    raw: dict[str, object], normalised: dict[str, object]
) -> None:
    schedule = parse_schedule(raw)
    assert describe(schedule) == normalised
    assert list(describe(schedule)) == list(normalised)
    assert parse_schedule(describe(schedule)) == schedule


# --- properties ----------------------------------------------------------------------------------

FIRST = datetime(2000, 1, 1, tzinfo=UTC)
LAST = datetime(2100, 12, 31, tzinfo=UTC)


@functools.cache
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """The instants (to the minute) in `year` at which `zone` changes its UTC offset."""
    tz = ZoneInfo(zone)
    found = []
    day = datetime(year, 1, 1, tzinfo=UTC)
    while day.year == year:
        after = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != after.astimezone(tz).utcoffset():
            low, high = day, after
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                same = middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            found.append(high.replace(second=0, microsecond=0))
        day = after
    return tuple(found)


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    """Any instant in 2000-2100, often within three hours of one of `zone`'s DST changes."""
    uniform = draw(
        st.datetimes(min_value=FIRST.replace(tzinfo=None), max_value=LAST.replace(tzinfo=None)).map(
            lambda value: value.replace(tzinfo=UTC)
        )
    )
    if not draw(st.booleans()):
        return uniform
    changes = transitions(zone, uniform.year)
    if not changes:
        return uniform
    change = draw(st.sampled_from(changes))
    seconds = draw(st.integers(-3 * 3600, 3 * 3600))
    # Whole minutes are where schedules fire, so land on them (and just around them) often.
    nudge = draw(st.sampled_from([0, 0, 1, -1, 500_000]))
    return change + timedelta(seconds=seconds, microseconds=nudge)


def check_stable(
    schedule: Schedule, now: datetime, result: datetime, anchors: dict[str, datetime | None]
) -> None:
    """Asking again from any later point before the result gives the same result."""
    for later in (result - timedelta(microseconds=1), now + (result - now) / 2):
        if later >= now:
            assert next_fire(schedule, now=later, **anchors) == result


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from(ZONES))
def test_property_once(data: st.DataObject, zone: str) -> None:
    at = data.draw(instants(zone))
    now = data.draw(instants(zone))
    fired = data.draw(st.none() | instants(zone))
    schedule = parse_schedule({"at": at.isoformat(), "timezone": zone})
    result = next_fire(schedule, now=now, last_fired=fired, created_at=None)
    if fired is not None:
        assert result is None
    elif at > now:
        assert result == at
        check_stable(schedule, now, at, {"last_fired": None, "created_at": None})
    else:
        assert result == now  # overdue and never fired: due now


@settings(max_examples=250, deadline=None)
@given(
    st.data(),
    st.sampled_from(ZONES),
    st.integers(0, 23),
    st.sampled_from([0, 0, 15, 30, 45, 59, 7]),
)
def test_property_daily(data: st.DataObject, zone: str, hour: int, minute: int) -> None:
    tz = ZoneInfo(zone)
    now = data.draw(instants(zone))
    schedule = parse_schedule({"time": f"{hour}:{minute:02d}", "timezone": zone})
    anchors: dict[str, datetime | None] = {"last_fired": None, "created_at": None}
    result = next_fire(schedule, now=now, **anchors)
    assert result is not None
    assert result > now
    # The result is H:MM on some local date read with fold=0 (for a gap time that reads as a
    # later wall time on the same date, so look one date back too) ...
    at = time(hour, minute)
    local = result.astimezone(tz)
    days = [local - timedelta(days=1), local]
    matching = [day for day in days if wall_to_utc(day, at, tz) == result]
    assert matching, f"{result} is not {at} in {zone}"
    # ... and the date before it had already fired by now: no day was skipped.
    previous = matching[-1] - timedelta(days=1)
    assert wall_to_utc(previous, at, tz) <= now
    # Never the second occurrence of a repeated wall time.
    assert local.fold == 0
    check_stable(schedule, now, result, anchors)


@settings(max_examples=200, deadline=None)
@given(
    st.data(),
    st.sampled_from(ZONES),
    st.sampled_from([1 / 60, 0.5, 1, 7, 15, 60, 90, 1440, 10_080, 525_600, 0.123456]),
    st.booleans(),
)
def test_property_interval(
    data: st.DataObject, zone: str, minutes: float, use_created_at: bool
) -> None:
    now = data.draw(instants(zone))
    anchor = data.draw(instants(zone))
    last = None if use_created_at else anchor
    created = anchor if use_created_at else data.draw(st.none() | instants(zone))
    schedule = parse_schedule({"interval_minutes": minutes, "timezone": zone})
    assert schedule.interval is not None
    anchors = {"last_fired": last, "created_at": created}
    result = next_fire(schedule, now=now, **anchors)
    assert result is not None
    assert result > now
    steps, remainder = divmod(result - anchor, schedule.interval)
    assert remainder == timedelta(0) and steps >= 1
    assert steps == 1 or result - schedule.interval <= now
    check_stable(schedule, now, result, anchors)


@dataclass(frozen=True)
class CronSets:
    """An independent matcher for plain 5-field expressions (no L, W or #), via croniter.expand."""

    fields: tuple[frozenset[int] | None, ...]  # minute, hour, day, month, weekday; None for "*"

    @classmethod
    def of(cls, expression: str) -> CronSets:
        expanded, _ = croniter.expand(expression)
        return cls(
            tuple(
                None if values[0] == "*" else frozenset(int(value) for value in values)
                for values in expanded
            )
        )

    def matches(self, wall: datetime) -> bool:
        minutes, hours, days, months, weekdays = self.fields
        weekday = (wall.weekday() + 1) % 7  # cron counts from Sunday

        def has(allowed: frozenset[int] | None, value: int) -> bool:
            return allowed is None or value in allowed

        if days is not None and weekdays is not None:
            day_ok = wall.day in days or weekday in weekdays  # cron's OR rule
        else:
            day_ok = has(days, wall.day) and has(weekdays, weekday)
        return (
            has(minutes, wall.minute)
            and has(hours, wall.hour)
            and has(months, wall.month)
            and day_ok
        )


def is_cron_fire(sets: CronSets, tz: ZoneInfo, instant: datetime) -> bool:
    """Whether a minute-aligned instant is a fire, by the module docstring's rule, checked from the
    instant's side: its own wall time at its first occurrence, or a gap wall time read with
    fold=0 (the offset from a day before, since no two changes are that close)."""
    local = instant.astimezone(tz)
    wall = local.replace(tzinfo=None)
    if local.fold == 0 and sets.matches(wall):
        return True
    earlier = (instant - timedelta(days=1)).astimezone(tz).utcoffset()
    if earlier is None or earlier == local.utcoffset():
        return False
    gap_wall = (instant + earlier).replace(tzinfo=None)
    return sets.matches(gap_wall) and gap_wall.replace(tzinfo=tz).astimezone(UTC) == instant


CRON_MINUTES = ["*", "0", "30", "*/15", "5,35", "20,40", "0-10", "59", "*/7"]
CRON_HOURS = ["*", "0", "1", "2", "3", "9", "23", "*/6", "1-3", "0,12"]
CRON_DAYS = ["*", "*", "*", "1", "15", "28", "29", "31", "1-7"]
CRON_MONTHS = ["*", "*", "*", "2", "3,10", "11", "1-6", "4"]
CRON_WEEKDAYS = ["*", "*", "*", "0", "1-5", "6", "MON-FRI", "SUN"]
SCAN = timedelta(hours=6)


@settings(max_examples=200, deadline=None)
@given(
    st.data(),
    st.sampled_from(ZONES),
    st.tuples(
        *(
            st.sampled_from(options)
            for options in (CRON_MINUTES, CRON_HOURS, CRON_DAYS, CRON_MONTHS, CRON_WEEKDAYS)
        )
    ),
)
def test_property_cron(data: st.DataObject, zone: str, fields: tuple[str, ...]) -> None:
    expression = " ".join(fields)
    try:
        schedule = parse_schedule({"cron": expression, "timezone": zone})
    except ScheduleError:
        reject()
    tz = ZoneInfo(zone)
    sets = CronSets.of(expression)
    now = data.draw(instants(zone))
    anchors: dict[str, datetime | None] = {"last_fired": None, "created_at": None}
    result = next_fire(schedule, now=now, **anchors)
    assert result is not None
    assert result > now
    assert is_cron_fire(sets, tz, result)
    wall = result.astimezone(tz).replace(tzinfo=None)
    if sets.matches(wall):  # not a gap time read with fold=0: croniter agrees with the matcher
        assert croniter.match(expression, wall)
    # No fire between now and the result, minute by minute over the next few hours.
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute < min(result, now + SCAN):
        assert not is_cron_fire(sets, tz, minute), f"{minute} fires before {result}"
        minute += timedelta(minutes=1)
    check_stable(schedule, now, result, anchors)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from(ZONES), st.integers(0, 23), st.sampled_from([0, 15, 30, 59]))
def test_property_daily_and_cron_agree(
    data: st.DataObject, zone: str, hour: int, minute: int
) -> None:
    now = data.draw(instants(zone))
    daily = parse_schedule({"time": f"{hour}:{minute:02d}", "timezone": zone})
    cron = parse_schedule({"cron": f"{minute} {hour} * * *", "timezone": zone})
    anchors: dict[str, datetime | None] = {"last_fired": None, "created_at": None}
    assert next_fire(daily, now=now, **anchors) == next_fire(cron, now=now, **anchors)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
SCHEDULE_VALUES = st.one_of(
    JSON_SCALARS,
    st.sampled_from(["09:00", "24:00", "2026-01-01T00:00Z", "5", "* * * * *", "UTC", NY, "cron"]),
    st.lists(JSON_SCALARS, max_size=2),
)
SCHEDULE_KEYS = st.sampled_from(
    ["mode", "at", "time", "timezone", "tz", "interval_minutes", "minutes", "cron", "other"]
)
CRON_TOKENS = st.sampled_from(
    [
        "*",
        "0",
        "5",
        "59",
        "60",
        "-1",
        "*/5",
        "1-5",
        "5-1",
        "L",
        "LW",
        "15W",
        "5#2",
        "5#6",
        "L5",
        "?",
        "JAN",
        "MON",
        "H",
        "R",
        "H(0-5)",
        "/",
        ",",
        "1,",
        "abc",
        "31",
        "0-",
        "*/",
        "l",
        "#",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(SCHEDULE_KEYS, SCHEDULE_VALUES, max_size=4) | JSON_SCALARS)
def test_property_parse_accepts_or_names_a_field(raw: object) -> None:
    try:
        schedule = parse_schedule(raw)
    except ScheduleError as error:
        assert error.field == "schedule" or error.field.startswith("schedule.")
        return
    assert parse_schedule(describe(schedule)) == schedule


@settings(max_examples=300, deadline=None)
@given(st.lists(CRON_TOKENS, min_size=5, max_size=5), st.sampled_from(ZONES), st.data())
def test_property_any_accepted_cron_expression_fires(
    tokens: list[str], zone: str, data: st.DataObject
) -> None:
    try:
        schedule = parse_schedule({"cron": " ".join(tokens), "timezone": zone})
    except ScheduleError as error:
        assert error.field == "schedule.cron"
        return
    now = data.draw(instants(zone))
    result = next_fire(schedule, now=now, last_fired=None, created_at=None)
    assert result is not None and result > now
