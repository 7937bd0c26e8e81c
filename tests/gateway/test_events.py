"""Framing and parsing of codex's JSON lines."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.agent.events import LineFramer, OversizedLine, RunOutcome, Usage, parse_line

THREAD = "0199a213-81c0-7800-8aa1-bbab2a035a53"


def frame(chunks: list[bytes], limit: int) -> list[bytes | OversizedLine]:
    framer = LineFramer(limit)
    out: list[bytes | OversizedLine] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    out.extend(framer.close())
    return out


@given(
    lines=st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_framing_is_independent_of_chunk_boundaries(lines: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert frame(chunks, 1000) == lines


@given(size=st.integers(min_value=11, max_value=5000), chunk=st.integers(min_value=1, max_value=64))
def test_an_oversized_line_becomes_one_marker_and_the_next_line_survives(
    size: int, chunk: int
) -> None:
    data = b"x" * size + b"\nafter\n"
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert frame(chunks, 10) == [OversizedLine(size), b"after"]


def test_a_last_line_without_newline_is_flushed() -> None:
    assert frame([b"a\nb"], 10) == [b"a", b"b"]


@given(st.binary(max_size=200))
def test_parse_line_never_raises_and_only_returns_typed_objects(raw: bytes) -> None:
    event = parse_line(raw)
    assert event is None or isinstance(event.get("type"), str)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(body=st.dictionaries(st.text(), _JSON, max_size=5), ascii_only=st.booleans())
def test_parse_line_reads_what_json_reads(body: dict[str, object], ascii_only: bool) -> None:
    """orjson does the reading; the result is json's, to the last bit of every number."""
    raw = json.dumps({"type": "x", **body}, ensure_ascii=ascii_only).encode()
    assert repr(parse_line(raw)) == repr(json.loads(raw))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"type":"x","n":123456789012345678901234567890}', id="integer-past-u64"),
        pytest.param(b'{"type":"x","n":-9223372036854775809}', id="integer-below-i64"),
        pytest.param(b'{"type":"x","n":18446744073709551615}', id="u64-max"),
        pytest.param(b'{"type":"x","n":NaN,"m":-Infinity}', id="nan-and-infinity"),
        pytest.param(b'{"type":"x","n":1e400}', id="float-overflow"),
        pytest.param(b'{"type":"x","s":"\\ud800"}', id="lone-surrogate"),
        pytest.param(b'{"type":"x","a":1,"a":2}', id="duplicate-key"),
        pytest.param('{"type":"x"}'.encode("utf-16-le"), id="utf-16"),
    ],
)
def test_parse_line_agrees_with_json_where_orjson_differs(raw: bytes) -> None:
    assert repr(parse_line(raw)) == repr(json.loads(raw))


def test_parse_line_keeps_non_objects_as_text() -> None:
    for raw in (b"[1,2]", b'"s"', b"42", b"{}", b'{"type": 3}', b"not json", b"{bad"):
        assert parse_line(raw) is None
    assert parse_line(b' {"type":"turn.started"} ') == {"type": "turn.started"}


def test_parse_line_survives_deep_nesting() -> None:
    assert parse_line(b'{"type":"x","a":' + b"[" * 100_000 + b"]" * 100_000 + b"}") is None


def test_outcome_folds_the_documented_stream() -> None:
    outcome = RunOutcome()
    lines = [
        {"type": "thread.started", "thread_id": THREAD},
        {"type": "turn.started"},
        {
            "type": "item.completed",
            "item": {"id": "item_0", "type": "agent_message", "text": "first"},
        },
        {
            "type": "item.completed",
            "item": {
                "type": "command_execution",
                "command": "ls",
                "exit_code": 0,
                "status": "completed",
            },
        },
        {
            "type": "item.completed",
            "item": {"id": "item_2", "type": "agent_message", "text": "last"},
        },
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 200, "cached_input_tokens": 5, "output_tokens": 20},
        },
    ]
    for line in lines:
        outcome.observe(json.loads(json.dumps(line)))
    assert outcome.thread_id == THREAD and outcome.output == "last" and outcome.turn_completed
    assert outcome.usage == Usage(200, 20, 5, 0)
    assert outcome.tool_calls == [
        {"type": "command_execution", "command": "ls", "exit_code": 0, "status": "completed"}
    ]
    assert outcome.failure_message() is None


def test_outcome_reports_the_fatal_error_not_the_reconnect_notices() -> None:
    outcome = RunOutcome()
    outcome.observe({"type": "error", "message": "Reconnecting... 1/5 (x)"})
    outcome.observe({"type": "error", "message": "unexpected status 401"})
    assert outcome.failure_message() == "unexpected status 401"
    outcome.observe({"type": "turn.failed", "error": {"message": "final words"}})
    assert outcome.failure_message() == "final words"


def test_per_run_usage_is_the_difference_of_cumulative_usage() -> None:
    assert Usage(300, 30, 0, 0).minus(Usage(200, 20, 0, 0)) == Usage(100, 10, 0, 0)
    assert Usage(1, 1, 0, 0).minus(Usage(5, 5, 0, 0)) == Usage()
    assert Usage(100, 10).as_dict()["total_tokens"] == 110
