"""The stall watchdog (CODEX_GATEWAY_STALL_TIMEOUT_MS): a run whose codex goes silent, no command of
its own running, is stopped as stalled (408 / DEADLINE_EXCEEDED, reason RUN_STALLED, status
`timeout`) long before its deadline, nothing left running and its slot free; a command that runs
longer than the stall timeout is not a stall. The real codex against the scripted model server;
the watchdog's own rules on scripted events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from codex_gateway.v1 import runs_pb2, sessions_pb2
from codex_gateway.v1 import status_pb2 as gw_status
from gateway.config import Config, ConfigError, WebhookConfig
from gateway.errors import RunStalled
from gateway.runs.watchdog import Watchdog, Watchdogs
from tests.fakes import AGENTS_DIR
from tests.fakes.model_server import ModelServer, write_codex_home
from tests.fakes.webhook_receiver import Receiver
from tests.gateway.test_limits import error_info, rpc_error
from tests.gateway.test_metrics import scrape, value
from tests.harness import RunningGateway, running_gateway
from tests.processes import running_below, stat_fields
from tests.statusdetails import grpc_error_body

STALL_MS = 1500
# Far past every stall below: a run that ends RUN_STALLED was not stopped by its deadline.
RUN_TIMEOUT_MS = 120_000


def completion(prompt: str, **fields: Any) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(
        run=runs_pb2.RunInput(prompt=prompt, timeout_ms=RUN_TIMEOUT_MS, **fields)
    )


async def agent_pids(timeout_s: float = 30) -> set[int]:
    """The agents this process runs now (the gateway is in-process: they are its children),
    once there is one."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        pids = {pid for pid in running_below() if stat_fields(pid)[1] == str(os.getpid())}
        if pids:
            return pids
        assert asyncio.get_running_loop().time() < deadline, "no agent started"
        await asyncio.sleep(0.02)


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


async def assert_stalled(gw: RunningGateway, call: Any) -> grpc.aio.AioRpcError:
    error = await rpc_error(call)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == f"Codex was silent for {STALL_MS}ms: the run was stopped as stalled"
    info, _ = error_info(error)
    assert info.reason == "RUN_STALLED"
    assert info.metadata["stall_timeout_ms"] == str(STALL_MS)
    failure = grpc_error_body(error)["failure"]
    assert failure["kind"] == "stalled" and failure["retry_after_ms"] is None
    return error


async def last_run(gw: RunningGateway, *, status: str = "timeout") -> sessions_pb2.RunRecord:
    """The one session's last run, the session's status checked."""
    listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())
    (session,) = listed.sessions
    detail = await gw.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session.session_id))
    assert detail.session.status == status
    return detail.session.run_history[-1]


async def test_a_provider_that_never_answers_is_stopped_as_stalled(
    config_for: Callable[..., Config], receiver_for: Callable[..., Receiver]
) -> None:
    """`stall`: the request is accepted and no response header ever comes; codex would wait for
    ever. The run ends `timeout`/RUN_STALLED; its record, webhook, slot, /status and the
    counter all say so; codex's process group is gone."""
    receiver = receiver_for()
    webhook = WebhookConfig(url=receiver.url, retry_base_ms=20, retry_max_ms=100)
    config = config_for(stall_timeout_ms=STALL_MS, max_concurrent=1, webhook=webhook)
    async with running_gateway(config, background=True) as gw:
        before = await scrape(gw, metadata=())
        call = asyncio.ensure_future(gw.stub.Complete(completion("[[scenario:stall]] hi")))
        (agent,) = await agent_pids()
        await assert_stalled(gw, call)
        assert group_gone(agent)  # codex was a group leader (its own session): all of it is gone
        assert running_below() == {}

        record = await last_run(gw)
        assert record.status == "timeout" and "stalled" in record.error
        assert record.failure.kind == "stalled"
        status = await gw.stub.GetStatus(gw_status.GetStatusRequest())
        assert status.runs_stalled == 1
        assert status.concurrency.active == 0 and status.sessions_running == 0
        after = await scrape(gw, metadata=())
        assert (
            value(after, "codex_gateway_runs_stalled_total")
            - value(before, "codex_gateway_runs_stalled_total")
            == 1
        )
        assert (
            value(after, "codex_gateway_runs_finished_total", source="api", status="timeout")
            - value(before, "codex_gateway_runs_finished_total", source="api", status="timeout")
            == 1
        )
        for _ in range(200):
            if receiver.accepted():
                break
            await asyncio.sleep(0.05)
        (delivered,) = receiver.accepted()
        payload = json.loads(delivered.body)
        assert payload["status"] == "timeout" and "stalled" in payload["error"]

        # The slot is free: the one slot takes the next run.
        done = await gw.stub.Complete(completion("[[reply:after]] again"))
        assert done.result.status == "completed" and done.result.output == "after"


