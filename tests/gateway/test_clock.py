"""The gateway's timestamps: `now_iso` (made once per millisecond) reads as `iso` writes the
same moment, and never goes back between two calls."""

from __future__ import annotations

import re
import time

from gateway.clock import iso, now_iso, system_clock

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_now_iso_is_iso_of_now_to_the_millisecond() -> None:
    for _ in range(200):
        before = iso(system_clock())
        stamp = now_iso()
        after = iso(system_clock())
        assert STAMP.fullmatch(stamp), stamp
        assert before <= stamp <= after  # the same format: text order is time order


def test_now_iso_moves_on_with_the_clock() -> None:
    first = now_iso()
    time.sleep(0.003)
    second = now_iso()
    assert second > first
    stamps = [now_iso() for _ in range(2000)]
    assert stamps == sorted(stamps)
