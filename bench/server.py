"""The gateway under test: `codex-gateway serve` as a subprocess on free loopback ports, stopped
by pid afterwards, and its memory (and its agents') read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import PYTHONPATH
from gateway.procfs import cmdline, descendants, stat_fields, status_kib

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
HEALTH_POLL_S = 0.01


@dataclass(frozen=True)
class GatewayProcess:
    pid: int
    rest_url: str
    grpc_target: str
    workspace: Path
    agent_env: dict[str, str]
    """The environment the gateway gives its agents (for a direct-spawn baseline)."""
    startup_s: float
    """From starting the process to its first `GET /health` answered 200 (polled every 10 ms)."""
    bridge_pid: int
    """The REST bridge, a child process of the gateway's (gateway/bridge_process.py)."""

    @property
    def rest_address(self) -> tuple[str, int]:
        parsed = urllib.parse.urlsplit(self.rest_url)
        return parsed.hostname or "127.0.0.1", parsed.port or 80

    @property
    def pids(self) -> tuple[int, int]:
        """The gateway's own processes: the gRPC side and the REST bridge (not the agents)."""
        return (self.pid, self.bridge_pid)


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now: bound to port 0 together, then released."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _gateway_argv() -> list[str]:
    """`codex-gateway serve`, i.e. gateway/__main__.py, run from this checkout (PYTHONPATH)."""
    return [sys.executable, "-m", "gateway", "serve"]


@contextlib.asynccontextmanager
async def running_gateway(
    workdir: Path,
    *,
    codex_bin: Path,
    max_concurrent: int,
    extra_env: Mapping[str, str] | None = None,
    child_env_names: Sequence[str] = (),
    sessions: Path | None = None,
    settings: Mapping[str, str] | None = None,
    pythonpath: str = PYTHONPATH,
) -> AsyncIterator[GatewayProcess]:
    """Start `codex-gateway serve` rooted in `workdir` (its sessions in `sessions` when given)
    with a clean environment; stop it after. `settings` are more CODEX_GATEWAY_* variables (the
    gateway's, not its agents'). `pythonpath`: the source it runs (another tree's, to compare).

    The environment holds only what the gateway needs, so a caller's CODEX_GATEWAY_API_TOKEN (or
    any other setting) cannot change what is measured.
    """
    home, workspace = workdir / "home", workdir / "workspace"
    for directory in (home, workspace):
        directory.mkdir(parents=True, exist_ok=True)
    rest_port, grpc_port = free_ports(2)
    agent_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **(extra_env or {}),
    }
    env = {
        **agent_env,
        "PYTHONPATH": pythonpath,
        "CODEX_GATEWAY_BIND": "127.0.0.1",
        "CODEX_GATEWAY_PORT": str(rest_port),
        "CODEX_GATEWAY_GRPC_PORT": str(grpc_port),
        "CODEX_GATEWAY_CODEX_BIN": str(codex_bin),
        "CODEX_GATEWAY_MAX_CONCURRENT": str(max_concurrent),
        "CODEX_GATEWAY_SESSION_DIRS": str(sessions or workdir / "sessions"),
        "CODEX_GATEWAY_SECURE_SESSION_DIR": str(workdir / "sessions-secure"),
        "CODEX_GATEWAY_DEFAULT_WORKSPACE": str(workspace),
        "CODEX_GATEWAY_WORKSPACE_ROOTS": str(workspace),
        "CODEX_GATEWAY_CHILD_ENV": ",".join(child_env_names),
        "CODEX_GATEWAY_REQUEST_ENV_ALLOW": "FAKE_AGENT_*",  # the fakes' knobs (bench/tail.py)
        "CODEX_DISABLE_DEFAULT_PROMPT": "1",
        "CODEX_GATEWAY_LOG_LEVEL": "0",
        "CODEX_GATEWAY_STOP_GRACE_MS": "1000",
        "CODEX_GATEWAY_SHUTDOWN_GRACE_MS": "2000",
        **(settings or {}),
    }
    log_path = workdir / "gateway.log"
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *_gateway_argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=workdir,
            # A service of its own, as under systemd or in a container: its own session, so its
            # own scheduling group (autogroup), not a share of this load generator's.
            start_new_session=True,
        )
    try:
        rest_url = f"http://127.0.0.1:{rest_port}"
        await _wait_healthy(process, rest_url, log_path)
        startup_s = time.perf_counter() - started
        yield GatewayProcess(
            process.pid,
            rest_url,
            f"127.0.0.1:{grpc_port}",
            workspace.resolve(),
            agent_env,
            startup_s,
            bridge_pid(process.pid),
        )
    finally:
        await _stop(process)


