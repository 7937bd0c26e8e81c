"""The instants of a trigger in cluster mode: named alike by every replica, whenever it looks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.automation.triggers import normalise
from gateway.cluster.triggers import first_instant, instant_after

NOW = datetime(2026, 3, 1, 12, 0, 0, 400_000, tzinfo=UTC)


def _trigger(schedule: dict[str, Any], **fields: Any) -> Any:
    return normalise({"id": "t", "prompt_text": "x", "schedule": schedule, **fields})


@pytest.mark.parametrize(
    ("schedule", "fields", "armed"),
    [
        pytest.param(
            {"mode": "interval", "interval_minutes": 1 / 60},
            {"created_at": "2026-03-01T00:00:00.250Z"},
            datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC) + timedelta(seconds=1),
            id="interval-on-created-at-grid",
        ),
        pytest.param(
            {"mode": "interval", "interval_minutes": 1 / 60},
            {"created_at": "2026-03-01T00:00:00.250Z", "last_fired": "2026-03-01T11:59:59.9Z"},
            datetime(2026, 3, 1, 12, 0, 1, 250_000, tzinfo=UTC),
            id="interval-ignores-last-fired",
        ),
        pytest.param(
            {"mode": "once", "at": "2026-01-01T00:00:00Z"},
            {},
            datetime(2026, 1, 1, tzinfo=UTC),
            id="overdue-once-keyed-by-its-at",
        ),
        pytest.param(
            {"mode": "daily", "time": "14:00", "timezone": "America/Chicago"},
            {},
            datetime(2026, 3, 1, 20, 0, tzinfo=UTC),
            id="daily-wall-time",
        ),
        pytest.param(
            {"mode": "cron", "cron": "*/5 * * * *"},
            {},
            datetime(2026, 3, 1, 12, 5, tzinfo=UTC),
            id="cron",
        ),
        pytest.param(
            {"mode": "interval", "interval_minutes": 1},
            {"enabled": False},
            None,
            id="disabled",
        ),
    ],
)
def test_a_trigger_is_armed_from_its_schedule_alone(
    schedule: dict[str, Any], fields: dict[str, Any], armed: datetime | None
) -> None:
    trigger = _trigger(schedule, **fields)
    assert first_instant(trigger, NOW) == armed
    # Another replica looking later (within the same period) names the same instant.
    if armed is not None and schedule["mode"] != "once":
        assert first_instant(trigger, NOW + timedelta(milliseconds=300)) == armed


def test_settled_instants_are_followed_one_by_one_however_late() -> None:
    trigger = _trigger(
        {"mode": "interval", "interval_minutes": 1 / 60}, created_at="2026-03-01T00:00:00Z"
    )
    instant = first_instant(trigger, NOW)
    assert instant is not None
    walked = [instant]
    for _ in range(4):
        following = instant_after(trigger, walked[-1])
        assert following is not None
        walked.append(following)
    assert [b - a for a, b in itertools.pairwise(walked)] == [timedelta(seconds=1)] * 4
    once = _trigger({"mode": "once", "at": "2026-01-01T00:00:00Z"})
    assert instant_after(once, datetime(2026, 1, 1, tzinfo=UTC)) is None
