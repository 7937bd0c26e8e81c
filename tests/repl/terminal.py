"""The REPL in a real pseudo-terminal (pexpect), and the REPL on pipes, for tests.

The gateway under test serves from this process's event loop, so nothing here blocks it: pexpect's
blocking reads run in a worker thread, and piped runs use asyncio subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect

from tests.processes import live_children

ROOT = Path(__file__).resolve().parents[2]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# CSI and OSC sequences, other two-byte escapes, carriage returns and backspaces.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|[\r\x08]"
)


_FORWARD = re.compile(r"\x1b\[(\d*)C")


def screen_text(raw: str) -> str:
    """What the terminal output says, without its control sequences (cursor-forward as spaces,
    as prompt_toolkit draws some blanks)."""
    spaced = _FORWARD.sub(lambda m: " " * int(m[1] or 1), raw)
    return _CONTROL.sub("", spaced)


def repl_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A small explicit environment: no proxies, no tokens, history in `tmp_path`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "CODEX_REPL_HISTORY": str(tmp_path / "repl-history"),
        # pexpect answers no cursor position requests; tell prompt_toolkit not to send them.
        "PROMPT_TOOLKIT_NO_CPR": "1",
        **extra,
    }


class Terminal:
    """One REPL process in a pseudo-terminal, read from a cursor forward."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "repl", *args],
            cwd=str(ROOT),
            env=env,
            dimensions=(50, 160),
            encoding="utf-8",
            codec_errors="replace",
        )
        self.raw = ""
        self._cursor = 0
        self._eof = False

    @property
    def pid(self) -> int:
        return int(self.child.pid)

    @property
    def screen(self) -> str:
        return screen_text(self.raw)

    async def send(self, text: str) -> None:
        await asyncio.to_thread(self.child.send, text)

    async def line(self, text: str) -> None:
        await self.send(text + "\r")

    async def interrupt(self) -> None:
        await asyncio.to_thread(self.child.sendintr)

    async def expect(self, pattern: str, *, wait_s: float = 30.0, regex: bool = False) -> str:
        """Wait for `pattern` after the cursor; returns the text up to its end (and moves there)."""
        return await asyncio.to_thread(self._expect, pattern, wait_s, regex)

    async def match(self, pattern: str, *, wait_s: float = 30.0) -> re.Match[str]:
        """Wait for the regex `pattern` after the cursor and return its match."""
        await self.expect(pattern, wait_s=wait_s, regex=True)
        found = list(re.finditer(pattern, self.screen[: self._cursor]))
        return found[-1]

    async def exit_status(self, *, wait_s: float = 15.0) -> int:
        await asyncio.to_thread(self._read_until_eof, wait_s)
        await asyncio.to_thread(self.child.wait)
        status = self.child.exitstatus
        assert status is not None, f"killed by signal {self.child.signalstatus}"
        return int(status)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close(force=True)

    def _find(self, pattern: str, regex: bool) -> tuple[int, int] | None:
        screen = self.screen
        if regex:
            found = re.compile(pattern).search(screen, self._cursor)
            return (found.start(), found.end()) if found else None
        start = screen.find(pattern, self._cursor)
        return (start, start + len(pattern)) if start >= 0 else None

    def _expect(self, pattern: str, timeout: float, regex: bool) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = self._find(pattern, regex)
            if found is not None:
                segment = self.screen[self._cursor : found[1]]
                self._cursor = found[1]
                return segment
            if self._eof or time.monotonic() > deadline:
                why = "the REPL exited" if self._eof else f"{timeout:.0f}s passed"
                raise AssertionError(
                    f"{pattern!r} not seen ({why}); the screen after the cursor:\n"
                    + self.screen[self._cursor :][-3000:]
                )
            self._read(0.1)

    def _read(self, timeout: float) -> None:
        try:
            self.raw += self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            self._eof = True

    def _read_until_eof(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._eof:
            if time.monotonic() > deadline:
                raise AssertionError("the REPL did not exit; screen:\n" + self.screen[-3000:])
            self._read(0.2)


async def no_children_but(pid: int, *, wait_s: float = 5.0) -> set[int]:
    """What is left below this process but the REPL `pid`, after waiting up to `wait_s` for it to
    be nothing (the gateway runs in this process, so codex and its commands would be here)."""
    return await asyncio.to_thread(_wait_for_no_children_but, pid, wait_s)


def _wait_for_no_children_but(pid: int, wait_s: float) -> set[int]:
    deadline = time.monotonic() + wait_s
    while (others := live_children() - {pid}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return others


@dataclass
class Piped:
    """A REPL that read a script from a pipe."""

    returncode: int
    stdout: str
    stderr: str


async def piped(
    args: list[str], script: str, env: dict[str, str], *, wait_s: float = 45.0
) -> Piped:
    """Run the REPL with `script` on its stdin (not a terminal) and wait for it to leave."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "repl",
        *args,
        cwd=str(ROOT),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(script.encode()), wait_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Piped(process.returncode, stdout.decode(), stderr.decode())
