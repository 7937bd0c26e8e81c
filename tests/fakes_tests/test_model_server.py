"""The scripted model server over plain HTTP: SSE shape, scenario selection, recording, stopping."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.model_server import ModelServer, write_codex_home
from tests.fakes.scenarios import DEFAULT_REPLY, SCENARIOS, TOOL_REPLY
from tests.fakes_tests.conftest import Spawn

REPO_ROOT = Path(__file__).resolve().parents[2]


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def post(server: ModelServer, *items: dict[str, Any]) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.post(
            f"{server.base_url}/responses", json={"model": "m", "input": list(items)}
        )


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    """The events of an SSE body, checking that each ``event:`` line names its data's type."""
    assert response.headers["content-type"] == "text/event-stream"
    events = []
    for block in response.text.split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        name = event_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append(data)
    return events


def final_text(events: list[dict[str, Any]]) -> str:
    [done] = [
        e
        for e in events
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "message"
    ]
    return str(done["item"]["content"][0]["text"])


def test_message_streams_the_full_responses_shape(model_server: ModelServer) -> None:
    events = sse(post(model_server, user("[[scenario:message]] hi")))

    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == final_text(events) == DEFAULT_REPLY
    completed = events[-1]["response"]
    assert completed["id"] == events[0]["response"]["id"]
    assert completed["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 10,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 110,
    }


@pytest.mark.parametrize(
    ("items", "scenario", "reply"),
    [
        pytest.param([user("plain")], "message", DEFAULT_REPLY, id="default"),
        pytest.param([user("[[reply:custom words]]")], "message", "custom words", id="reply"),
        pytest.param(
            [user("[[scenario:usage]] [[reply:a]]"), assistant("x"), user("[[scenario:message]]")],
            "message",
            "a",
            id="last-marker-wins-across-messages",
        ),
        pytest.param(
            [user("[[scenario:usage]] [[scenario:reasoning]]")],
            "reasoning",
            DEFAULT_REPLY,
            id="last-marker-wins-in-a-message",
        ),
        pytest.param(
            [assistant("[[scenario:usage]] [[reply:no]]"), user("hi")],
            "message",
            DEFAULT_REPLY,
            id="assistant-text-is-ignored",
        ),
    ],
)
def test_markers_in_user_messages_pick_scenario_and_reply(
    model_server: ModelServer, items: list[dict[str, Any]], scenario: str, reply: str
) -> None:
    events = sse(post(model_server, *items))

    assert final_text(events) == reply
    assert model_server.requests[-1].scenario == scenario


def test_default_scenario_is_settable(model_server: ModelServer) -> None:
    model_server.default_scenario = "http500"

    assert post(model_server, user("no marker")).status_code == 500


def test_requests_are_recorded_with_path_headers_and_body(model_server: ModelServer) -> None:
    post(model_server, user("first"))
    post(model_server, user("second"))

    [first, second] = model_server.wait_for_requests(2)
    assert first.method == "POST"
    assert first.path == "/v1/responses"
    assert first.headers["content-type"] == "application/json"
    assert first.body["model"] == "m"
    assert first.user_texts() == ["first"]
    assert second.input == [user("second")]


def test_tool_asks_for_exec_command_then_answers_with_its_output(model_server: ModelServer) -> None:
    prompt = user("[[scenario:tool]] [[cmd:echo 'a]b' > x]]")
    first = sse(post(model_server, prompt))
    [call] = [e["item"] for e in first if e["type"] == "response.output_item.done"]
    assert call["type"] == "function_call"
    assert call["name"] == "exec_command"
    assert json.loads(call["arguments"]) == {"cmd": "echo 'a]b' > x"}

    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "out 42"}
    second = sse(post(model_server, prompt, call, output))

    assert final_text(second) == f"{TOOL_REPLY}\nout 42"


def test_tool_defaults_to_ls(model_server: ModelServer) -> None:
    [call] = [
        e["item"]
        for e in sse(post(model_server, user("[[scenario:tool]]")))
        if e["type"] == "response.output_item.done"
    ]
    assert json.loads(call["arguments"]) == {"cmd": "ls -1"}


def test_echo_history_summarises_roles_and_texts(model_server: ModelServer) -> None:
    items = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "x"}]},
        user("<environment_context>\n  <cwd>/w</cwd>\n</environment_context>"),
        user("remember 42"),
        assistant("first answer"),
        user("[[scenario:echo_history]] what did I say?"),
    ]

    reply = final_text(sse(post(model_server, *items)))

    assert reply == (
        "developer ; user:<environment_context> ; user:'remember 42' ; "
        "assistant:'first answer' ; user:'[[scenario:echo_history]] what did I say?'"
    )


