"""Fixtures for testing the fakes: started processes that are always killed, and codex runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import CODEX_BIN
from tests.fakes.model_server import ModelServer, write_codex_home
from tests.harness import agent_path

Spawn = Callable[..., subprocess.Popen[bytes]]


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``proc`` leads, reap it, and close its pipes."""
    with contextlib.suppress(ProcessLookupError):  # the whole group is already gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def interrupt_then_kill(proc: subprocess.Popen[bytes], grace_seconds: float = 3.0) -> int:
    """Stop the way codex wants: SIGINT to its group, then SIGKILL after a grace period."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return proc.returncode


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def parse_events(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Popen in a new session (so its group can be signalled); every group is killed at teardown.

    Unless ``stdin`` is given, stdin is a pipe holding ``stdin_data`` and closed right after it,
    which is how codex wants its stdin. PATH is always ``agent_path()``: the fake agents' python3
    is this interpreter, whatever the machine's PATH holds.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(
        argv: list[str], *, stdin_data: bytes = b"", **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        kwargs["env"] = {**(kwargs.get("env") or os.environ), "PATH": agent_path()}
        if "stdin" in kwargs:  # the caller manages stdin itself
            proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
            started.append(proc)
            return proc
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(argv, stdin=read_fd, start_new_session=True, **kwargs)
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        started.append(proc)
        with os.fdopen(write_fd, "wb") as stdin:
            stdin.write(stdin_data)
        return proc

    yield start
    for proc in started:
        kill_group(proc)


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server
    assert server.errors == []


@dataclass
class CodexRun:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    def messages(self) -> list[str]:
        return [
            event["item"]["text"]
            for event in self.events
            if event["type"] == "item.completed" and event["item"]["type"] == "agent_message"
        ]


class Codex:
    """Runs the real codex binary against a model server, with a private CODEX_HOME and HOME."""

    def __init__(self, spawn: Spawn, tmp_path: Path, server: ModelServer) -> None:
        self._spawn = spawn
        self._base_url = server.base_url
        self.workspace = tmp_path / "workspace"
        self.workspace.mkdir()
        home = tmp_path / "home"  # a bare HOME: no ~/.bashrc noise in command output
        home.mkdir()
        self.codex_home = tmp_path / "codex_home"
        self.env = {  # PATH: the spawn fixture's
            "HOME": str(home),
            **write_codex_home(self.codex_home, server.base_url),
        }

    def configure(self, **options: Any) -> None:
        """Rewrite config.toml with other ``write_codex_home`` options."""
        self.env.update(write_codex_home(self.codex_home, self._base_url, **options))

    def start(self, prompt: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``codex exec --json ... [args] -`` with ``prompt`` on stdin, closed after it."""
        argv = [
            str(CODEX_BIN),
            "exec",
            "--json",
            "--skip-git-repo-check",
            "-s",
            "workspace-write",
            "-C",
            str(self.workspace),
            *args,
            "-",
        ]
        return self._spawn(
            argv,
            stdin_data=prompt.encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.workspace,
        )

    def run(self, prompt: str, *args: str, timeout: float = 20.0) -> CodexRun:
        proc = self.start(prompt, *args)
        stdout, stderr = proc.communicate(timeout=timeout)
        return CodexRun(proc.returncode, parse_events(stdout), stderr.decode(errors="replace"))


@pytest.fixture
def codex(spawn: Spawn, tmp_path: Path, model_server: ModelServer) -> Codex:
    return Codex(spawn, tmp_path, model_server)
