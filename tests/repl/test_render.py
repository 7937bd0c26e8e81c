"""What the REPL makes of codex events, results and gateway errors."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from rich.console import Console

from bridge.errors import rpc_error_response
from repl.errors import GatewayError
from repl.render import (
    Renderer,
    changes_text,
    clip,
    created_triggers,
    diff_lines,
    event_lines,
    usage_text,
    watched,
)
from repl.rest import _gateway_error, _stream_line
from repl.rpc import _error_details


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
            "401 Unauthorized: Missing API token"
            " · pass --key or set CODEX_GATEWAY_API_KEY (an API key or the API token)",
            id="token",
        ),
        pytest.param(
            GatewayError(
                "500 Internal Server Error",
                "You've hit your usage limit. Try again at 3:04 PM.",
                code="INTERNAL",
                details={
                    "failure": {"kind": "usage_limit", "message": "m", "retry_after_ms": 7_500_000}
                },
            ),
            "500 Internal Server Error: You've hit your usage limit. Try again at 3:04 PM."
            " · failure: usage_limit, the provider says retry after 2 h 5 min",
            id="failure-with-retry-after",
        ),
        pytest.param(
            GatewayError(
                "INTERNAL",
                "boom",
                code="INTERNAL",
                details={"failure": {"kind": "agent_error", "retry_after_ms": "2500"}},
            ),
            "INTERNAL: boom · failure: agent_error, the provider says retry after 2.5 s",
            id="failure-int64-as-text",
        ),
        pytest.param(
            GatewayError(
                "INTERNAL",
                "boom",
                code="INTERNAL",
                details={"failure": {"kind": "agent_crashed", "retry_after_ms": None}},
            ),
            "INTERNAL: boom · failure: agent_crashed",
            id="failure-no-time",
        ),
        pytest.param(
            GatewayError("INTERNAL", "boom", code="INTERNAL", details={"failure": "odd"}),
            "INTERNAL: boom",
            id="failure-unreadable",
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


def _printed(render: Callable[[Renderer], None]) -> str:
    out = Console(file=io.StringIO(), width=120, color_system=None, highlight=False)
    render(Renderer(out, out))
    file = out.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def test_changes_print_as_a_table_with_the_sums_from_rest_or_grpc_json() -> None:
    answer = {
        "session_id": "s",
        "run_id": "0123456789ab",
        "source": "git",
        "base_commit": "abcdef0123456789",
        "files": [
            {"path": "a.py", "status": "modified", "additions": "3", "deletions": "1"},
            {"path": "new.txt", "status": "added", "additions": 2, "deletions": 0},
            {"path": "b.py", "status": "renamed", "old_path": "old.py", "additions": 0},
            {"path": "logo.png", "status": "added", "binary": True},
        ],
        "summary": {"source": "git", "files": 4, "additions": "5", "deletions": "1"},
        "diff_truncated": False,
        "running": False,
    }
    lines = _printed(lambda r: r.changes(answer, full=False)).splitlines()
    assert lines[0] == "run 01234567: 4 file(s), +5 -1 · since abcdef0123"
    assert [line.split() for line in lines[1:]] == [
        ["modified", "+3", "-1", "a.py"],
        ["added", "+2", "-0", "new.txt"],
        ["renamed", "+0", "-0", "old.py", "→", "b.py"],
        ["added", "binary", "logo.png"],
    ]
    assert '"base_commit": "abcdef0123456789"' in _printed(lambda r: r.changes(answer, full=True))


def test_changes_reported_by_codex_have_no_line_counts_and_a_running_run_says_so() -> None:
    answer = {
        "run_id": "r",
        "source": "codex_events",
        "files": [{"path": "/w/x.txt", "status": "added", "additions": 0, "deletions": 0}],
        "summary": {"source": "codex_events", "files": 1},
        "running": True,
    }
    assert _printed(lambda r: r.changes(answer, full=False)).splitlines() == [
        "run r: 1 file(s) (as codex reported them, no line counts) · still running: the changes"
        " so far",
        "added      /w/x.txt",
    ]
    nothing = {"run_id": "r", "source": "git", "files": []}
    assert _printed(lambda r: r.changes(nothing, full=False)) == "run r: 0 file(s), +0 -0\n"


def test_a_diff_is_printed_as_text_in_both_modes_coloured_and_marked_when_cut() -> None:
    diff = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-old\n+new\n ctx\n"
    answer = {"run_id": "r", "source": "git", "files": [], "diff": diff, "diff_truncated": True}
    for full in (True, False):
        printed = _printed(lambda r, full=full: r.changes(answer, full=full))
        assert diff in printed and '"diff"' not in printed
        assert printed.endswith("(the diff is cut here: it is longer than the gateway sends)\n")
    styles = [line.style for line in diff_lines(diff)]
    assert styles == ["bold", "bold", "bold", "cyan", "red", "green", ""]


def test_compact_results_show_the_structured_answer_and_the_changes() -> None:
    result = {
        "output": '{"n": 1}',
        "structured": {"n": 1, "tags": ["a"]},
        "changes": {"source": "git", "files": 2, "additions": "7", "deletions": "3"},
    }
    printed = _printed(lambda r: r.result(result, full=False, streamed=True, watch=[]))
    assert printed == (
        '→ structured:\n{\n  "n": 1,\n  "tags": [\n    "a"\n  ]\n}\n→ changes: 2 file(s), +7 -3\n'
    )
    watching = _printed(
        lambda r: r.result(result, full=False, streamed=True, watch=["structured", "changes"])
    )
    assert watching == (
        '→ structured: {"n": 1, "tags": ["a"]}\n'
        '→ changes: {"source": "git", "files": 2, "additions": "7", "deletions": "3"}\n'
    )
    # REST prints an unset structured answer as null: nothing to show.
    plain = {"output": "hi", "structured": None}
    assert _printed(lambda r: r.result(plain, full=False, streamed=True, watch=[])) == ""
    assert changes_text({"source": "codex_events", "files": 3}) == (
        "3 file(s) (as codex reported them, no line counts)"
    )


def test_a_session_shows_its_parent_and_its_runs_changes() -> None:
    detail = {
        "session_id": "child",
        "status": "completed",
        "forked_from": {"session_id": "parent-id", "codex_session_id": "t"},
        "run_history": [
            {"run_id": "r1", "status": "completed", "source": "completion"},
            {
                "run_id": "r2",
                "status": "completed",
                "source": "prompt",
                "changes": {"source": "git", "files": 1, "additions": "2", "deletions": "0"},
            },
        ],
    }
    printed = _printed(lambda r: r.session(detail, full=False, events=False))
    assert "forked from  parent-id" in printed
    assert "1 file(s) +2 -0" in printed


@pytest.mark.parametrize(
    ("error", "text"),
    [
        pytest.param(
            GatewayError(
                "422 Unprocessable Entity",
                "The answer does not match the output schema",
                code="FAILED_PRECONDITION",
                details={
                    "reason": "OUTPUT_SCHEMA_MISMATCH",
                    "session_id": "s1",
                    "run_id": "r1",
                    "schema_errors": [
                        {"path": "/n", "message": "'x' is not of type 'integer'"},
                        {"path": "", "message": "'m' is a required property"},
                        {"path": "", "message": "and 3 more"},
                    ],
                },
            ),
            "422 Unprocessable Entity: The answer does not match the output schema"
            " · schema clear runs without it"
            " · the answer is kept: show s1 events\n"
            "  - /n: 'x' is not of type 'integer'\n"
            "  - 'm' is a required property\n"
            "  - and 3 more",
            id="mismatch",
        ),
        pytest.param(
            GatewayError(
                "FAILED_PRECONDITION",
                "no",
                code="FAILED_PRECONDITION",
                details={"violations": [{"type": "T", "subject": "x", "description": "d"}]},
            ),
            "FAILED_PRECONDITION: no\n  - x: d",
            id="other-violations",
        ),
        pytest.param(
            GatewayError(
                "422",
                "x",
                details={"schema_errors": [{"path": f"/{i}", "message": "m"} for i in range(22)]},
            ),
            "422: x\n" + "".join(f"  - /{i}: m\n" for i in range(20)) + "  ... and 2 more",
            id="many",
        ),
        pytest.param(
            GatewayError(
                "400 Bad Request",
                "not a PNG: the bytes are an ELF file",
                code="INVALID_ARGUMENT",
                details={"field": "images[1].data"},
            ),
            "400 Bad Request: not a PNG: the bytes are an ELF file · field images[1].data",
            id="image-field",
        ),
        pytest.param(
            GatewayError(
                "400 Bad Request",
                "images[1]: not a PNG",
                code="INVALID_ARGUMENT",
                details={"field": "images[1]"},
            ),
            "400 Bad Request: images[1]: not a PNG",
            id="field-in-message",
        ),
    ],
)
def test_listed_errors_and_fields_are_shown(error: GatewayError, text: str) -> None:
    assert str(error) == text


def test_grpc_error_details_read_as_the_bridges_body_lists_them() -> None:
    status = status_pb2.Status(code=9, message="no match")
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason="OUTPUT_SCHEMA_MISMATCH", metadata={"session_id": "s1", "run_id": "r1"}
        )
    )
    failure = error_details_pb2.PreconditionFailure()
    failure.violations.add(type="OUTPUT_SCHEMA", subject="/a", description="not an integer")
    failure.violations.add(type="OUTPUT_SCHEMA", subject="", description="b is required")
    failure.violations.add(type="OTHER", subject="x", description="y")
    status.details.add().Pack(failure)
    data = status.SerializeToString()
    over_grpc = GatewayError(
        "FAILED_PRECONDITION",
        "no match",
        code="FAILED_PRECONDITION",
        details=_error_details([data]),
    )
    body = rpc_error_response(grpc.StatusCode.FAILED_PRECONDITION, "no match", data).body
    over_rest = _gateway_error("422 Unprocessable Entity", body)
    assert over_grpc.details == over_rest.details
    assert (
        str(over_rest).split("\n")[1:]
        == str(over_grpc).split("\n")[1:]
        == [
            "  - /a: not an integer",
            "  - b is required",
            "  - x: y",
        ]
    )


def test_a_run_that_changed_nothing_prints_no_changes_line() -> None:
    for source in ("git", "codex_events"):
        result = {"changes": {"source": source, "files": 0}}
        assert _printed(lambda r, x=result: r.result(x, full=False, streamed=True, watch=[])) == ""
