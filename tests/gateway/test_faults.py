"""Agents that misbehave: the gateway answers clearly, keeps its memory bounded, leaves nothing
running, and stays healthy for the next run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from codex_gateway.v1 import runs_pb2, status_pb2
from gateway.agent.priority import autogroup_nice
from gateway.agent.process import AgentProcess
from gateway.config import Config
from gateway.errors import InvalidRequest
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_gateway
from tests.processes import alive, expected_group_nice, nice_of, running_below, stat_fields


def completion(prompt: str = "hi", **fields: Any) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=prompt, **fields))


async def complete_error(
    gw: RunningGateway, request: runs_pb2.CompleteRequest
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Complete(request)
    return caught.value


async def assert_healthy(gw: RunningGateway) -> None:
    status = await gw.stub.GetStatus(status_pb2.GetStatusRequest())
    assert status.concurrency.active == 0
    assert (await gw.stub.Health(status_pb2.HealthRequest())).status == "ok"
    assert running_below() == {}


@pytest.fixture
def agent_config(config_for: Callable[..., Config]) -> Callable[..., Config]:
    def build(agent: str, **overrides: Any) -> Config:
        return config_for(codex_bin=AGENTS_DIR / agent, **overrides)

    return build


async def test_agent_exiting_non_zero_is_internal_with_its_last_stderr_line(
    agent_config: Callable[..., Config],
) -> None:
    async with running_gateway(agent_config("crash_agent.py")) as gw:
        error = await complete_error(gw, completion())
        assert error.code() == grpc.StatusCode.INTERNAL
        assert error.details() == "fatal: simulated crash"
        await assert_healthy(gw)


async def test_turn_failed_reports_codex_message(agent_config: Callable[..., Config]) -> None:
    async with running_gateway(agent_config("turnfailed_agent.py")) as gw:
        error = await complete_error(gw, completion())
        assert error.code() == grpc.StatusCode.INTERNAL
        assert error.details() == "boom from model"


async def test_hanging_agent_times_out_and_its_child_is_killed(
    agent_config: Callable[..., Config], tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    env = {"FAKE_AGENT_SPAWN_CHILD": "1", "FAKE_AGENT_CHILD_PIDFILE": str(pidfile)}
    async with running_gateway(agent_config("hang_agent.py")) as gw:
        error = await complete_error(gw, completion(timeout_ms=1500, env=env))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert not alive(int(pidfile.read_text()))
        await assert_healthy(gw)


async def test_agents_and_what_they_run_are_nicer_than_the_gateway(
    agent_config: Callable[..., Config], tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    env = {"FAKE_AGENT_SPAWN_CHILD": "1", "FAKE_AGENT_CHILD_PIDFILE": str(pidfile)}
    async with running_gateway(agent_config("hang_agent.py", agent_nice=7)) as gw:
        # A niced agent gets only the CPU nothing else wants: on a busy machine it may take a
        # while to start, so the run's deadline and the wait are generous.
        call = asyncio.ensure_future(gw.stub.Complete(completion(timeout_ms=60_000, env=env)))
        try:
            child = await written_pid(pidfile, call, within_s=60)
            agent = int(stat_fields(child)[1])
            # Seven steps nicer than the gateway (this process), whatever it runs at.
            expected = min(19, nice_of(os.getpid()) + 7)
            assert (nice_of(agent), nice_of(child)) == (expected, expected)
            # Its session's scheduling group too, where the kernel has them.
            group = autogroup_nice(Path(f"/proc/{agent}/autogroup"))
            if group is not None:
                assert group == expected_group_nice(7)
        finally:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await call


async def written_pid(pidfile: Path, call: asyncio.Future[Any], *, within_s: float) -> int:
    """The pid a fake agent writes to `pidfile`; fails naming what ran instead, if the run
    ended first or nothing was written in time."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not (pidfile.exists() and pidfile.read_text()):
        if call.done():
            outcome = call.exception() or call.result()
            raise AssertionError(f"the run ended before its agent wrote {pidfile}: {outcome!r}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no pid in {pidfile} after {within_s}s; {running_below()}")
        await asyncio.sleep(0.02)
    return int(pidfile.read_text())


