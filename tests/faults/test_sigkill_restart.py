"""The gateway SIGKILLed mid-run, again and again, and restarted each time on the same session
directories and ports: every session reads back through REST, every run that was running is
`interrupted`, nothing the dead gateway started (agents, their children) survives the restart,
and every meta.json on disk is valid JSON throughout.

tests/gateway/test_crash_recovery.py does one kill over gRPC; this repeats it with several runs
in flight, sessions that are continued after being interrupted, and a completed session that must
stay completed.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from pathlib import Path

import httpx
import pytest

from gateway.procfs import descendants
from tests.faults.spawned import (
    Spawned,
    gateway_env,
    kill_pids,
    session_metas,
    spawn,
    until_serving,
    wait_until,
)
from tests.harness import free_port
from tests.processes import alive

RUNS_PER_CYCLE = 3


def none_alive(pids: frozenset[int]) -> bool:
    return not any(alive(pid) for pid in pids)


def runs_spawned(sessions: Path, pidfiles: list[Path]) -> bool:
    """Every new run is on disk with its agent, and every agent has started its child."""
    return len(running_runs(sessions)) == len(pidfiles) and all(p.exists() for p in pidfiles)


def running_runs(sessions: Path) -> dict[str, int]:
    """Session id -> agent pid of every run on disk that is running with its agent spawned."""
    found = {}
    for session_id, meta in session_metas(sessions).items():
        runs = meta.get("runs") or []
        if meta.get("status") == "running" and runs and runs[-1].get("agent_pid"):
            found[session_id] = runs[-1]["agent_pid"]
    return found


async def check_read_back(client: httpx.AsyncClient, expected: dict[str, str]) -> None:
    """Every session is listed and readable with the status it should have after a restart."""
    listed = (await client.get("/sessions", params={"limit": "200"})).json()
    assert {s["session_id"] for s in listed} == set(expected)
    for session_id, status in expected.items():
        detail = await client.get(f"/sessions/{session_id}")
        assert detail.status_code == 200, detail.text
        body = detail.json()
        assert body["status"] == status, (session_id, body["status"])
        history = body["run_history"]
        assert history and history[-1]["status"] == status
        assert all(run["status"] != "running" for run in history)


async def start_hanging_runs(
    client: httpx.AsyncClient, tmp_path: Path, cycle: int, continue_ids: list[str]
) -> list[asyncio.Task[httpx.Response]]:
    """RUNS_PER_CYCLE runs that never end, each spawning a child; some continue old sessions."""
    tasks = []
    for n in range(RUNS_PER_CYCLE):
        env = {
            "FAKE_AGENT_SPAWN_CHILD": "1",
            "FAKE_AGENT_CHILD_PIDFILE": str(tmp_path / f"child-{cycle}-{n}.pid"),
        }
        body = {"prompt": f"cycle {cycle} run {n}", "env": env}
        path = "/completion"
        if n < len(continue_ids):
            path = f"/sessions/{continue_ids[n]}/prompt"
        tasks.append(asyncio.ensure_future(client.post(path, json=body)))
    return tasks


async def kill_restart_cycles(tmp_path: Path, cycles: int) -> None:
    sessions = tmp_path / "sessions"
    ports = {"grpc_port": free_port(), "rest_port": free_port()}
    known_pids: set[int] = set()  # every agent and child these runs started, for cleanup
    expected: dict[str, str] = {}
    gateway: Spawned | None = None

    async def restart(agent: str) -> tuple[Spawned, httpx.AsyncClient]:
        env = gateway_env(tmp_path, agent, CODEX_GATEWAY_MAX_CONCURRENT="8")
        spawned = spawn(env, tmp_path / "gateway.log", **ports)
        await until_serving(spawned)
        return spawned, httpx.AsyncClient(base_url=spawned.url, timeout=30, trust_env=False)

    try:
        # A completed session first (echo agent): it must stay completed through every crash.
        gateway, client = await restart("echo_agent.py")
        async with client:
            done = await client.post("/completion", json={"prompt": "finishes"})
            assert done.status_code == 200, done.text
            expected[done.json()["session_id"]] = "completed"
        assert await asyncio.to_thread(gateway.stop) == 0

        for cycle in range(cycles):
            gateway, client = await restart("hang_agent.py")
            async with client:
                await check_read_back(client, expected)
                await wait_until(partial(none_alive, frozenset(known_pids)), 10, "orphans killed")
                assert running_runs(sessions) == {}
                interrupted = [sid for sid, status in expected.items() if status == "interrupted"]
                tasks = await start_hanging_runs(client, tmp_path, cycle, interrupted[-1:])
                pidfiles = [tmp_path / f"child-{cycle}-{n}.pid" for n in range(RUNS_PER_CYCLE)]
                await wait_until(partial(runs_spawned, sessions, pidfiles), 15, "runs spawned")
                running = running_runs(sessions)
                known_pids |= set(running.values())
                known_pids |= {int(pidfile.read_text()) for pidfile in pidfiles}
                gateway.kill()  # SIGKILL mid-run
                for task in tasks:
                    with contextlib.suppress(httpx.HTTPError):
                        await task  # the connection dies with the gateway
                expected.update(dict.fromkeys(running, "interrupted"))
                session_metas(sessions)  # every meta.json still parses after the kill

        gateway, client = await restart("echo_agent.py")
        async with client:
            await check_read_back(client, expected)
            await wait_until(partial(none_alive, frozenset(known_pids)), 10, "orphans killed")
            # An interrupted session can be continued.
            some = next(sid for sid, status in expected.items() if status == "interrupted")
            resumed = await client.post(f"/sessions/{some}/prompt", json={"prompt": "again"})
            assert resumed.status_code == 200, resumed.text
            assert (await client.get(f"/sessions/{some}")).json()["status"] == "completed"
        assert await asyncio.to_thread(gateway.stop) == 0
        metas = session_metas(sessions)
        assert len(metas) == len(expected)
        assert all(meta["status"] != "running" for meta in metas.values())
        assert not list(sessions.glob("session-*/.meta.json.*.tmp"))
    finally:
        if gateway is not None and gateway.running():
            known_pids |= descendants(gateway.pid)  # runs a failed check left unrecorded
            gateway.kill()
        kill_pids(known_pids)


async def test_sigkill_mid_run_three_times_then_everything_reads_back(tmp_path: Path) -> None:
    await kill_restart_cycles(tmp_path, cycles=3)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_sigkill_mid_run_many_times_then_everything_reads_back(tmp_path: Path) -> None:
    await kill_restart_cycles(tmp_path, cycles=15)
