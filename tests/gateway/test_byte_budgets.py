"""Byte budgets of the live feed, the log tails and the answer parts (issue 12, #6 and #11)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.api.views import OMITTED_EVENTS, bounded_structs, clipped
from gateway.sessions import search
from gateway.sessions.feed import FeedItem, LiveFeed
from gateway.sessions.logs import bounded_tail

MIB = 1024 * 1024


async def test_a_follower_that_never_reads_is_dropped_at_its_byte_budget() -> None:
    feed = LiveFeed(buffer=8192, buffer_bytes=4 * MIB)
    with feed.subscribe("s") as follower:
        for n in range(100):
            feed.publish("s", FeedItem("stdout", "x" * MIB, seq=n))
        assert follower.lagged
        assert feed.followers("s") == 0  # cut off: publishing no longer reaches it
        received = [item async for item in follower]
    assert 1 <= len(received) <= 4
    assert sum(len(item.text) for item in received) <= 4 * MIB


async def test_one_item_larger_than_the_budget_still_reaches_an_idle_follower() -> None:
    feed = LiveFeed(buffer_bytes=65_536)
    with feed.subscribe("s") as follower:
        feed.publish("s", FeedItem("stdout", "x" * 100_000))
        feed.publish("s", FeedItem("notice", "run_finished"))
        first = await asyncio.wait_for(follower.__aiter__().__anext__(), 1)
    assert len(first.text) == 100_000


async def test_a_follower_that_keeps_up_is_never_dropped() -> None:
    feed = LiveFeed(buffer_bytes=65_536)
    with feed.subscribe("s") as follower:
        reader = follower.__aiter__()
        for n in range(1000):  # 1,000 x 10 KB: far more than the budget, read as it comes
            feed.publish("s", FeedItem("stdout", "x" * 10_000, seq=n))
            assert (await asyncio.wait_for(reader.__anext__(), 1)).seq == n
        assert not follower.lagged and feed.followers("s") == 1


@pytest.mark.parametrize(
    ("lines", "max_bytes", "expected", "cut"),
    [
        pytest.param(3, None, ["bb", "c" * 10, "d"], False, id="no-budget"),
        pytest.param(3, 100, ["bb", "c" * 10, "d"], False, id="fits"),
        pytest.param(3, 13, ["c" * 10, "d"], True, id="oldest-left-out"),
        pytest.param(3, 4, ["d"], True, id="only-the-last"),
        pytest.param(10, 1000, ["a", "bb", "c" * 10, "d"], False, id="whole-file"),
    ],
)
def test_tail_keeps_the_newest_lines_within_its_byte_budget(
    tmp_path: Path, lines: int, max_bytes: int | None, expected: list[str], cut: bool
) -> None:
    path = tmp_path / "log"
    path.write_text("a\nbb\n" + "c" * 10 + "\nd\n")

    assert bounded_tail(path, lines, max_bytes=max_bytes) == (expected, cut)


def test_a_last_line_over_the_budget_is_cut_to_it(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_text("a\n" + "z" * 5000 + "\n")

    assert bounded_tail(path, 5, max_bytes=100)[0] == ["z" * 100]


def test_a_search_over_a_huge_tail_reads_the_file_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as handle:
        for n in range(40):
            handle.write(f"line {n} " + "z" * 500_000 + "\n")

    hits = search.exact(path, "line 3", max_results=100, context_chars=5, tail_lines=1_000_000)
    tail_hits = search.exact(path, "line 3", max_results=100, context_chars=5, tail_lines=8)

    assert [hit.line for hit in hits] == [4, *range(31, 41)]
    assert [hit.line for hit in tail_hits] == [1, 2, 3, 4, 5, 6, 7, 8][: len(tail_hits)]
    assert all(len(hit.context) <= len("line 3") + 5 for hit in hits)


def test_clipped_cuts_a_long_text_with_a_marker() -> None:
    assert clipped("short", 100, "x") == "short"
    text = clipped("é" * 1000, 101, "read the log")
    assert text.startswith("é" * 50) and "é" * 51 not in text
    assert text.endswith("[gateway: 1899 more bytes omitted; read the log]")


def test_bounded_structs_counts_what_it_leaves_out() -> None:
    events = [{"type": "big", "text": "z" * 1000} for _ in range(10)]

    first = bounded_structs(events, 3500, where="see the tail")
    newest = bounded_structs(events, 3500, newest=True, omitted=2)

    assert len(first) == 4 and first[-1]["type"] == OMITTED_EVENTS
    assert first[-1]["omitted"] == 7
    assert newest[0]["type"] == OMITTED_EVENTS and newest[0]["omitted"] == 9
    assert bounded_structs(events[:2], 3500) == bounded_structs(events[:2], 10_000)