async def test_agent_ignoring_sigint_is_killed_after_the_grace(
    agent_config: Callable[..., Config], tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    env = {
        "FAKE_AGENT_IGNORE_SIGINT": "1",
        "FAKE_AGENT_SPAWN_CHILD": "1",
        "FAKE_AGENT_CHILD_PIDFILE": str(pidfile),
    }
    async with running_gateway(agent_config("hang_agent.py", stop_grace_ms=300)) as gw:
        error = await complete_error(gw, completion(timeout_ms=1000, env=env))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert not alive(int(pidfile.read_text()))
        await assert_healthy(gw)


async def test_garbage_lines_are_kept_as_text_and_the_turn_still_completes(
    agent_config: Callable[..., Config],
) -> None:
    async with running_gateway(agent_config("garbage_agent.py")) as gw:
        result = (await gw.stub.Complete(completion())).result
        assert result.output == "survived garbage"
        stdout = (Path(result.logs_path) / "stdout.log").read_text()
        assert "[1,2]" in stdout


async def test_a_10mb_line_is_dropped_with_a_marker_and_memory_stays_bounded(
    agent_config: Callable[..., Config],
) -> None:
    async with running_gateway(agent_config("hugeline_agent.py")) as gw:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = (await gw.stub.Complete(completion())).result
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert result.output == "after huge line"
        stdout = (Path(result.logs_path) / "stdout.log").read_text()
        assert "dropped an output line of 10" in stdout
        assert (Path(result.logs_path) / "stdout.log").stat().st_size < 1_000_000
        assert grown_mib < 8, f"peak RSS grew {grown_mib:.1f} MiB for a 10 MB line"


async def test_endless_output_is_stopped_at_the_deadline_with_bounded_memory(
    agent_config: Callable[..., Config],
) -> None:
    async with running_gateway(agent_config("endless_agent.py")) as gw:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        error = await complete_error(gw, completion(timeout_ms=2000))
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert grown_mib < 50, f"peak RSS grew {grown_mib:.1f} MiB"
        await assert_healthy(gw)
    async with running_gateway(agent_config("echo_agent.py")) as gw:
        assert (await gw.stub.Complete(completion())).result.status == "completed"


async def test_empty_run_completes_with_empty_output(agent_config: Callable[..., Config]) -> None:
    async with running_gateway(agent_config("empty_agent.py")) as gw:
        result = (await gw.stub.Complete(completion())).result
        assert result.status == "completed" and result.output == ""


async def test_retry_on_empty_tries_again_then_returns_empty(
    agent_config: Callable[..., Config],
) -> None:
    config = agent_config("empty_agent.py", max_retries=2, retry_delay_ms=10, retry_on_empty=True)
    async with running_gateway(config) as gw:
        result = (await gw.stub.Complete(completion())).result
        assert result.attempts == 3 and result.output == ""


async def test_failed_attempts_are_retried_within_the_budget(
    agent_config: Callable[..., Config],
) -> None:
    config = agent_config("crash_agent.py", max_retries=2, retry_delay_ms=10)
    async with running_gateway(config) as gw:
        error = await complete_error(gw, completion())
        assert error.code() == grpc.StatusCode.INTERNAL
        session_dirs = list(config.session_dirs[0].glob("session-*"))
        meta = (session_dirs[0] / "meta.json").read_text()
        assert json.loads(meta)["runs"][-1]["attempts"] == 3


async def test_missing_codex_binary_is_unavailable(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    async with running_gateway(config_for(codex_bin=tmp_path / "no-codex")) as gw:
        error = await complete_error(gw, completion())
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "not found" in (error.details() or "")
        await assert_healthy(gw)


async def test_concurrent_fault_runs_leave_every_slot_free(
    agent_config: Callable[..., Config],
) -> None:
    async with running_gateway(agent_config("crash_agent.py", max_concurrent=4)) as gw:
        await asyncio.gather(
            *(gw.stub.Complete(completion()) for _ in range(12)), return_exceptions=True
        )
        await assert_healthy(gw)


async def test_a_workspace_removed_before_the_spawn_is_named_not_the_binary(
    tmp_path: Path,
) -> None:
    agent = AgentProcess(
        ["/bin/true"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path / "removed",
        stdin_text="",
        max_line_bytes=1024,
        stderr_tail_bytes=1024,
    )
    with pytest.raises(InvalidRequest, match="workspace is not an existing directory") as raised:
        await agent.start()
    assert raised.value.field == "workspace"


async def test_an_error_right_after_the_spawn_leaves_no_agent_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI once ran the gateway where renicing raised (its own autogroup file was empty), after
    the agent had started: every such agent was left waiting for its prompt, stopped by nobody.
    Renicing no longer raises there (test_priority.py); no real process makes it raise now, so
    it is patched to, standing for any error between the spawn and the run."""

    def failing(pid: int, nice: int) -> int | None:
        raise IndexError("list index out of range")

    monkeypatch.setattr("gateway.agent.process.make_nicer", failing)
    agent = AgentProcess(
        ["sleep", "1000"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        stdin_text="",
        max_line_bytes=1024,
        stderr_tail_bytes=1024,
        nice=7,
    )
    with pytest.raises(IndexError):
        await agent.start()
    assert agent.pid is not None
    assert agent.returncode is not None
    assert not alive(agent.pid)
    assert running_below() == {}