def test_usage_marker_sets_the_reported_usage(model_server: ModelServer) -> None:
    events = sse(post(model_server, user("[[scenario:usage]] [[usage:7,3]]")))

    usage = events[-1]["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (7, 3, 10)


@pytest.mark.parametrize(
    ("scenario", "status", "code"),
    [
        ("http400", 400, "model_not_found"),
        ("http401", 401, "invalid_api_key"),
        ("http429", 429, "rate_limit_exceeded"),
        ("http429quota", 429, "insufficient_quota"),
        ("context", 400, "context_length_exceeded"),
        ("http500", 500, "server_error"),
        ("http503", 503, "server_error"),
    ],
)
def test_http_error_scenarios_answer_a_json_error(
    model_server: ModelServer, scenario: str, status: int, code: str
) -> None:
    response = post(model_server, user(f"[[scenario:{scenario}]]"))

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_a_429_with_a_reset_says_when_in_retry_after(model_server: ModelServer) -> None:
    response = post(model_server, user("[[scenario:http429]] [[reset:30]]"))

    assert response.status_code == 429 and response.headers["retry-after"] == "30"
    assert "retry-after" not in post(model_server, user("[[scenario:http429]]")).headers


def test_usage_limit_names_its_reset_time_when_given(model_server: ModelServer) -> None:
    before = time.time()
    limited = post(model_server, user("[[scenario:http429usage]] [[reset:120]]"))
    plain = post(model_server, user("[[scenario:http429usage]]"))

    assert limited.status_code == plain.status_code == 429
    error = limited.json()["error"]
    assert error["type"] == "usage_limit_reached"
    assert before + 119 <= error["resets_at"] <= time.time() + 120
    assert "resets_at" not in plain.json()["error"]


def test_ratelimited_fails_the_stream_saying_when_to_try_again(model_server: ModelServer) -> None:
    events = sse(post(model_server, user("[[scenario:ratelimited]] [[reset:4.5]]")))

    assert events[-1]["type"] == "response.failed"
    error = events[-1]["response"]["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].endswith("Please try again in 4.5s.")


def test_fails_answers_the_first_requests_of_a_prompt_with_the_scenario(
    model_server: ModelServer,
) -> None:
    prompt = "[[scenario:http500]] [[fails:2]] once more"
    statuses = [post(model_server, user(prompt)).status_code for _ in range(3)]
    other = post(model_server, user("[[scenario:http500]] [[fails:2]] another prompt"))

    assert statuses == [500, 500, 200]  # then `message`
    assert other.status_code == 500  # counted per prompt
    assert [r.scenario for r in model_server.requests] == [
        "http500",
        "http500",
        "message",
        "http500",
    ]
    times = [r.received_at for r in model_server.requests]
    assert times == sorted(times) and times[0] > 0


def test_unknown_scenario_is_a_400_naming_it(model_server: ModelServer) -> None:
    response = post(model_server, user("[[scenario:nope]]"))

    assert response.status_code == 400
    assert "'nope'" in response.json()["error"]["message"]


def test_slow_is_silent_for_the_sleep_then_answers(model_server: ModelServer) -> None:
    started = time.monotonic()
    events = sse(post(model_server, user("[[scenario:slow]] [[sleep:0.5]]")))

    assert time.monotonic() - started >= 0.5
    assert events[-1]["type"] == "response.completed"


def test_every_scenario_is_documented_in_the_module() -> None:
    import tests.fakes.model_server as module

    assert module.__doc__ is not None
    for name in SCENARIOS:
        assert f"``{name}``" in module.__doc__


@pytest.mark.parametrize("scenario", ["stall", "hang"])
def test_stop_releases_held_requests_promptly(scenario: str) -> None:
    server = ModelServer().start()
    outcome: list[BaseException | int] = []

    def client() -> None:
        try:
            with httpx.Client(trust_env=False, timeout=30) as http:
                response = http.post(f"{server.base_url}/responses", json={"input": []})
                outcome.append(response.status_code)
                response.read()
        except httpx.HTTPError as error:
            outcome.append(error)

    server.default_scenario = scenario
    thread = threading.Thread(target=client)
    thread.start()
    try:
        server.wait_for_requests(1)
        time.sleep(0.2)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        thread.join(2)
        assert not thread.is_alive()
        if scenario == "stall":
            [error] = outcome
            assert isinstance(error, httpx.RemoteProtocolError)  # no status line was ever sent
    finally:
        server.stop()
        thread.join(5)


async def test_async_with_starts_and_stops_the_server() -> None:
    async with (
        ModelServer() as server,
        httpx.AsyncClient(trust_env=False, timeout=10) as client,
    ):
        response = await client.post(f"{server.base_url}/responses", json={"input": []})
    assert response.status_code == 200
    assert DEFAULT_REPLY in response.text


def test_write_codex_home_writes_the_hardened_config(tmp_path: Path) -> None:
    home = tmp_path / "does" / "not" / "exist"

    env = write_codex_home(home, "http://127.0.0.1:1/v1", model="gpt-6-sol")

    assert env == {
        "CODEX_HOME": str(home),
        "FAKE_API_KEY": "dummy",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["model"] == "gpt-6-sol"
    assert config["model_provider"] == "fake"
    assert config["allow_login_shell"] is False
    assert config["analytics"] == {"enabled": False}
    assert config["features"] == {"plugins": False, "unbounded_connection_retries": False}
    assert config["model_providers"]["fake"] == {
        "name": "fake",
        "base_url": "http://127.0.0.1:1/v1",
        "env_key": "FAKE_API_KEY",
        "wire_api": "responses",
        "request_max_retries": 0,
        "stream_max_retries": 0,
        "stream_idle_timeout_ms": 3000,
    }


def test_runs_standalone_until_sigterm(spawn: Spawn) -> None:
    proc = spawn(
        [sys.executable, "-m", "tests.fakes.model_server", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    base_url = line.rsplit(" ", 1)[1].strip()
    assert base_url.startswith("http://127.0.0.1:")
    assert base_url.endswith("/v1")

    with httpx.Client(trust_env=False, timeout=10) as client:
        response = client.post(f"{base_url}/responses", json={"input": [user("hi")]})
    assert DEFAULT_REPLY in response.text

    proc.terminate()
    assert proc.wait(timeout=5) == 0
