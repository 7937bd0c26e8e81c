"""The real codex CLI against the scripted model server: scenarios behave as codex-cli.md says."""

from __future__ import annotations

import time

import pytest

from tests.fakes.model_server import ModelServer
from tests.fakes.scenarios import DEFAULT_REPLY, PATCH_REPLY, REASONING_SUMMARY, TOOL_REPLY
from tests.fakes_tests.conftest import Codex, interrupt_then_kill, parse_events

USAGE_100_10 = {
    "input_tokens": 100,
    "cached_input_tokens": 0,
    "cache_write_input_tokens": 0,
    "output_tokens": 10,
    "reasoning_output_tokens": 0,
}


def test_message_turn_completes(codex: Codex, model_server: ModelServer) -> None:
    run = codex.run("[[scenario:message]] hi")

    assert run.returncode == 0, run.stderr
    assert [e["type"] for e in run.events] == [
        "thread.started",
        "turn.started",
        "item.completed",
        "turn.completed",
    ]
    assert run.messages() == [DEFAULT_REPLY]
    assert run.events[-1]["usage"] == USAGE_100_10


def test_codex_request_is_recorded(codex: Codex, model_server: ModelServer) -> None:
    run = codex.run("[[reply:custom reply]] hello there")

    assert run.messages() == ["custom reply"]
    [request] = model_server.requests
    thread_id = run.events[0]["thread_id"]
    assert request.path == "/v1/responses"
    assert request.scenario == "message"
    assert request.headers["authorization"] == "Bearer dummy"
    assert request.headers["originator"] == "codex_exec"
    assert request.headers["thread-id"] == thread_id
    assert request.body["model"] == "gpt-5.5"
    assert request.body["stream"] is True
    assert request.body["prompt_cache_key"] == thread_id
    assert request.user_texts()[-1] == "[[reply:custom reply]] hello there"


def test_hardened_config_passes_strict_config(codex: Codex) -> None:
    run = codex.run("hi", "--strict-config")

    assert run.returncode == 0, run.stderr
    assert run.messages() == [DEFAULT_REPLY]


def test_tool_runs_the_command_in_the_workspace(codex: Codex, model_server: ModelServer) -> None:
    run = codex.run("[[scenario:tool]] [[cmd:echo hi > made.txt && echo tool-output-42]]")

    assert run.returncode == 0, run.stderr
    assert (codex.workspace / "made.txt").read_text() == "hi\n"
    [command] = [
        e["item"]
        for e in run.events
        if e["type"] == "item.completed" and e["item"]["type"] == "command_execution"
    ]
    assert command["exit_code"] == 0
    assert "tool-output-42" in command["aggregated_output"]
    [reply] = run.messages()
    assert reply.startswith(TOOL_REPLY + "\n")
    assert "tool-output-42" in reply  # the command's output reached the model
    first, second = model_server.requests
    assert first.input[-1]["type"] == "message"
    assert second.input[-1]["type"] == "function_call_output"
    assert run.events[-1]["usage"]["input_tokens"] == 200


def test_patch_adds_hello_txt(codex: Codex) -> None:
    run = codex.run("[[scenario:patch]]")

    assert run.returncode == 0, run.stderr
    assert (codex.workspace / "hello.txt").read_text() == "hello\n"
    changes = [
        e["item"]["changes"]
        for e in run.events
        if e["type"] == "item.completed" and e["item"]["type"] == "file_change"
    ]
    assert changes == [[{"path": str(codex.workspace / "hello.txt"), "kind": "add"}]]
    assert run.messages()[0].startswith(PATCH_REPLY)


def test_reasoning_becomes_a_reasoning_item(codex: Codex) -> None:
    run = codex.run("[[scenario:reasoning]] [[reply:thought it through]]")

    assert run.returncode == 0, run.stderr
    items = [e["item"] for e in run.events if e["type"] == "item.completed"]
    assert [(i["type"], i["text"]) for i in items] == [
        ("reasoning", REASONING_SUMMARY),
        ("agent_message", "thought it through"),
    ]


