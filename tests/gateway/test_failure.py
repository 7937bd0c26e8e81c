"""The failure classifier: codex's own texts (measured on 0.169.0, worded in its source) and the
gateway's errors map to kinds; "try again" times become retry_after_ms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import (
    AgentFailed,
    GatewayError,
    InvalidRequest,
    OutputSchemaMismatch,
    RunCancelled,
    RunInterrupted,
    RunStalled,
    RunTimedOut,
    StorageFailed,
)
from gateway.runs.failure import (
    RETRIED,
    FailureKind,
    RunFailure,
    child_zone,
    classify_agent,
    classify_message,
    of_error,
    retry_after_ms,
    warnings_in,
)
from gateway.sessions.model import RunRecord, RunStatus, Session

URL = ", url: http://127.0.0.1:41981/v1/responses"
NOON = datetime(2026, 12, 6, 12, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        pytest.param(f"unexpected status 401 Unauthorized: Incorrect API key provided.{URL}",
                     FailureKind.AUTH, id="401"),
        pytest.param(f"unexpected status 403 Forbidden: nope{URL}", FailureKind.AUTH, id="403"),
        pytest.param("Missing environment variable: `FAKE_API_KEY`.", FailureKind.AUTH,
                     id="no-key"),
        pytest.param("The model `nope` does not exist.", FailureKind.MODEL_NOT_FOUND,
                     id="model"),
        pytest.param("The model `gpt-x` does not exist or you do not have access to it.",
                     FailureKind.MODEL_NOT_FOUND, id="model-access"),
        pytest.param("exceeded retry limit, last status: 429 Too Many Requests",
                     FailureKind.RATE_LIMITED, id="429"),
        pytest.param("rate limit exceeded: Rate limit reached for gpt-5.5 on tokens per min"
                     " (TPM). Please try again in 2.5s.", FailureKind.RATE_LIMITED,
                     id="429-stream"),
        pytest.param("You\u2019ve hit your usage limit. Try again at 3:04 PM.",
                     FailureKind.USAGE_LIMIT, id="usage-limit"),
        pytest.param("You've hit your usage limit. Try again later.", FailureKind.USAGE_LIMIT,
                     id="usage-limit-later"),
        pytest.param("Quota exceeded. Check your plan and billing details.",
                     FailureKind.USAGE_LIMIT, id="quota"),
        pytest.param("Codex ran out of room in the model's context window. Start a new thread"
                     " or clear earlier history before retrying.",
                     FailureKind.CONTEXT_WINDOW_EXCEEDED, id="context"),
        pytest.param("We\u2019re currently experiencing high demand, which may cause temporary"
                     " errors.", FailureKind.PROVIDER_ERROR, id="500"),
        pytest.param(f"unexpected status 503 Service Unavailable: scripted HTTP 503{URL}",
                     FailureKind.PROVIDER_ERROR, id="503"),
        pytest.param("stream disconnected before completion: stream closed before"
                     " response.completed", FailureKind.PROVIDER_ERROR, id="truncated"),
        pytest.param("stream disconnected before completion: idle timeout waiting for SSE",
                     FailureKind.PROVIDER_ERROR, id="silent"),
        pytest.param("stream disconnected before completion: error sending request",
                     FailureKind.PROVIDER_ERROR, id="closed"),
        pytest.param("Connection failed: error sending request", FailureKind.PROVIDER_ERROR,
                     id="refused"),
        pytest.param("exceeded retry limit, last status: 502 Bad Gateway",
                     FailureKind.PROVIDER_ERROR, id="retry-limit-5xx"),
    ],
)  # fmt: skip
def test_codex_messages_name_their_kind(message: str, kind: FailureKind) -> None:
    found = classify_message(message, now=NOON)
    assert found is not None and found.kind == kind
    assert found.message == message  # the raw text is kept


@pytest.mark.parametrize(
    "message",
    [
        "unexpected status 400 Bad Request: something else",
        "boom from model",
        "turn aborted. Something went wrong?",
    ],
)
def test_messages_of_no_known_kind_are_none(message: str) -> None:
    assert classify_message(message) is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param("Please try again in 2.5s.", 2500, id="seconds"),
        pytest.param("Please try again in 11.054s", 11054, id="fraction"),
        pytest.param("try again in 28ms", 28, id="ms"),
        pytest.param("Try again in 35 seconds", 35000, id="word"),
        pytest.param("try again in 2 minutes", 120000, id="minutes"),
        pytest.param("try again in 3 min", 180000, id="min"),
        # Local times name a minute: the wait runs to its end (never early).
        pytest.param("Try again at 12:00 PM.", 30_000, id="this-minute"),
        pytest.param("Try again at 12:05 PM.", 330_000, id="today"),
        pytest.param("Try again at 1:00 PM.", 3_630_000, id="pm"),
        pytest.param("Try again at Dec 7th, 2026 12:00 AM.", 43_230_000, id="tomorrow"),
        pytest.param("Try again at Jan 1st, 2027 3:04 PM.", 2_257_470_000, id="next-year"),
        pytest.param("Try again at 11:00 AM.", 0, id="past"),
        pytest.param("Try again later.", None, id="later"),
        pytest.param("Try again at Foo 1st, 2026 3:04 PM.", None, id="no-month"),
        pytest.param("Try again at Feb 30th, 2027 3:04 PM.", None, id="no-day"),
        pytest.param("nothing said", None, id="none"),
    ],
)
def test_retry_after_is_read_from_the_message(message: str, expected: int | None) -> None:
    assert retry_after_ms(message, now=NOON) == expected


def test_a_local_reset_time_is_read_in_the_zone_codex_wrote_it_in() -> None:
    tokyo = timezone(timedelta(hours=9))
    now = NOON.astimezone(tokyo)  # 9:00:30 PM there
    assert retry_after_ms("Try again at 9:05 PM.", now=now) == 330_000
    zone = child_zone({"TZ": "Asia/Tokyo"})
    assert zone is not None and datetime(2026, 1, 1, tzinfo=zone).utcoffset() == timedelta(hours=9)
    assert child_zone({"TZ": ":Asia/Tokyo"}) is not None
    assert child_zone({"TZ": "Not/AZone"}) is None and child_zone({}) is None


@pytest.mark.parametrize(
    ("message", "exit_code", "stderr", "kind", "text"),
    [
        pytest.param("The model `nope` does not exist.", 1, "", FailureKind.MODEL_NOT_FOUND,
                     "The model `nope` does not exist.", id="reported"),
        pytest.param("boom from model", 1, "", FailureKind.AGENT_ERROR, "boom from model",
                     id="unknown-message"),
        pytest.param(None, 3, "fatal: simulated crash\n", FailureKind.AGENT_CRASHED,
                     "fatal: simulated crash", id="unexpected-exit"),
        pytest.param(None, 101, "thread 'main' panicked at ...\n", FailureKind.AGENT_CRASHED,
                     "thread 'main' panicked at ...", id="panic"),
        pytest.param(None, -9, "", FailureKind.AGENT_CRASHED, "codex was killed by SIGKILL",
                     id="signal"),
        pytest.param(None, -9, "Reading additional input from stdin...\n",
                     FailureKind.AGENT_CRASHED, "codex was killed by SIGKILL", id="signal-noise"),
        pytest.param(None, 1, "Error loading config.toml: unknown field\n",
                     FailureKind.AGENT_ERROR, "Error loading config.toml: unknown field",
                     id="config"),
        pytest.param(None, 1, "Error: Missing environment variable: `FAKE_API_KEY`.\n",
                     FailureKind.AUTH, "Error: Missing environment variable: `FAKE_API_KEY`.",
                     id="stderr-kind"),
        pytest.param(None, 1, "", FailureKind.AGENT_CRASHED, "codex exited with code 1",
                     id="silent-exit"),
        pytest.param("boom", -15, "", FailureKind.AGENT_CRASHED, "boom", id="signal-message"),
    ],
)  # fmt: skip
def test_a_codex_process_failure_is_classified(
    message: str | None, exit_code: int, stderr: str, kind: FailureKind, text: str
) -> None:
    found = classify_agent(message=message, exit_code=exit_code, stderr_tail=stderr)
    assert (found.kind, found.message) == (kind, text)


def test_an_unknown_models_warning_tells_a_404_for_what_it_is() -> None:
    events = [
        {"type": "thread.started", "thread_id": "x"},
        {
            "type": "item.completed",
            "item": {
                "id": "item_0",
                "type": "error",
                "message": "Model metadata for `nope` not found. Defaulting to fallback metadata",
            },
        },
        {"type": "item.completed", "item": {"type": "agent_message", "text": "hi"}},
    ]
    warnings = warnings_in(events)
    assert warnings == [events[1]["item"]["message"]]  # type: ignore[index]
    not_found = "unexpected status 404 Not Found: no such thing"
    found = classify_agent(message=not_found, exit_code=1, stderr_tail="", warnings=warnings)
    assert found.kind == FailureKind.MODEL_NOT_FOUND
    plain = classify_agent(message=not_found, exit_code=1, stderr_tail="")
    assert plain.kind == FailureKind.AGENT_ERROR


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        pytest.param(RunTimedOut(1000), FailureKind.TIMEOUT, id="timeout"),
        pytest.param(RunStalled(5000), FailureKind.STALLED, id="stalled"),
        pytest.param(RunCancelled("Run r was cancelled"), FailureKind.CANCELLED, id="cancelled"),
        pytest.param(RunInterrupted("gone"), FailureKind.INTERRUPTED, id="interrupted"),
        pytest.param(
            OutputSchemaMismatch("no", session_id="s", run_id="r", errors=[]),
            FailureKind.OUTPUT_SCHEMA_MISMATCH,
            id="schema",
        ),
        pytest.param(AgentFailed("codex started thread a instead of resuming b", exit_code=0),
                     FailureKind.AGENT_ERROR, id="thread-mismatch"),
        pytest.param(AgentFailed("We\u2019re currently experiencing high demand", exit_code=1),
                     FailureKind.PROVIDER_ERROR, id="agent-failed-message"),
        pytest.param(StorageFailed("disk full"), FailureKind.GATEWAY_ERROR, id="storage"),
        pytest.param(InvalidRequest("images[0]: not an image", field="images[0]"),
                     FailureKind.INVALID_REQUEST, id="invalid"),
    ],
)  # fmt: skip
def test_the_gateways_errors_map_to_kinds(error: Exception, kind: FailureKind) -> None:
    assert isinstance(error, GatewayError)
    assert of_error(error).kind == kind


def test_an_errors_own_failure_wins() -> None:
    own = RunFailure(FailureKind.RATE_LIMITED, "slow down", 2500)
    assert of_error(AgentFailed("slow down", exit_code=1, failure=own)) is own


def test_the_retried_kinds_are_the_issues_table() -> None:
    assert {str(kind) for kind in RETRIED} == {
        "rate_limited",
        "usage_limit",
        "provider_error",
        "stalled",
        "agent_crashed",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"kind": "auth", "message": "m"}, RunFailure(FailureKind.AUTH, "m"),
                     id="plain"),
        pytest.param({"kind": "rate_limited", "message": "m", "retry_after_ms": 5},
                     RunFailure(FailureKind.RATE_LIMITED, "m", 5), id="after"),
        pytest.param({"kind": "from_the_future", "message": 3, "retry_after_ms": True},
                     RunFailure("from_the_future", ""), id="unknown-kind-kept"),
        pytest.param({"message": "m"}, None, id="no-kind"),
        pytest.param("auth", None, id="not-an-object"),
    ],
)  # fmt: skip
def test_a_stored_failure_reads_leniently(value: object, expected: RunFailure | None) -> None:
    found = RunFailure.from_json(value)
    assert found == expected
    if found is not None and isinstance(value, dict) and value.get("message") == "m":
        assert found.as_json() == {"retry_after_ms": None, **value}


def test_a_run_lost_with_its_process_is_interrupted() -> None:
    session = Session("s", Path("/nonexistent"), secure=False)
    session.runs.append(RunRecord(run_id="r", status=RunStatus.RUNNING, agent_pid=7))
    assert session.interrupt("the gateway restarted", "2026-12-06T12:00:00Z") == [7]
    assert session.runs[0].failure == {
        "kind": "interrupted",
        "message": "the gateway restarted",
        "retry_after_ms": None,
    }


@given(st.text(max_size=300))
def test_any_message_is_classified_without_error(message: str) -> None:
    found = classify_message(message, now=NOON)
    assert found is None or found.kind in set(FailureKind)
    after = retry_after_ms(message, now=NOON)
    assert after is None or after >= 0
    agent = classify_agent(message=message or None, exit_code=1, stderr_tail=message)
    assert agent.kind in set(FailureKind) and len(agent.message) <= 2000
