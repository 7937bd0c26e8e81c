"""What the REPL makes of codex events, results and gateway errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from repl.errors import GatewayError
from repl.render import clip, created_triggers, event_lines, usage_text, watched
from repl.rest import _stream_line


def test_clip_keeps_short_text_and_says_how_long_long_text_was() -> None:
    assert clip("short\n") == "short"
    assert clip("x" * 501) == "x" * 500 + "...(truncated, 501 chars)"


@pytest.mark.parametrize(
    ("event", "lines"),
    [
        pytest.param(
            {"type": "item.completed", "item": {"type": "agent_message", "text": "hi"}},
            ["[agent] hi"],
            id="agent",
        ),
        pytest.param(
            {"type": "item.completed", "item": {"type": "reasoning", "text": "hmm"}},
            ["[reasoning] hmm"],
            id="reasoning",
        ),
        pytest.param(
            {"type": "item.started", "item": {"type": "command_execution", "command": "ls"}},
            ["$ ls"],
            id="command-started",
        ),
        pytest.param(
            {
                "type": "item.completed",
                "item": {
                    "type": "command_execution",
                    "aggregated_output": "a\nb\n",
                    "exit_code": 2,
                },
            },
            ["a\nb", "(exit 2)"],
            id="command-output",
        ),
        pytest.param(
            {
                "type": "item.completed",
                "item": {"type": "file_change", "changes": [{"path": "/w/h.txt", "kind": "add"}]},
            },
            ["[file] add /w/h.txt"],
            id="file-change",
        ),
        pytest.param({"type": "error", "message": "Reconnecting"}, ["[notice] Reconnecting"]),
        pytest.param(
            {"type": "turn.failed", "error": {"message": "boom"}}, ["[failed] boom"], id="failed"
        ),
        pytest.param({"type": "turn.started"}, [], id="quiet"),
        pytest.param({"type": "item.completed", "item": "garbage"}, [], id="garbage"),
    ],
)
def test_compact_event_lines(event: dict[str, Any], lines: list[str]) -> None:
    assert [line.plain for line in event_lines(event)] == lines


def test_usage_and_watched_keys_read_rest_and_grpc_json() -> None:
    assert usage_text({"input_tokens": 100, "output_tokens": 10}) == "100 in / 10 out (total 110)"
    grpc_usage = {"input_tokens": "7", "output_tokens": "3", "total_tokens": "10"}
    assert usage_text(grpc_usage) == "7 in / 3 out (total 10)"
    assert usage_text(None) is None
    result = {"usage": {"total_tokens": 110}, "model": None}
    assert watched(result, "usage.total_tokens") == 110
    assert watched(result, "usage.nope") is None


def test_triggers_come_from_create_trigger_tool_results() -> None:
    def call(tool: str, text: str) -> dict[str, Any]:
        result = {"content": [{"type": "text", "text": text}]}
        item = {"type": "mcp_tool_call", "tool": tool, "result": result}
        return {"type": "item.completed", "item": item}

    trigger = {"id": "t1", "title": "Nightly", "tags": ["ops"]}
    events = [
        call("create_trigger", json.dumps({"trigger": trigger})),
        call("create_trigger", "not json"),
        call("other_tool", json.dumps({"trigger": {"id": "t2"}})),
        {"type": "turn.started"},
    ]
    assert created_triggers(events) == [trigger]


@pytest.mark.parametrize(
    ("error", "line"),
    [
        pytest.param(
            GatewayError("404 Not Found", "Session 'x' not found", code="NOT_FOUND"),
            "404 Not Found: Session 'x' not found",
            id="plain",
        ),
        pytest.param(
            GatewayError(
                "RESOURCE_EXHAUSTED",
                "Too many concurrent requests",
                code="RESOURCE_EXHAUSTED",
                details={"retry_after": "5", "active": "2", "max": "2"},
            ),
            "RESOURCE_EXHAUSTED: Too many concurrent requests (2 of 2 runs active)"
            " · retry after 5 s",
            id="busy",
        ),
        pytest.param(
            GatewayError("401 Unauthorized", "Missing API token", code="UNAUTHENTICATED"),
            "401 Unauthorized: Missing API token · pass --token or set CODEX_GATEWAY_API_TOKEN",
            id="token",
        ),
    ],
)
def test_gateway_errors_are_one_line(error: GatewayError, line: str) -> None:
    assert str(error) == line


def test_stream_lines_become_items_or_errors() -> None:
    started = _stream_line('{"result": {"started": {"session_id": "s", "run_id": "r"}}}')
    assert getattr(started, "session_id", None) == "s"
    with pytest.raises(GatewayError) as caught:
        _stream_line('{"error": {"error": "stopped", "code": "CANCELLED", "http_status": 499}}')
    assert caught.value.code == "CANCELLED" and str(caught.value) == "499: stopped"
    with pytest.raises(GatewayError, match="not JSON"):
        _stream_line("{oops")