def test_usage_marker_reaches_turn_completed(codex: Codex) -> None:
    run = codex.run("[[scenario:usage]] [[usage:1234,56]]")

    usage = run.events[-1]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (1234, 56)


def test_resume_replays_history_on_the_same_thread(codex: Codex, model_server: ModelServer) -> None:
    first = codex.run("[[reply:first answer]] remember 42")
    thread_id = first.events[0]["thread_id"]

    second = codex.run("[[scenario:echo_history]] what did I say?", "resume", thread_id)

    assert second.returncode == 0, second.stderr
    assert second.events[0] == {"type": "thread.started", "thread_id": thread_id}
    [summary] = second.messages()
    assert "user:'[[reply:first answer]] remember 42' ; assistant:'first answer'" in summary
    assert summary.endswith("user:'[[scenario:echo_history]] what did I say?'")
    assert second.events[-1]["usage"]["input_tokens"] == 200  # usage is cumulative per thread


def test_then_answers_a_follow_up_turn_without_markers(
    codex: Codex, model_server: ModelServer
) -> None:
    first = codex.run("[[reply:wrong]] [[then:right]] answer")
    assert first.messages() == ["wrong"]
    thread_id = first.events[0]["thread_id"]

    follow_up = codex.run("that was wrong; again", "resume", thread_id)
    assert follow_up.returncode == 0, follow_up.stderr
    assert follow_up.messages() == ["right"]
    # A later turn that carries markers of its own is scripted by them, not by `then`.
    marked = codex.run("[[reply:marked]] again", "resume", thread_id)
    assert marked.messages() == ["marked"]
    assert model_server.requests[1].user_texts()[-1] == "that was wrong; again"


def test_slow_keeps_codex_busy_for_the_sleep(codex: Codex) -> None:
    codex.configure(stream_idle_timeout_ms=10_000)
    started = time.monotonic()

    run = codex.run("[[scenario:slow]] [[sleep:1.5]]")

    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started >= 1.5
    assert run.messages() == [DEFAULT_REPLY]


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("http500", "We\u2019re currently experiencing high demand"),  # the body is ignored
        ("http429", "exceeded retry limit, last status: 429 Too Many Requests"),
        ("http401", "unexpected status 401 Unauthorized: Incorrect API key provided."),
        ("http400", "The model `nope` does not exist."),
        ("failed", "stream disconnected before completion: scripted failure"),
        ("truncate", "stream closed before response.completed"),
        ("close", "stream disconnected before completion: error sending request"),
        ("hang", "idle timeout waiting for SSE"),  # after stream_idle_timeout_ms = 3000
        ("http429quota", "Quota exceeded. Check your plan and billing details."),
        ("http429usage", "You\u2019ve hit your usage limit. Try again later."),
        ("http429usage]] [[reset:600", "You\u2019ve hit your usage limit. Try again at "),
        ("ratelimited]] [[reset:2.5", "rate limit exceeded: Rate limit reached for gpt-5.5"),
        ("ratelimited]] [[reset:2.5", "Please try again in 2.5s."),
        ("context", "Codex ran out of room in the model's context window."),
    ],
)
def test_failure_scenarios_fail_the_turn(
    codex: Codex, model_server: ModelServer, scenario: str, message: str
) -> None:
    run = codex.run(f"[[scenario:{scenario}]] hi")

    assert run.returncode == 1, run.stderr
    assert run.events[-1]["type"] == "turn.failed"
    assert message in run.events[-1]["error"]["message"]
    assert len(model_server.requests) == 1  # the hardened config never retries


def test_stall_hangs_codex_until_it_is_interrupted(codex: Codex, model_server: ModelServer) -> None:
    proc = codex.start("[[scenario:stall]] hi")
    model_server.wait_for_requests(1)

    time.sleep(3)
    assert proc.poll() is None  # codex has no deadline of its own for response headers

    assert interrupt_then_kill(proc) == 1  # SIGINT is enough even while codex waits for headers
    assert proc.stdout is not None
    events = parse_events(proc.stdout.read())
    assert [e["type"] for e in events] == ["thread.started", "turn.started"]
    started = time.monotonic()
    model_server.stop()
    assert time.monotonic() - started < 1.0
