"""Running git on a repository the agent can write: nothing its config names is ever run.

The agent may have written the repository's .git/config (or a file it includes), so every git
the gateway starts:

- reads no system or global config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`) and gets
  an environment of its own (PATH, locale, time zone, HOME: nothing else of the gateway's, so no
  secret);
- overrides, on its command line (which beats every config file), whatever would run a program:
  the fsmonitor hook, hooks, external diff and textconv drivers (`--no-ext-diff --no-textconv` on
  diffs too), pagers, askpass, ssh, and any transport (`protocol.allow=never`: no network);
- reads the workspace's repository itself only to find it and its HEAD: the commands that read
  work tree files (and so could run a filter driver) run with the gateway's own store as their
  git directory (gateway/changes/snapshot.py), whose config names no filter;
- never asks (`GIT_TERMINAL_PROMPT=0`), ignores replace refs (they would change what a tree
  means), runs no automatic gc or maintenance, and leaves optional locks alone;
- runs as a subprocess of the event loop with a deadline and a bound on what it may print; a
  git that overruns either is killed with its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_S = 30.0
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
_STDERR_BYTES = 4096
_READ_CHUNK = 65_536
_KEPT_ENV = ("PATH", "HOME", "LANG", "TZ")

SAFE_CONFIG = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.splitIndex=false",
    "core.attributesFile=/dev/null",
    "core.pager=cat",
    "core.askPass=",
    "core.sshCommand=",
    "core.gitProxy=",
    "credential.helper=",
    "protocol.allow=never",
    "diff.external=",
    "gc.auto=0",
    "maintenance.auto=false",
    "safe.directory=*",
)
"""`-c` settings on every git command line (command-line config outranks every file)."""


class GitFailed(Exception):
    """git exited non-zero, overran its deadline or its output bound, or could not start."""


def git_environment(child_env: Mapping[str, str]) -> dict[str, str]:
    """git's environment: from the agent's allow-listed one, only what finds and runs git."""
    env = {
        name: value
        for name, value in child_env.items()
        if name in _KEPT_ENV or name.startswith("LC_")
    }
    env.setdefault("PATH", os.defpath)
    env.update(
        {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_ADVICE": "0",
        }
    )
    return env


@dataclass(frozen=True)
class Output:
    data: bytes
    truncated: bool = False


class Git:
    """Starts git safely (module docstring); one per gateway."""

    def __init__(self, env: Mapping[str, str], binary: str = "git") -> None:
        self._env = dict(env)
        self._binary = binary

    async def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        config: Sequence[str] = (),
        timeout_s: float = GIT_TIMEOUT_S,
        max_output: int = MAX_OUTPUT_BYTES,
        truncate: bool = False,
        ok_codes: Sequence[int] = (0,),
    ) -> Output:
        """git's stdout. Over `max_output` bytes: cut there (`truncate`) or GitFailed."""
        argv = [self._binary, "--no-pager"]
        for setting in (*SAFE_CONFIG, *config):
            argv += ["-c", setting]
        argv += list(args)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env={**self._env, **(env or {})},
                start_new_session=True,  # a group of its own: killed whole on overrun
            )
        except OSError as exc:
            raise GitFailed(f"cannot start git: {exc.strerror or exc}") from exc
        try:
            async with asyncio.timeout(timeout_s):
                stderr = asyncio.ensure_future(_bounded(proc.stderr, _STDERR_BYTES))
                data, truncated = await _read(proc.stdout, max_output)
                if truncated:
                    _kill(proc)
                code = await proc.wait()
                err = await stderr
        except TimeoutError:
            raise GitFailed(f"git {args[0] if args else ''} took over {timeout_s:g} s") from None
        finally:
            if proc.returncode is None:
                _kill(proc)
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
        if truncated:
            if truncate:
                return Output(data, truncated=True)
            raise GitFailed(f"git {args[0]} printed over {max_output} bytes")
        if code not in ok_codes:
            message = err.decode(errors="replace").strip().splitlines()
            raise GitFailed(
                f"git {args[0] if args else ''} exited with {code}: "
                f"{message[-1] if message else 'no message'}"
            )
        return Output(data)


async def _read(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, bool]:
    data = bytearray()
    while stream is not None and (chunk := await stream.read(_READ_CHUNK)):
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), True
    return bytes(data), False


async def _bounded(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    kept = bytearray()
    while stream is not None and (chunk := await stream.read(_READ_CHUNK)):
        kept += chunk
        if len(kept) > limit:
            del kept[: len(kept) - limit]
    return bytes(kept)


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
