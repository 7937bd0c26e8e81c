"""The gateway process the census owns: `python -m gateway serve` of this checkout rooted in a
directory of its own, its REST bridge child, and their memory read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import PYTHONPATH
from bench.server import free_ports, process_tree
from gateway.config import DEFAULT_REQUEST_ENV_ALLOW
from gateway.procfs import cmdline, status_kib

SECURE_TOKEN = "census-secure-token"  # noqa: S105  # the census gateway's own


class RssPeaks:
    """Samples the VmRSS of the gateway and of its bridge from a thread (every 20 ms) and keeps
    each one's peak; the pids are read from the census each time, so a restart is followed."""

    def __init__(self, pids: Callable[[], tuple[int, int]]) -> None:
        self._pids = pids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="census-rss", daemon=True)
        self.gateway_kib = 0
        self.bridge_kib = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            gateway, bridge = self._pids()
            self.gateway_kib = max(self.gateway_kib, status_kib(gateway, "VmRSS"))
            self.bridge_kib = max(self.bridge_kib, status_kib(bridge, "VmRSS"))
            self._stop.wait(0.02)

    def __enter__(self) -> RssPeaks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Gateway:
    """One `python -m gateway serve` process of this checkout, its log in a file."""

    process: subprocess.Popen[bytes]
    rest_port: int
    grpc_port: int
    log_path: Path

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

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (it drains), then SIGKILL after `timeout_s` (at once if 0)."""
        if self.process.poll() is None:
            if timeout_s > 0:
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=timeout_s)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def bridges_of(gateway_pid: int) -> set[int]:
    """The REST bridge process(es) below the gateway (`python -m bridge --supervised`)."""
    found = set()
    for pid in process_tree(gateway_pid) - {gateway_pid}:
        try:
            argv = cmdline(pid)
        except OSError:
            continue
        if b"bridge" in argv and b"--supervised" in argv:
            found.add(pid)
    return found


def spawn_gateway(root: Path, agent: Path, extra: dict[str, str]) -> Gateway:
    """Start a gateway whose every file lives under `root` (sessions, secure sessions, workspace,
    trigger file, a watched folder, codex home), running the fake agent `agent`."""
    for directory in ("workspace", "triggers", "watch", "home"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    rest_port, grpc_port = free_ports(2)
    env = {
        # The fake agents start with `#!/usr/bin/env python3`: this interpreter first.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HOME": str(root / "home"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": PYTHONPATH,
        "CODEX_GATEWAY_BIND": "127.0.0.1",
        "CODEX_GATEWAY_PORT": str(rest_port),
        "CODEX_GATEWAY_GRPC_PORT": str(grpc_port),
        "CODEX_GATEWAY_CODEX_BIN": str(agent),
        "CODEX_GATEWAY_SESSION_DIRS": str(root / "sessions"),
        "CODEX_GATEWAY_SECURE_SESSION_DIR": str(root / "secure"),
        "CODEX_GATEWAY_DEFAULT_WORKSPACE": str((root / "workspace").resolve()),
        "CODEX_GATEWAY_WORKSPACE_ROOTS": str((root / "workspace").resolve()),
        "CODEX_GATEWAY_TRIGGER_FILE": str(root / "triggers" / "triggers.json"),
        "CODEX_GATEWAY_CODEX_HOME": str(root / "codex-home"),
        "CODEX_SYSTEM_PROMPT_FILE": str(root / "PROMPT.md"),
        "CODEX_DISABLE_DEFAULT_PROMPT": "1",
        "CODEX_GATEWAY_STOP_GRACE_MS": "1000",
        "CODEX_GATEWAY_REQUEST_ENV_ALLOW": ",".join((*DEFAULT_REQUEST_ENV_ALLOW, "FAKE_AGENT_*")),
        "CODEX_GATEWAY_SECURE_TOKEN": SECURE_TOKEN,
        "CODEX_GATEWAY_MAX_CONCURRENT": "4",
        "CODEX_GATEWAY_WATCH_PATHS": str(root / "watch"),
        "CODEX_GATEWAY_WATCH_POLL_MS": "200",
        "CODEX_GATEWAY_WATCH_DEBOUNCE_MS": "200",
        "CODEX_GATEWAY_LOG_LEVEL": "1",
        **extra,
    }
    log_path = root / "gateway.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # this interpreter, fixed argv
            [sys.executable, "-m", "gateway", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,  # its own process group: a signal to ours never reaches it
        )
    return Gateway(process, rest_port, grpc_port, log_path)


async def until_serving(gateway: Gateway, timeout_s: float) -> None:
    """Until REST /health answers 200 (the bridge is up, so gRPC is too)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1, trust_env=False) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{gateway.url}/health")).status_code == 200:
                    return
            if not gateway.running() or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not come up:\n{gateway.log_tail()}")
            await asyncio.sleep(0.05)
