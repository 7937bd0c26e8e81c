"""Schemathesis against the bridge's own OpenAPI document: no generated request, valid or not, to
any endpoint gets a server error, and the gateway process behind it survives with every slot free.

The fuzzer runs as its own process (the `schemathesis` CLI) against a real `python -m gateway
serve` whose agent is the echo fake. Real ids are seeded first and offered through dictionaries, so
most requests reach a real session or trigger rather than stopping at a 404, and a share still
gets generated ids. A followed tail never ends by design: its operation is fuzzed as Server-Sent
Events, which schemathesis reads until a request timeout and records as cut short, not as an error.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from tests.faults.spawned import Spawned, agents_of, gateway_env, running

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SEED = 20261125
TAIL_TIMEOUT_S = 3  # longer than the bridge's wait for a stream's first message (2 s)

CONFIG = """\
[dictionaries.session_ids]
values = [{session_ids}]

[dictionaries.trigger_ids]
values = [{trigger_ids}]

[parameters]
"path.session_id" = {{ dictionary = "session_ids", probability = 0.75 }}
"path.trigger_id" = {{ dictionary = "trigger_ids", probability = 0.75 }}
"body.session_id" = {{ dictionary = "session_ids", probability = 0.3 }}

[[operations]]
include-operation-id = "TailSession"
request-timeout = {tail_timeout}
headers = {{ Accept = "text/event-stream" }}
"""


async def seed_ids(client: httpx.AsyncClient) -> tuple[list[str], list[str]]:
    """A completed session (by both of its ids) and a trigger that will never fire."""
    run = await client.post("/completion", json={"prompt": "seed the fuzzer"})
    assert run.status_code == 200, run.text
    body = run.json()
    trigger = await client.post(
        "/triggers",
        json={
            "id": "fuzz-seed",
            "prompt_text": "never runs",
            "enabled": False,
            "schedule": {"mode": "once", "at": "2099-01-01T00:00:00Z"},
        },
    )
    assert trigger.status_code == 200, trigger.text
    return [body["session_id"], body["codex_session_id"]], ["fuzz-seed"]


def quoted(values: list[str]) -> str:
    return ", ".join(f'"{value}"' for value in values)


def junit_failures(report: Path, limit: int = 5) -> str:
    """The first failures of the JUnit report, with the reproduction schemathesis gives."""
    if not report.exists():
        return "(no JUnit report)"
    found = []
    cases = ET.parse(report).getroot().iter("testcase")  # noqa: S314  # our own fuzzer's report
    for case in cases:
        for problem in [*case.iter("failure"), *case.iter("error")]:
            found.append(f"{case.get('name')}: {(problem.get('message') or '')[:300]}")
            found.append((problem.text or "")[:1500])
    return "\n".join(found[: 2 * limit]) or "(the JUnit report lists no failure)"


async def fuzz(tmp_path: Path, *, max_examples: int, max_time_s: int | None = None) -> None:
    """`max_time_s` makes fuzzing and stateful testing repeat until it is spent."""
    assert SCHEMATHESIS.exists(), f"{SCHEMATHESIS} is missing: schemathesis is a dev dependency"
    env = gateway_env(tmp_path, "echo_agent.py", CODEX_GATEWAY_MAX_CONCURRENT="8")
    async with (
        running(env, tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client,
    ):
        session_ids, trigger_ids = await seed_ids(client)
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            CONFIG.format(
                session_ids=quoted(session_ids),
                trigger_ids=quoted(trigger_ids),
                tail_timeout=TAIL_TIMEOUT_S,
            )
        )
        report = tmp_path / "schemathesis-junit.xml"
        argv = [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            f"{gateway.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--phases",
            "coverage,fuzzing,stateful",
            "--seed",
            str(SEED),
            "--max-examples",
            str(max_examples),
            *(["--max-time", str(max_time_s)] if max_time_s else []),
            # One worker: hypothesis sets the recursion limit around each generation, and on
            # CPython 3.11 before 3.11.8 a limit changed by another thread while `ast.parse` runs
            # (hypothesis describing a strategy) raises "SystemError: AST constructor recursion
            # depth mismatch" (cpython gh-106905): a Runtime Error of the fuzzer, not a finding.
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            "--no-color",
        ]
        started = time.monotonic()
        fuzzer = await asyncio.to_thread(
            subprocess.run,
            argv,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=(max_time_s or 0) + 280,
            check=False,
        )
        elapsed = time.monotonic() - started
        summary = fuzzer.stdout[-4000:] + fuzzer.stderr[-2000:]
        assert gateway.running(), f"the gateway died under the fuzzer:\n{gateway.log_tail()}"
        assert fuzzer.returncode == 0, (
            f"schemathesis exited {fuzzer.returncode} after {elapsed:.0f}s\n"
            f"{junit_failures(report)}\n--- output ---\n{summary}\n"
            f"--- gateway log ---\n{gateway.log_tail()}"
        )
        await assert_recovered(gateway, client)


async def assert_recovered(gateway: Spawned, client: httpx.AsyncClient) -> None:
    """Healthy, every slot back and no agent left (runs the fuzzer started may still be
    finishing for a moment, and a tail it left may still be open: both are bounded)."""
    assert (await client.get("/health")).json() == {"status": "ok"}
    deadline = time.monotonic() + 15
    while True:
        concurrency = (await client.get("/status")).json()["concurrency"]
        if concurrency["active"] == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert concurrency == {"active": 0, "max": 8, "available": 8, "waiting": 0}
    assert agents_of(gateway.pid, "echo_agent") == set()
    ok = await client.post("/completion", json={"prompt": "still works"})
    assert ok.status_code == 200, ok.text


@pytest.mark.timeout(300)  # one worker, a richer document: ~90 s on a busy machine
async def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    await fuzz(tmp_path, max_examples=25)


@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_no_generated_request_gets_a_server_error_in_a_long_run(tmp_path: Path) -> None:
    await fuzz(tmp_path, max_examples=1000, max_time_s=300)
