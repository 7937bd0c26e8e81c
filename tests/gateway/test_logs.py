"""Log lines: CODEX_GATEWAY_LOG_FORMAT=json writes one JSON object per line, with the request's
and the run's ids, from both processes; the default stays the human format; no secret leaks."""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from bridge.logformat import (
    HUMAN_FORMAT,
    JsonFormatter,
    SecretRedactor,
    bind,
    current_trace_id,
    log_context,
    unbind,
)
from gateway.config import Config, ConfigError
from tests.faults.spawned import gateway_env, running

HUMAN_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
TOKEN = "api-token-never-logged-42"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines (with the redactor, as configured) into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(SecretRedactor([TOKEN]))
    logger = logging.getLogger("tests.logs.captured")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_line_has_time_level_logger_and_message(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    logger.warning("disk %s is %d%% full", "/data", 93)
    [line] = _lines(buffer)
    assert line["level"] == "WARNING"
    assert line["logger"] == "tests.logs.captured"
    assert line["message"] == "disk /data is 93% full"
    when = datetime.datetime.fromisoformat(str(line["time"]))
    assert when.utcoffset() == datetime.timedelta(0)  # UTC, ISO 8601
    assert abs(datetime.datetime.now(datetime.UTC) - when) < datetime.timedelta(minutes=5)
    assert not {"request_id", "session_id", "run_id", "trace_id", "exception"} & set(line)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("first\nsecond\r\nthird", id="newlines"),
        pytest.param("tab\tand\x00nul\x1b[31m", id="control-characters"),
        pytest.param("é ü 日本語 🚀", id="unicode"),
        pytest.param("line\u2028separator\u2029paragraph\x85next", id="unicode-line-breaks"),
        pytest.param('{"looks": "like json"}\n{"a": 1}', id="json-inside"),
    ],
)
def test_any_message_stays_one_line_and_round_trips(
    captured: tuple[logging.Logger, io.StringIO], message: str
) -> None:
    logger, buffer = captured
    logger.info("%s", message)
    text = buffer.getvalue()
    assert text.count("\n") == 1 and len(text.splitlines()) == 1
    [line] = _lines(buffer)
    assert line["message"] == message
    if "日本語" in message:
        assert "日本語" in text  # kept readable, not \u-escaped


def test_an_exception_is_in_the_same_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("it failed")
    [line] = _lines(buffer)
    assert line["message"] == "it failed"
    assert "Traceback" in str(line["exception"])
    assert "ValueError: bad\nvalue" in str(line["exception"])


def test_the_context_is_in_every_line_of_the_task_and_undone(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    outer = bind(request_id="req-1")
    inner = bind(session_id="s-1", run_id="r-1", ignored=None)
    logger.info("in a run")
    unbind(inner)
    logger.info("in the request")
    unbind(outer)
    logger.info("outside")
    lines = _lines(buffer)
    assert {k: lines[0].get(k) for k in ("request_id", "session_id", "run_id")} == {
        "request_id": "req-1",
        "session_id": "s-1",
        "run_id": "r-1",
    }
    assert lines[1]["request_id"] == "req-1" and "run_id" not in lines[1]
    assert "request_id" not in lines[2] and log_context() == {}


async def test_tasks_started_in_a_context_keep_it(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    import asyncio

    logger, buffer = captured

    async def run() -> None:
        bind(run_id="r-2")
        await asyncio.create_task(background())

    async def background() -> None:
        await asyncio.sleep(0)
        logger.info("background work of the run")

    await asyncio.create_task(run())
    logger.info("not in the run")
    lines = _lines(buffer)
    assert lines[0]["run_id"] == "r-2"
    assert "run_id" not in lines[1]


def test_the_trace_id_of_the_current_span(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = captured
    tracer = TracerProvider().get_tracer("tests")
    assert current_trace_id() is None
    with tracer.start_as_current_span("request") as span:
        logger.info("traced")
        expected = format(span.get_span_context().trace_id, "032x")
    logger.info("untraced")
    traced, untraced = _lines(buffer)
    assert traced["trace_id"] == expected
    assert "trace_id" not in untraced


@pytest.mark.parametrize(
    ("message", "hidden", "shown"),
    [
        pytest.param(f"token {TOKEN} refused", TOKEN, "token *** refused", id="secret"),
        pytest.param(
            "cannot reach postgresql://gw:s3cr%40t@db:5432/gw",
            "s3cr%40t",
            "postgresql://gw:***@db:5432/gw",
            id="url-password",
        ),
    ],
)
def test_secrets_are_never_written(
    captured: tuple[logging.Logger, io.StringIO], message: str, hidden: str, shown: str
) -> None:
    logger, buffer = captured
    logger.error("%s", message)
    try:
        raise RuntimeError(message)
    except RuntimeError:
        logger.exception("failed")
    assert hidden not in buffer.getvalue()
    first, second = _lines(buffer)
    assert shown in str(first["message"])
    assert shown in str(second["exception"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "text"), ("text", "text"), ("json", "json"), (" JSON ", "json")],
)
def test_the_variable(value: str, expected: str) -> None:
    assert Config.from_env({"CODEX_GATEWAY_LOG_FORMAT": value}).log_format == expected


def test_a_bad_format_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CODEX_GATEWAY_LOG_FORMAT"):
        Config.from_env({"CODEX_GATEWAY_LOG_FORMAT": "xml"})


# --- both processes, for real ---------------------------------------------------------------------


async def test_json_lines_from_both_processes_carry_the_request_and_run(tmp_path: Path) -> None:
    env = gateway_env(
        tmp_path,
        "echo_agent.py",
        CODEX_GATEWAY_LOG_FORMAT="json",
        CODEX_GATEWAY_LOG_LEVEL="2",
        CODEX_GATEWAY_API_TOKEN=TOKEN,
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        running(env, tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60, trust_env=False) as client,
    ):
        response = await client.post(
            "/completion",
            json={"prompt": "hello"},
            headers={**auth, "X-Request-Id": "logs-e2e-1"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "logs-e2e-1"
        answer = response.json()
        missing = await client.get("/sessions/nope", headers=auth)
        assert missing.status_code == 404
        assert missing.json()["request_id"] == missing.headers["x-request-id"]
    text = gateway.log_path.read_text(encoding="utf-8")
    assert TOKEN not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    loggers = {str(line["logger"]) for line in lines}
    assert "bridge" in loggers  # the bridge child logs JSON too
    assert any(name.startswith("gateway") for name in loggers)
    ours = [line for line in lines if line.get("request_id") == "logs-e2e-1"]
    started = [line for line in ours if "started" in str(line["message"])]
    ended = [line for line in ours if "ended" in str(line["message"])]
    assert started and ended, ours
    for line in (*started, *ended):
        assert line["session_id"] == answer["session_id"]
        assert line["run_id"] == answer["run_id"]


async def test_the_default_is_the_human_format(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, "echo_agent.py", CODEX_GATEWAY_LOG_LEVEL="1")
    async with (
        running(env, tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60, trust_env=False) as client,
    ):
        response = await client.post("/completion", json={"prompt": "hello"})
        assert response.status_code == 200, response.text
    lines = [line for line in gateway.log_path.read_text().splitlines() if line.strip()]
    logged = [line for line in lines if HUMAN_LINE.match(line)]
    assert any(" bridge: " in line for line in logged)
    assert any(" gateway.runs.runner: run " in line for line in logged)
    assert not any(line.startswith("{") for line in lines)
    assert HUMAN_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s"
