"""Real gateways for tests and benchmarks: the gRPC server on a loopback port, the REST bridge
in front of it on another, both in this process's event loop, stopped cleanly afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from codex_gateway.v1 import gateway_pb2_grpc
from gateway.clock import Clock, system_clock
from gateway.config import DEFAULT_REQUEST_ENV_ALLOW, ClusterConfig, Config, TriggerConfig
from gateway.server import Gateway, GrpcServer, drain, start_grpc
from tests.fakes import CODEX_BIN

# Agents in tests run at the gateway's own priority. The gateway under test shares its process with
# pytest and the test's clients; at the product's default (nice 19) an agent would get a small
# share of any CPU they want, and runs with short deadlines would time out on a busy machine.
# Niceness has tests of its own (tests/gateway/test_priority.py, test_faults.py, test_config.py).
TEST_AGENT_NICE = 0
# The documented default, plus the knobs of the fake agents (FAKE_AGENT_SECONDS, ...).
TEST_REQUEST_ENV_ALLOW = (*DEFAULT_REQUEST_ENV_ALLOW, "FAKE_AGENT_*")


def agent_path() -> str:
    """PATH for gateways under test. The fake agents start with `#!/usr/bin/env python3`: this
    interpreter first, so that no version-manager shim (pyenv's forks a dozen processes) sits
    between the gateway and them."""
    return os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
    )


def base_config(tmp: Path, *, codex_env: dict[str, str] | None = None, **overrides: Any) -> Config:
    """A config rooted in `tmp` that runs the real codex (overrides replace any field)."""
    workspace = tmp / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    child_env = {
        "PATH": agent_path(),
        "HOME": str(tmp),
        "LANG": "C.UTF-8",
        **(codex_env or {}),
    }
    config = Config(
        bind="127.0.0.1",
        port=0,
        grpc_port=0,
        codex_bin=CODEX_BIN,
        codex_home=Path(child_env.get("CODEX_HOME", tmp / "codex-home")),
        session_dirs=(tmp / "sessions",),
        secure_session_dir=tmp / "sessions-secure",
        default_workspace=workspace.resolve(),
        workspace_roots=(workspace.resolve(),),
        system_prompt_file=tmp / "PROMPT.md",
        system_prompt_disabled=True,
        child_env=child_env,
        stop_grace_ms=2000,
        shutdown_grace_ms=2000,
        timeout_ms=30_000,
        agent_nice=TEST_AGENT_NICE,
        request_env_allow=TEST_REQUEST_ENV_ALLOW,
        triggers=TriggerConfig(
            default_file=tmp / "triggers" / "triggers.json",
            roots=(tmp / "triggers",),
            discovery_dir=tmp / "codex-home" / "sessions",
        ),
    )
    return dataclasses.replace(config, **overrides)


CLUSTER_TOKEN = "test-cluster-token"  # a test's own secret


def cluster_config(
    tmp: Path,
    dsn: str,
    replica_id: str,
    *,
    model_url: str | None = None,
    lease_ms: int = 2000,
    max_concurrent: int = 0,
    **overrides: Any,
) -> Config:
    """A replica of a cluster on `dsn`, in-process: its own folder under `tmp` (sessions,
    workspace, and with `model_url` its own CODEX_HOME for the scripted model server), a gRPC
    port chosen now so that it can be advertised."""
    from tests.fakes.model_server import write_codex_home

    home = tmp / replica_id
    codex_env = write_codex_home(home / "codex-home", model_url) if model_url else None
    port = free_port()
    config = base_config(home, codex_env=codex_env, grpc_port=port, **overrides)
    return dataclasses.replace(
        config,
        cluster=ClusterConfig(
            database_url=dsn,
            replica_id=replica_id,
            advertise_addr=f"127.0.0.1:{port}",
            token=CLUSTER_TOKEN,
            max_concurrent=max_concurrent,
            lease_ms=lease_ms,
        ),
    )


@dataclass
class RunningGateway:
    gateway: Gateway
    grpc_server: GrpcServer
    channel: grpc.aio.Channel
    stub: gateway_pb2_grpc.GatewayServiceStub

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_server.port}"


@contextlib.asynccontextmanager
async def running_gateway(
    config: Config, *, clock: Clock = system_clock, background: bool = False
) -> AsyncIterator[RunningGateway]:
    """With `background`, the scheduler, watcher and webhook loops run too."""
    gateway = Gateway.build(config, clock=clock)
    await gateway.open()
    try:
        grpc_server = await start_grpc(gateway, "127.0.0.1", config.grpc_port)
    except BaseException:
        await gateway.close()
        raise
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}")
    stop, webhooks_stop = asyncio.Event(), asyncio.Event()
    loops = asyncio.create_task(gateway.background(stop, webhooks_stop)) if background else None
    try:
        yield RunningGateway(
            gateway, grpc_server, channel, gateway_pb2_grpc.GatewayServiceStub(channel)
        )
    finally:
        stop.set()
        try:
            await channel.close()
            await drain(gateway, grpc_server)
            webhooks_stop.set()
            if loops is not None:
                await asyncio.wait_for(loops, 10)
        finally:
            # Whatever failed above: a server left to the garbage collector is shut down on a
            # closed event loop, in some later test.
            await grpc_server.server.stop(grace=0.5)
            await gateway.close()


@contextlib.asynccontextmanager
async def running_bridge(
    target: str, *, max_body_bytes: int = 1_048_576, **options: Any
) -> AsyncIterator[str]:
    """The REST bridge in front of `target` (`options` for serve_bridge); yields its base URL."""
    from bridge.app import serve_bridge

    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_bridge(
            target,
            "127.0.0.1",
            0,
            max_body_bytes=max_body_bytes,
            shutdown=stop,
            ready=port.set_result,
            **options,
        )
    )
    try:
        done, _ = await asyncio.wait({port, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        yield f"http://127.0.0.1:{await asyncio.wait_for(port, 5)}"
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


def _state_home(env: dict[str, str]) -> Path:
    """Beside the test's session directory (the same for a restart), else a new folder."""
    sessions = env.get("CODEX_GATEWAY_SESSION_DIRS")
    if sessions:
        return Path(sessions.split(",")[0]).parent / "state"
    import tempfile

    return Path(tempfile.mkdtemp(prefix="codex-gateway-state-"))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    """`codex-gateway` as a real subprocess (for crash, signal and memory tests)."""

    process: asyncio.subprocess.Process
    grpc_port: int
    rest_port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


async def start_gateway_process(
    env: dict[str, str], *, command: str = "serve", timeout_s: float = 20.0
) -> GatewayProcess:
    grpc_port, rest_port = free_port(), free_port()
    full_env = {
        "PATH": agent_path(),
        "HOME": os.environ.get("HOME", "/root"),
        "CODEX_GATEWAY_AGENT_NICE": str(TEST_AGENT_NICE),
        "CODEX_GATEWAY_GRPC_PORT": str(grpc_port),
        "CODEX_GATEWAY_PORT": str(rest_port),
        "CODEX_GATEWAY_LOG_LEVEL": "0",
        "CODEX_DISABLE_DEFAULT_PROMPT": "1",
        "CODEX_GATEWAY_REQUEST_ENV_ALLOW": ",".join(TEST_REQUEST_ENV_ALLOW),
        # The default state directory (sessions, triggers) of this test's own, not ~/.local.
        "XDG_STATE_HOME": str(_state_home(env)),
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", command, env=full_env, start_new_session=True
    )
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        from codex_gateway.v1 import status_pb2

        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        while True:
            try:
                await stub.Health(status_pb2.HealthRequest(), timeout=1)
                break
            except grpc.aio.AioRpcError:
                if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                    process.kill()
                    raise RuntimeError("the gateway process did not come up") from None
                await asyncio.sleep(0.1)
    return GatewayProcess(process, grpc_port, rest_port)