async def test_a_stream_that_goes_silent_is_stalled_before_codexs_idle_timeout(
    tmp_path: Path, config_for: Callable[..., Config], model_server: ModelServer
) -> None:
    """`hang`: response.created, then nothing. codex would wait its own stream idle timeout
    (here 120 s, then fail the turn): the watchdog stops it first."""
    codex_env = write_codex_home(
        tmp_path / "patient-home", model_server.base_url, stream_idle_timeout_ms=120_000
    )
    config = config_for(stall_timeout_ms=STALL_MS)
    config = dataclasses.replace(
        config,
        child_env={**config.child_env, **codex_env},
        codex_home=Path(codex_env["CODEX_HOME"]),
    )
    async with running_gateway(config) as gw:
        await assert_stalled(gw, gw.stub.Complete(completion("[[scenario:hang]] hi")))
        assert running_below() == {}
        assert (await last_run(gw)).status == "timeout"
        assert (await gw.stub.GetStatus(gw_status.GetStatusRequest())).runs_stalled == 1


async def test_a_stalled_attempt_is_retried_and_the_retry_completes(
    config_for: Callable[..., Config], model_server: ModelServer
) -> None:
    """`stalled` is a retried kind: with CODEX_GATEWAY_MAX_RETRIES the first attempt (the
    provider never answers) is stopped by the watchdog, the second gets an answer."""
    config = config_for(stall_timeout_ms=STALL_MS, max_retries=1, retry_delay_ms=100)
    async with running_gateway(config) as gw:
        done = await gw.stub.Complete(completion("[[scenario:stall]] [[fails:1]] hi"))
        assert done.result.status == "completed" and done.result.attempts == 2
        assert (await gw.stub.GetStatus(gw_status.GetStatusRequest())).runs_stalled == 1
        assert (await last_run(gw, status="completed")).attempts == 2


async def test_a_command_longer_than_the_stall_timeout_is_not_a_stall(
    config_for: Callable[..., Config],
) -> None:
    """codex prints nothing while its command runs (item.started .. item.completed): the clock
    is paused. 3 s of stall timeout for codex's own steps, a command of twice that."""
    config = config_for(stall_timeout_ms=3000)
    async with running_gateway(config) as gw:
        result = (
            await gw.stub.Complete(
                completion("[[scenario:tool]] [[cmd:sleep 6 && echo slept-well]]")
            )
        ).result
        assert result.status == "completed" and "slept-well" in result.output
        assert (await gw.stub.GetStatus(gw_status.GetStatusRequest())).runs_stalled == 0


async def test_steady_output_is_not_a_stall(config_for: Callable[..., Config]) -> None:
    """A line a second, for longer than the stall timeout in all."""
    config = config_for(stall_timeout_ms=STALL_MS, codex_bin=AGENTS_DIR / "slow_agent.py")
    async with running_gateway(config) as gw:
        result = (await gw.stub.Complete(completion("hi", env={"FAKE_AGENT_SECONDS": "4"}))).result
        assert result.status == "completed"


async def test_zero_turns_the_watchdog_off(config_for: Callable[..., Config]) -> None:
    """Without it, the stalled provider's run ends at its own deadline."""
    async with running_gateway(config_for(stall_timeout_ms=0)) as gw:
        error = await rpc_error(
            gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="[[scenario:stall]] hi", timeout_ms=2500)
                )
            )
        )
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert error_info(error)[0].reason == "RUN_TIMED_OUT"
        assert running_below() == {}
        assert (await gw.stub.GetStatus(gw_status.GetStatusRequest())).runs_stalled == 0


async def test_a_stalled_agent_that_ignores_sigint_is_killed_with_its_child(
    tmp_path: Path, config_for: Callable[..., Config]
) -> None:
    """Stopped the usual way: SIGINT, the grace, then SIGKILL to the group and every descendant
    (the child here is in a session of its own, as codex's commands are)."""
    pidfile = tmp_path / "child.pid"
    config = config_for(
        stall_timeout_ms=STALL_MS,
        stop_grace_ms=500,
        codex_bin=AGENTS_DIR / "hang_agent.py",
    )
    env = {
        "FAKE_AGENT_IGNORE_SIGINT": "1",
        "FAKE_AGENT_SPAWN_CHILD": "1",
        "FAKE_AGENT_CHILD_PIDFILE": str(pidfile),
    }
    async with running_gateway(config) as gw:
        await assert_stalled(gw, gw.stub.Complete(completion("hi", env=env)))
        child = int(pidfile.read_text())
        assert not Path(f"/proc/{child}").exists() or stat_fields(child)[0] in ("Z", "X")
        assert running_below() == {}


