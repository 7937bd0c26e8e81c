"""A gateway killed with SIGKILL mid-run: restarted, it reads every session back, records the run
as interrupted, and leaves no agent process alive."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import grpc

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, sessions_pb2, status_pb2
from tests.fakes import AGENTS_DIR
from tests.harness import start_gateway_process
from tests.processes import alive


async def test_sigkill_mid_run_then_restart(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    pidfile = tmp_path / "child.pid"
    env = {
        "CODEX_GATEWAY_CODEX_BIN": str(AGENTS_DIR / "hang_agent.py"),
        "CODEX_GATEWAY_SESSION_DIRS": str(tmp_path / "sessions"),
        "CODEX_GATEWAY_SECURE_SESSION_DIR": str(tmp_path / "secure"),
        "CODEX_GATEWAY_DEFAULT_WORKSPACE": str(workspace),
    }
    first = await start_gateway_process(env, command="grpc")
    try:
        async with grpc.aio.insecure_channel(first.target) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            stream = stub.StreamCompletion(
                runs_pb2.StreamCompletionRequest(
                    run=runs_pb2.RunInput(
                        prompt="x",
                        env={
                            "FAKE_AGENT_SPAWN_CHILD": "1",
                            "FAKE_AGENT_CHILD_PIDFILE": str(pidfile),
                        },
                    )
                )
            )
            session_id = (await stream.read()).started.session_id
            while (await stream.read()).event["type"] != "turn.started":
                pass
            meta = json.loads(
                (tmp_path / "sessions" / f"session-{session_id}" / "meta.json").read_text()
            )
            agent_pid = meta["runs"][-1]["agent_pid"]
            first.process.send_signal(signal.SIGKILL)
            await first.process.wait()
            stream.cancel()
    finally:
        if first.process.returncode is None:
            first.process.kill()
    child_pid = int(pidfile.read_text())
    assert alive(agent_pid) and alive(child_pid)  # orphaned by the crash, for now

    second = await start_gateway_process(env, command="grpc")
    try:
        async with grpc.aio.insecure_channel(second.target) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            detail = (
                await stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id))
            ).session
            assert detail.status == "interrupted"
            assert detail.run_history[-1].status == "interrupted"
            assert detail.run_history[-1].failure.kind == "interrupted"
            for _ in range(50):
                if not alive(agent_pid) and not alive(child_pid):
                    break
                await asyncio.sleep(0.1)
            assert not alive(agent_pid) and not alive(child_pid)
            listed = await stub.ListSessions(sessions_pb2.ListSessionsRequest())
            assert [s.session_id for s in listed.sessions] == [session_id]
            meta_text = (tmp_path / "sessions" / f"session-{session_id}" / "meta.json").read_text()
            json.loads(meta_text)  # not corrupt
            scrape = await stub.GetMetrics(status_pb2.GetMetricsRequest())
            assert b"\ncodex_gateway_runs_interrupted_found_total 1.0\n" in scrape.body.data
    finally:
        second.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.process.wait(), 15)
    assert second.process.returncode == 0
