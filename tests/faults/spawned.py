"""The gateway as a real subprocess (`python -m gateway`), rooted in a temporary directory, and
what /proc says about it: its agent children, its memory and its open file descriptors.

Unlike `tests.harness.start_gateway_process`, the process is a plain `subprocess.Popen`, so a
module-scoped fixture can own one outside any event loop, a test can SIGKILL and restart it on the
same ports, and its log goes to a file whose tail explains a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.fakes import AGENTS_DIR
from tests.harness import TEST_AGENT_NICE, TEST_REQUEST_ENV_ALLOW, agent_path, free_port
from tests.processes import alive

STOP_TIMEOUT_S = 20.0
PORT_TAKEN = "Address already in use"
PORT_ATTEMPTS = 3
"""A port picked free can be taken before the gateway binds it (another worker's connection
gets it as its ephemeral port): a gateway that stopped on that is started again on new ports,
when they were picked rather than given."""


def gateway_env(
    root: Path, agent: str | Path = "echo_agent.py", **variables: str
) -> dict[str, str]:
    """The environment of a gateway whose every file lives under `root` (sessions, secure
    sessions, workspace, trigger file, codex home), running the fault agent `agent`."""
    workspace = root / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    return {
        "CODEX_GATEWAY_CODEX_BIN": str(AGENTS_DIR / agent),
        "CODEX_GATEWAY_SESSION_DIRS": str(root / "sessions"),
        "CODEX_GATEWAY_SECURE_SESSION_DIR": str(root / "secure"),
        "CODEX_GATEWAY_DEFAULT_WORKSPACE": str(workspace.resolve()),
        "CODEX_GATEWAY_TRIGGER_FILE": str(root / "triggers" / "triggers.json"),
        "CODEX_GATEWAY_CODEX_HOME": str(root / "codex-home"),
        "CODEX_SYSTEM_PROMPT_FILE": str(root / "PROMPT.md"),
        "CODEX_DISABLE_DEFAULT_PROMPT": "1",
        "CODEX_GATEWAY_STOP_GRACE_MS": "1000",
        "CODEX_GATEWAY_REQUEST_ENV_ALLOW": ",".join(TEST_REQUEST_ENV_ALLOW),
        **variables,
    }


@dataclass
class Spawned:
    """One `python -m gateway serve|grpc` process."""

    process: subprocess.Popen[bytes]
    command: str
    grpc_port: int
    rest_port: int
    log_path: Path
    env: dict[str, str]
    ports_picked: bool

    def lost_its_ports(self) -> bool:
        """It stopped because a port it was to bind was taken, and its ports may be others."""
        if not self.ports_picked or self.running() or self.process.returncode != 2:
            return False
        try:
            return PORT_TAKEN in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def restart_on_new_ports(self) -> None:
        fresh = spawn(self.env, self.log_path, command=self.command)
        self.process, self.grpc_port = fresh.process, fresh.grpc_port
        self.rest_port = fresh.rest_port

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing below it is stopped."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait (SIGKILL after `timeout_s`); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


def spawn(
    env: dict[str, str],
    log_path: Path,
    *,
    command: str = "serve",
    grpc_port: int | None = None,
    rest_port: int | None = None,
) -> Spawned:
    """Start the process (not waiting for it to serve); ports are picked unless given."""
    picked = grpc_port is None and rest_port is None
    grpc_port = grpc_port or free_port()
    rest_port = rest_port or free_port()
    full_env = {
        "PATH": agent_path(),
        "CODEX_GATEWAY_AGENT_NICE": str(TEST_AGENT_NICE),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "CODEX_GATEWAY_GRPC_PORT": str(grpc_port),
        "CODEX_GATEWAY_PORT": str(rest_port),
        "CODEX_GATEWAY_LOG_LEVEL": "1",
        # Any default state (see gateway_env) beside the log, not in ~/.local/state.
        "XDG_STATE_HOME": str(log_path.parent / "state"),
        **env,
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", command],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,  # nothing relative lands in the working tree
            start_new_session=True,
        )
    return Spawned(process, command, grpc_port, rest_port, log_path, env, picked)


async def until_serving(spawned: Spawned, timeout_s: float = 20.0) -> None:
    """Until the REST /health answers (`serve`) or the gRPC Health does (`grpc`)."""
    deadline = time.monotonic() + timeout_s
    attempts = 1
    while True:
        if await _serving(spawned):
            return
        if spawned.lost_its_ports() and attempts < PORT_ATTEMPTS:
            attempts += 1
            spawned.restart_on_new_ports()
            continue
        if not spawned.running() or time.monotonic() > deadline:
            raise RuntimeError(f"the gateway did not come up:\n{spawned.log_tail()}")
        await asyncio.sleep(0.05)


async def _serving(spawned: Spawned) -> bool:
    if spawned.command == "serve":
        try:
            async with httpx.AsyncClient(timeout=1, trust_env=False) as client:
                return (await client.get(f"{spawned.url}/health")).status_code == 200
        except httpx.HTTPError:
            return False
    import grpc

    from codex_gateway.v1 import gateway_pb2_grpc, status_pb2

    async with grpc.aio.insecure_channel(spawned.target) as channel:
        try:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            await stub.Health(status_pb2.HealthRequest(), timeout=1)
        except grpc.aio.AioRpcError:
            return False
    return True


def until_serving_sync(spawned: Spawned, timeout_s: float = 20.0) -> None:
    """`until_serving` for fixtures outside an event loop (REST only)."""
    deadline = time.monotonic() + timeout_s
    attempts = 1
    with httpx.Client(timeout=1, trust_env=False) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{spawned.url}/health").status_code == 200:
                    return
            if spawned.lost_its_ports() and attempts < PORT_ATTEMPTS:
                attempts += 1
                spawned.restart_on_new_ports()
                continue
            if not spawned.running() or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not come up:\n{spawned.log_tail()}")
            time.sleep(0.05)


@contextlib.asynccontextmanager
async def running(
    env: dict[str, str], root: Path, *, command: str = "serve", **ports: int
) -> AsyncIterator[Spawned]:
    """A serving gateway process, stopped (SIGTERM, then SIGKILL) when the block ends."""
    spawned = spawn(env, root / f"gateway-{command}.log", command=command, **ports)
    try:
        await until_serving(spawned)
        yield spawned
    finally:
        await asyncio.to_thread(spawned.stop)


def kill_pids(pids: Iterable[int]) -> None:
    """SIGKILL each of these pids that is still one of ours: a fake agent or the `sleep` child
    hang_agent.py starts (checked, so a recycled pid of another process is never touched)."""
    for pid in pids:
        command = cmdline(pid)
        if alive(pid) and ("fakes/agents/" in command or command.startswith("sleep ")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def children(pid: int) -> set[int]:
    """Live direct children of `pid`."""
    found = set()
    for entry in os.listdir("/proc"):  # noqa: PTH208  # names only
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and alive(int(entry)):
                found.add(int(entry))
    return found


async def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll `condition` every 50 ms; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def run_in_flight(
    client: httpx.AsyncClient, gateway: Spawned, seconds: int
) -> asyncio.Future[httpx.Response]:
    """A `POST /completion` whose agent (slow_agent.py, `seconds` long) is running on return."""
    body = {"prompt": f"{seconds}s", "env": {"FAKE_AGENT_SECONDS": str(seconds)}}
    call = asyncio.ensure_future(client.post("/completion", json=body))
    await wait_until(lambda: agents_of(gateway.pid, "slow_agent"), 10, "the agent")
    return call


def bridges_of(gateway_pid: int) -> set[int]:
    """The REST bridge process(es) `serve` runs as its children (gateway/bridge_process.py)."""
    return {pid for pid in children(gateway_pid) if "-m bridge" in cmdline(pid)}


def agents_of(gateway_pid: int, marker: str) -> set[int]:
    """The gateway's agents: its direct children whose command line names `marker`. (An agent
    may fork helpers of its own, such as a pyenv shim's subshells: they are not agents.)"""
    return {pid for pid in children(gateway_pid) if marker in cmdline(pid)}


def proc_status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))  # noqa: PTH208  # a count of names


def session_metas(*roots: Path, missing_ok: bool = False) -> dict[str, dict[str, Any]]:
    """Every session's meta.json under these roots, parsed (a corrupt one fails the test; so
    does a missing one, unless `missing_ok`)."""
    metas: dict[str, dict[str, Any]] = {}
    for root in roots:
        for directory in sorted(root.glob("session-*")):
            if missing_ok and not (directory / "meta.json").exists():
                continue
            text = (directory / "meta.json").read_text()
            try:
                metas[directory.name.removeprefix("session-")] = json.loads(text)
            except ValueError as exc:  # pragma: no cover  # the failure being tested for
                raise AssertionError(f"{directory}/meta.json is not valid JSON: {text!r}") from exc
    return metas


@contextlib.contextmanager
def sampling(interval_s: float, sample: Any) -> Iterator[list[Any]]:
    """Call `sample()` every `interval_s` in a thread while the block runs; yields the samples."""
    import threading

    samples: list[Any] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            samples.append(sample())
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, name="sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=10)