async def test_a_stall_while_streaming_ends_the_stream_with_its_status(
    config_for: Callable[..., Config],
) -> None:
    async with running_gateway(config_for(stall_timeout_ms=STALL_MS)) as gw:
        kinds = []
        stream = gw.stub.StreamCompletion(
            runs_pb2.StreamCompletionRequest(
                run=runs_pb2.RunInput(prompt="[[scenario:stall]] hi", timeout_ms=RUN_TIMEOUT_MS)
            )
        )

        async def read() -> None:
            async for message in stream:
                kinds.append(message.WhichOneof("kind"))

        await assert_stalled(gw, read())
        assert kinds[0] == "started"
        assert running_below() == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, 300_000, id="default"),
        pytest.param("0", 0, id="off"),
        pytest.param("1500", 1500, id="set"),
    ],
)
def test_the_variable_is_read_in_milliseconds(
    tmp_path: Path, value: str | None, expected: int
) -> None:
    env = {} if value is None else {"CODEX_GATEWAY_STALL_TIMEOUT_MS": value}
    assert Config.from_env(env, cwd=tmp_path).stall_timeout_ms == expected


@pytest.mark.parametrize("value", ["-1", "5s", "1e3"])
def test_a_bad_stall_timeout_names_its_variable(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="CODEX_GATEWAY_STALL_TIMEOUT_MS"):
        Config.from_env({"CODEX_GATEWAY_STALL_TIMEOUT_MS": value}, cwd=tmp_path)


# The watchdog's rules, on scripted events (no process: what it is told, and time).


def started(item_id: str, kind: str = "command_execution") -> dict[str, Any]:
    return {"type": "item.started", "item": {"id": item_id, "type": kind}}


def completed(item_id: str, kind: str = "command_execution") -> dict[str, Any]:
    return {"type": "item.completed", "item": {"id": item_id, "type": kind}}


async def test_silence_raises_run_stalled_and_counts_it() -> None:
    watchdogs = Watchdogs(100)
    with pytest.raises(RunStalled) as caught:
        async with watchdogs.watch():
            await asyncio.sleep(30)
    assert caught.value.stall_timeout_ms == 100 and watchdogs.stopped == 1


async def test_overlapping_tools_pause_the_clock_until_the_last_one_ends() -> None:
    watchdogs = Watchdogs(200)
    with pytest.raises(RunStalled):
        async with watchdogs.watch() as watchdog:
            for event in (started("item_1"), started("item_2", "mcp_tool_call")):
                watchdog.feed()
                watchdog.observe(event)
            await asyncio.sleep(1.0)  # five stall timeouts, paused
            watchdog.feed()
            watchdog.observe(completed("item_1"))
            assert watchdog.paused
            await asyncio.sleep(1.0)  # still paused: item_2 runs
            assert watchdogs.stopped == 0
            watchdog.feed()
            watchdog.observe(completed("item_2", "mcp_tool_call"))
            assert not watchdog.paused
            await asyncio.sleep(30)  # silence again: a stall
    assert watchdogs.stopped == 1


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(started("item_1", "file_change"), id="file-change"),
        pytest.param(started("item_1", "agent_message"), id="message"),
        pytest.param({"type": "item.started", "item": "odd"}, id="not-an-object"),
        pytest.param({"type": "item.started"}, id="no-item"),
        pytest.param(completed("item_9"), id="end-of-an-unknown-item"),
    ],
)
async def test_other_items_do_not_pause_the_clock(event: dict[str, Any]) -> None:
    with pytest.raises(RunStalled):
        async with Watchdog(100) as watchdog:
            watchdog.observe(event)
            assert not watchdog.paused
            await asyncio.sleep(30)


async def test_output_keeps_it_quiet_and_a_finished_body_leaves_nothing_armed() -> None:
    watchdogs = Watchdogs(300)
    async with watchdogs.watch() as watchdog:
        for _ in range(10):  # a second in all, fed every 0.1 s
            await asyncio.sleep(0.1)
            watchdog.feed()
    await asyncio.sleep(0.6)  # past its timeout: nothing fires once it is left
    assert watchdogs.stopped == 0 and not watchdog.stalled


async def test_zero_is_off() -> None:
    async with Watchdog(0) as watchdog:
        watchdog.observe(started("item_1"))
        await asyncio.sleep(0.2)
    assert not watchdog.stalled


async def test_a_callers_cancel_stays_a_cancel() -> None:
    async def body() -> None:
        async with Watchdog(60_000):
            await asyncio.sleep(30)

    task = asyncio.ensure_future(body())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outer_deadline_that_expires_first_stays_a_timeout() -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1), Watchdog(60_000):
            await asyncio.sleep(30)


async def test_both_expiring_together_is_the_deadline() -> None:
    """The run's deadline wins a tie: its cancel and the watchdog's arrive together."""
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout_at(loop.time() + 0.2), Watchdog(200):
            # Hold the loop past both: their callbacks then run in the same iteration.
            await asyncio.sleep(0.05)
            time.sleep(0.4)  # the point: the loop is held past both timers
            await asyncio.sleep(30)
