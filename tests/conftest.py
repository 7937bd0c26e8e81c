"""Shared fixtures: a scripted model server, a CODEX_HOME pointing at it, a real gateway (gRPC)
and the REST bridge in front of it."""

from __future__ import annotations

import contextlib
import os

# The REPL tests' pexpect forks this process while gRPC threads serve the in-process gateways.
# gRPC's fork handlers then start its threads again in the child, which closes every descriptor
# before it execs the REPL: the child logged "epoll_wait error: Bad file descriptor" and died
# before the REPL started. A child that only execs needs none of gRPC: no fork handlers. (Read
# when grpc is first imported, which is below; the gateway itself spawns with vfork.)
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from gateway.config import Config
from tests import ast_guard
from tests.fakes.model_server import ModelServer, write_codex_home
from tests.fakes.webhook_receiver import Receiver, Reply
from tests.harness import RunningGateway, base_config, running_bridge, running_gateway
from tests.processes import describe, live_children

pytest_plugins = ["tests.failure_log", "tests.postgres"]

ast_guard.install()  # before any test can leave garbage whose finalizer formats a traceback

# Property tests judge results, not speed: no per-example deadline (200 ms by default) and no
# "too slow" health check, both of which a busy CI machine fails now and then.
settings.register_profile("gateway", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gateway")


# How long a test's processes may take to go after it ends (a run stopped at its end is reaped
# by then) before they count as left running.
LEFT_RUNNING_WAIT_S = 10.0


@pytest.fixture(autouse=True)
def _nothing_left_running() -> Iterator[None]:
    """Every test ends with nothing it started still running below this process. What is left
    fails the test that left it, described (command, state, parent), and is killed, so that the
    next tests' own checks (`running_below() == {}`) judge only what they start."""
    before = live_children()
    yield
    deadline = time.monotonic() + LEFT_RUNNING_WAIT_S
    while (left := live_children() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not left:
        return
    described = [describe(pid) for pid in sorted(left)]
    for pid in left:
        with contextlib.suppress(OSError):  # gone in the meantime
            os.kill(pid, signal.SIGKILL)
    pytest.fail("left running after the test: " + "; ".join(described), pytrace=False)


@pytest.fixture
def receiver_for() -> Iterator[Callable[..., Receiver]]:
    """Start webhook receivers (`receiver_for(Reply(500), port=...)`); all stopped afterwards."""
    started: list[Receiver] = []

    def start(*script: Reply, port: int = 0) -> Receiver:
        receiver = Receiver(script, port).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


@pytest.fixture
def codex_env(tmp_path: Path, model_server: ModelServer) -> dict[str, str]:
    """The variables codex needs to talk to the scripted model server."""
    return write_codex_home(tmp_path / "codex-home", model_server.base_url)


@pytest.fixture
def config(tmp_path: Path, codex_env: dict[str, str]) -> Config:
    return base_config(tmp_path, codex_env=codex_env)


@pytest.fixture
def config_for(tmp_path: Path, codex_env: dict[str, str]) -> Any:
    """Build a config with some fields replaced: `config_for(max_concurrent=1)`."""

    def build(**overrides: Any) -> Config:
        return base_config(tmp_path, codex_env=codex_env, **overrides)

    return build


@pytest.fixture
async def gateway(config: Config) -> AsyncIterator[RunningGateway]:
    async with running_gateway(config) as running:
        yield running


@pytest.fixture
async def gateway_grpc(gateway: RunningGateway) -> str:
    return gateway.target


@pytest.fixture
async def bridge_url(gateway: RunningGateway) -> AsyncIterator[str]:
    async with running_bridge(
        gateway.target, max_body_bytes=gateway.gateway.config.max_body_bytes
    ) as url:
        yield url


@pytest.fixture
async def rest(bridge_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bridge_url, timeout=60, trust_env=False) as client:
        yield client