async def _wait_healthy(process: asyncio.subprocess.Process, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                break
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/health")).status_code == 200:
                    return
            await asyncio.sleep(HEALTH_POLL_S)
    tail = log_path.read_text(errors="replace")[-2000:]  # noqa: ASYNC240  # once, on failure
    raise RuntimeError(f"the gateway did not become healthy (exit {process.returncode}):\n{tail}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the gateway drains its runs), then SIGKILL; then any agent left behind."""
    left = process_tree(process.pid) - {process.pid}
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def process_tree(root: int) -> set[int]:
    """`root` and every process below it, from /proc (the gateway's own scan)."""
    return {root} | descendants(root)


def bridge_pid(gateway_pid: int) -> int:
    """The gateway's REST bridge child (`python -m bridge --supervised`)."""
    for pid in process_tree(gateway_pid) - {gateway_pid}:
        try:
            argv = cmdline(pid)
        except OSError:
            continue
        if b"bridge" in argv and b"--supervised" in argv:
            return pid
    raise RuntimeError(f"the gateway (pid {gateway_pid}) runs no REST bridge process")


def rss_kib(pids: tuple[int, ...], name: str) -> int:
    """`status_kib` summed over these processes."""
    return sum(status_kib(pid, name) for pid in pids)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(*pids: int) -> float:
    """User plus system CPU time of these processes themselves (not their children), summed,
    from /proc/<pid>/stat."""
    return sum(cpu_split(*pids))


def cpu_split(*pids: int) -> tuple[float, float]:
    """(user, system) CPU seconds of these processes themselves, summed."""
    user = system = 0.0
    for pid in pids:
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        # After the command: state is field 3, so utime (14) and stime (15) are at 11 and 12.
        user += int(fields[11]) / _CLOCK_TICKS
        system += int(fields[12]) / _CLOCK_TICKS
    return user, system


def children_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the children `pid` has waited for (its agents, and theirs
    in turn), from /proc/<pid>/stat."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / _CLOCK_TICKS


def _by_command(rss: dict[int, int]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for pid, kib in rss.items():
        try:
            with open(f"/proc/{pid}/comm") as comm:  # noqa: PTH123  # same as above
                name = comm.read().strip()
        except OSError:
            name = "?"
        entry = found.setdefault(name, {"processes": 0, "rss_mib": 0.0})
        entry["processes"] += 1
        entry["rss_mib"] = round(entry["rss_mib"] + kib / 1024, 2)
    return found


class TreeRssSampler:
    """Samples the summed VmRSS of a process and its descendants from a thread; keeps the peak.

    A thread, so the samples keep coming while the benchmark's event loop is busy.
    """

    def __init__(self, root: int, interval_s: float = 0.02) -> None:
        self._root = root
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_kib = 0
        self.peak_processes = 0
        self.peak_breakdown: dict[str, dict[str, float]] = {}
        """At the peak: per command name, how many processes and their summed RSS (MiB)."""
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = {pid: status_kib(pid, "VmRSS") for pid in process_tree(self._root)}
            total = sum(rss.values())
            self.samples += 1
            if total > self.peak_kib:
                self.peak_kib = total
                self.peak_breakdown = _by_command(rss)
            self.peak_processes = max(self.peak_processes, len(rss))
            self._stop.wait(self._interval_s)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def main_thread_sched(pid: int) -> tuple[float, float]:
    """The seconds the main thread of `pid` (the gateway's event loop) spent on a CPU, and
    runnable but waiting for one (/proc/<pid>/schedstat): the second is the machine's share of
    the delays it saw, not its own work. (0, 0) once the process is gone."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as stat:  # noqa: PTH123  # /proc
            fields = stat.read().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


class Contention:
    """Over the loaded windows: the gateway's CPU time (every thread), its agents' (those it
    reaped meanwhile, with their own children), and for the main threads
    of the gateway (its event loop) and of the probe process, the time on a CPU and the time
    spent runnable but waiting for one: the machine's share of a slow probe."""

    def __init__(self, gateway: tuple[int, int], probe_pid: int) -> None:
        self._pids = {"gateway_loop": gateway[0], "bridge_loop": gateway[1], "probe": probe_pid}
        self._gateway = gateway
        self._marks: dict[str, float] = {}
        self.totals: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        values = {
            "window_s": time.monotonic(),
            "gateway_cpu_s": cpu_seconds(*self._gateway),
            "agents_cpu_s": children_cpu_seconds(self._gateway[0]),
        }
        for name, pid in self._pids.items():
            on_cpu, waiting = main_thread_sched(pid)
            values[f"{name}_on_cpu_s"] = on_cpu
            values[f"{name}_run_queue_wait_s"] = waiting
        return values

    def start(self) -> None:
        self._marks = self._read()

    def stop(self) -> None:
        for key, value in self._read().items():
            self.totals[key] = self.totals.get(key, 0.0) + value - self._marks[key]

    def figures(self) -> dict[str, float]:
        return {key: round(value, 3) for key, value in self.totals.items()}
