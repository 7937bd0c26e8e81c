"""Stored run records as RunRecord messages: every documented key kept, anything that does not fit
its field skipped alone (older writers, hand edits), never the whole record."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from gateway.api.views import run_record as view
from gateway.sessions.codec import decode_run


def run_record(document: dict[str, Any]) -> Any:
    """A stored record as read (the codec) and answered (the view)."""
    return view(decode_run(document))


FULL = {
    "run_id": "r1",
    "status": "completed",
    "started_at": "2026-11-25T10:00:00.000Z",
    "completed_at": "2026-11-25T10:00:01.500Z",
    "duration_ms": 1500,
    "prompt_preview": "hello",
    "content_preview": "ok",
    "timeout_ms": 120000,
    "resume_session_id": None,
    "model": "gpt-5",
    "source": "completion",
    "attempts": 1,
    "usage": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
    "metadata": {"ticket": "T-1", "n": 3},
}


def test_every_documented_key_is_kept() -> None:
    printed = json_format.MessageToDict(run_record(FULL), preserving_proto_field_name=True)
    expected = {k: v for k, v in FULL.items() if v is not None}
    expected["duration_ms"] = "1500"  # int64 as protojson prints it
    expected["timeout_ms"] = "120000"
    expected["usage"] = {k: str(v) for k, v in FULL["usage"].items()}  # type: ignore[attr-defined]
    expected["metadata"] = {"ticket": "T-1", "n": 3.0}
    assert printed == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("duration_ms", "soon", id="string-for-int"),
        pytest.param("duration_ms", True, id="bool-for-int"),
        pytest.param("duration_ms", 1.5, id="fraction-for-int"),
        pytest.param("attempts", 2**40, id="int32-overflow"),
        pytest.param("status", 3, id="int-for-string"),
        pytest.param("model", ["gpt"], id="list-for-string"),
        pytest.param("usage", "lots", id="string-for-message"),
        pytest.param("metadata", [1, 2], id="list-for-struct"),
        pytest.param("agent_pid", 1234, id="unknown-key"),
    ],
)
def test_a_key_that_does_not_fit_is_skipped_alone(key: str, value: Any) -> None:
    good = json_format.MessageToDict(run_record(FULL), preserving_proto_field_name=True)
    printed = json_format.MessageToDict(
        run_record({**FULL, key: value}), preserving_proto_field_name=True
    )
    good.pop(key, None)
    assert printed == good


def test_integral_floats_count_as_integers_and_bad_usage_keys_are_skipped() -> None:
    message = run_record(
        {"run_id": "r", "duration_ms": 12.0, "usage": {"input_tokens": 5, "total_tokens": "x"}}
    )
    assert message.duration_ms == 12
    assert message.usage.input_tokens == 5 and message.usage.total_tokens == 0
