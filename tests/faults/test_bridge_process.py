"""`codex-gateway serve` runs the REST bridge as a supervised process of its own: restarted on the
same port when it dies, never outliving the gateway, deaf to a terminal's Ctrl-C until the
gateway has answered its runs, and a REST port in use stops startup with a clear message.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from gateway.bridge_process import BridgeProcess
from tests.faults.spawned import (
    bridges_of,
    gateway_env,
    run_in_flight,
    running,
    spawn,
    until_serving,
    wait_until,
)
from tests.harness import free_port
from tests.processes import alive

RESTART_WITHIN_S = 10.0


async def test_a_dead_bridge_is_started_again_on_the_same_port(tmp_path: Path) -> None:
    async with (
        running(gateway_env(tmp_path), tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10, trust_env=False) as client,
    ):
        (bridge,) = bridges_of(gateway.pid)
        done = await client.post("/completion", json={"prompt": "before"})
        assert done.status_code == 200, done.text
        memory = (await client.get("/status")).json()["memory"]
        assert memory["bridge_rss"] > 10 * 2**20  # a Python process with FastAPI loaded
        assert memory["agents_rss"] == 0  # the bridge is not an agent; no run is going on

        os.kill(bridge, signal.SIGKILL)
        await wait_until(lambda: not alive(bridge), 5, "the bridge to die")
        # New connections wait in the gateway's listen backlog while the next bridge starts.
        async with httpx.AsyncClient(
            base_url=gateway.url, timeout=RESTART_WITHIN_S, trust_env=False
        ) as fresh:
            answer = await fresh.get(f"/sessions/{done.json()['session_id']}")
        assert answer.status_code == 200, answer.text
        (again,) = bridges_of(gateway.pid)
        assert again != bridge
        assert gateway.running()
        log_tail = gateway.log_tail(50)
        assert "exited with -9" in log_tail and "starting another REST bridge" in log_tail


async def test_a_killed_gateway_takes_its_bridge_with_it(tmp_path: Path) -> None:
    gateway = spawn(gateway_env(tmp_path), tmp_path / "gateway.log")
    try:
        await until_serving(gateway)
        (bridge,) = bridges_of(gateway.pid)
        gateway.kill()
        await wait_until(lambda: not alive(bridge), 5, "the orphaned bridge to exit")
    finally:
        gateway.stop()


async def test_ctrl_c_lets_rest_callers_have_their_answers(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, "slow_agent.py", CODEX_GATEWAY_SHUTDOWN_GRACE_MS="5000")
    gateway = spawn(env, tmp_path / "gateway.log")
    try:
        await until_serving(gateway)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client:
            call = await run_in_flight(client, gateway, 1)
            # A terminal's Ctrl-C goes to the whole foreground process group.
            os.killpg(os.getpgid(gateway.pid), signal.SIGINT)
            answer = await asyncio.wait_for(call, 10)
        assert answer.status_code == 200, answer.text
        assert await asyncio.to_thread(gateway.process.wait, 15) == 0
    finally:
        gateway.stop()


async def test_signals_to_the_bridge_too_wait_for_the_gateway(tmp_path: Path) -> None:
    """As a service manager that signals every process of the service: the bridge stays until
    the gateway has drained its runs and answered their REST callers."""
    env = gateway_env(tmp_path, "slow_agent.py", CODEX_GATEWAY_SHUTDOWN_GRACE_MS="12000")
    gateway = spawn(env, tmp_path / "gateway.log")
    try:
        await until_serving(gateway)
        (bridge,) = bridges_of(gateway.pid)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client:
            # Longer than the 5 s a bridge gives open requests when it shuts down by itself.
            call = await run_in_flight(client, gateway, 7)
            # A Ctrl-C that reaches the bridge too (its own session keeps a terminal's away).
            os.kill(bridge, signal.SIGINT)
            for pid in (bridge, gateway.pid):
                os.kill(pid, signal.SIGTERM)
            answer = await asyncio.wait_for(call, 15)
        assert answer.status_code == 200, answer.text
        assert await asyncio.to_thread(gateway.process.wait, 15) == 0
        await wait_until(lambda: not alive(bridge), 10, "the bridge to stop")
    finally:
        gateway.stop()


def test_a_rest_port_in_use_stops_startup_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            **gateway_env(tmp_path),
            "CODEX_GATEWAY_PORT": str(port),
            "CODEX_GATEWAY_GRPC_PORT": str(free_port()),
        }
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert f"CODEX_GATEWAY_PORT: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bridge_that_never_starts_stops_the_gateway_with_a_message(tmp_path: Path) -> None:
    """A bridge that dies before serving is tried three times, with a growing delay, then the
    gateway exits 2 instead of holding a REST port nobody answers."""
    broken = tmp_path / "broken" / "bridge"
    broken.mkdir(parents=True)
    real = Path(__file__).resolve().parents[2] / "bridge"
    (broken / "__init__.py").write_text("")
    (broken / "listener.py").write_text((real / "listener.py").read_text())
    (broken / "__main__.py").write_text(
        "import sys\nprint('no bridge here', file=sys.stderr)\nsys.exit(3)\n"
    )
    pythonpath = os.pathsep.join([str(broken.parent), os.environ.get("PYTHONPATH", "")])
    env = {
        **os.environ,
        **gateway_env(tmp_path),
        "PYTHONPATH": pythonpath,
        "CODEX_GATEWAY_PORT": str(free_port()),
        "CODEX_GATEWAY_GRPC_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        env=env,
        cwd=tmp_path,  # `python -m` looks in the working directory first
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("no bridge here") == 3
    assert result.stderr.count("exited with 3 before it served") == 3
    assert "the REST bridge did not start (3 attempts" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_ready_line_is_found_among_other_output() -> None:
    script = "echo some library talking; printf 'x%.0s' $(seq 1 70000); echo; echo ready 4321"
    process = await asyncio.create_subprocess_exec(
        "sh", "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert await BridgeProcess._read_ready(process) == 4321  # the parser
    finally:
        await process.wait()


async def test_a_folder_named_bridge_in_the_working_directory_is_not_run(tmp_path: Path) -> None:
    impostor = tmp_path / "bridge"
    impostor.mkdir()
    (impostor / "__init__.py").write_text("")
    (impostor / "__main__.py").write_text("raise SystemExit('the wrong bridge')\n")
    # spawn() runs the gateway in tmp_path (the log's folder): the impostor is in its cwd.
    async with (
        running(gateway_env(tmp_path), tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10, trust_env=False) as client,
    ):
        assert (await client.get("/health")).status_code == 200
        assert "the wrong bridge" not in gateway.log_tail(200)
