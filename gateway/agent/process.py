"""One agent process: spawn codex with an argv list, feed the prompt, read its output, stop it.

The process gets its own process group. Stopping is bounded and escalates: SIGINT to the group
(the only signal that makes codex kill the commands it started, which run in sessions of their
own), a grace period, then SIGKILL to the group and to every descendant still alive, so nothing
is orphaned. `stop` survives the cancellation of its caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

from gateway.agent.budget import OutputMeter
from gateway.agent.child import Child, Pipe
from gateway.agent.events import LineFramer, OversizedLine
from gateway.agent.priority import GROUP_NICE_INTERVAL_S, make_nicer, set_group_nice
from gateway.config import AgentUser
from gateway.errors import AgentUnavailable, InvalidRequest
from gateway.procfs import descendants
from gateway.runs.workspace import open_confined

log = logging.getLogger(__name__)

_READ_CHUNK = 65_536
_KILL_WAIT_S = 5.0
_GROUP_NICE_ATTEMPTS = 100  # turns of the kernel's: 10 s, for as many agents started at once


class AgentProcess:
    """Owns one codex (or stand-in) process from spawn to reaping."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        stdin_text: str,
        max_line_bytes: int,
        stderr_tail_bytes: int,
        on_stderr: Callable[[bytes], None] | None = None,
        nice: int = 0,
        roots: Sequence[Path] = (),
        user: AgentUser | None = None,
        output: OutputMeter | None = None,
    ) -> None:
        """`output`: the agent's account in the gateway's output budget (gateway/agent/
        budget.py): its stdout and stderr are read no faster than it allows."""
        self._argv = list(argv)
        self._env = dict(env)
        self._cwd = cwd
        self._roots = tuple(roots) or (cwd,)
        self._user = user
        self._stdin = stdin_text.encode()
        self._framer = LineFramer(max_line_bytes)
        self._stderr_tail = bytearray()
        self._stderr_limit = stderr_tail_bytes
        self._on_stderr = on_stderr
        self._nice = nice
        self._output = output
        # Set once stdout has ended or the agent is being stopped: what is left is read at once.
        self._unpaced = asyncio.Event()
        self._proc: Child | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stdin_task: asyncio.Task[None] | None = None
        self._group_nice_task: asyncio.Task[None] | None = None
        self.stopped_by_signal = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    def _started(self) -> Child:
        if self._proc is None:
            raise RuntimeError("the agent process has not been started")
        return self._proc

    async def start(self) -> None:
        # The workspace is checked again here, on the opened directory, and the agent starts in
        # exactly that one: its request was checked before it waited for a slot.
        workspace = open_confined(self._cwd, self._roots, shown=str(self._cwd))
        user = self._user
        switch = user is not None and (user.uid != os.geteuid() or user.gid != os.getegid())
        try:
            self._proc = Child.spawn(
                self._argv,
                env=self._env,
                # The child's /proc/self is itself, and it still holds the (close-on-exec)
                # descriptor when it changes directory: it lands in the verified directory,
                # and the agent does not inherit the descriptor.
                cwd=f"/proc/self/fd/{workspace}",
                # In a session of its own: its own process group (what stop() signals), no
                # controlling terminal, and its own scheduling group (gateway/agent/priority.py).
                # The gateway's own files are private (umask 077, gateway/__main__.py); what
                # codex writes in the workspace is as usual.
                umask=0o022,
                # CODEX_GATEWAY_AGENT_USER: the agent, and all it runs, as that user alone.
                user=user.uid if switch and user else None,
                group=user.gid if switch and user else None,
                extra_groups=[] if switch else None,
            )
        except FileNotFoundError as exc:
            # (Stats on a failure path only.)
            if not self._cwd.is_dir():  # removed since it was checked
                raise InvalidRequest(
                    f"workspace is not an existing directory: {self._cwd}", field="workspace"
                ) from exc
            # A file that is there: the kernel could not find what it runs with.
            if Path(self._argv[0]).is_file():  # noqa: ASYNC240
                raise AgentUnavailable(
                    f"The codex binary cannot be started: {self._argv[0]} names an interpreter"
                    " or loader that was not found"
                ) from exc
            raise AgentUnavailable(f"The codex binary was not found: {self._argv[0]}") from exc
        except PermissionError as exc:
            if switch and user is not None:
                raise AgentUnavailable(
                    f"Cannot start codex as {user.name} (CODEX_GATEWAY_AGENT_USER): {exc.strerror}"
                ) from exc
            raise AgentUnavailable(f"The codex binary is not executable: {self._argv[0]}") from exc
        except OSError as exc:
            raise AgentUnavailable(f"Cannot start codex: {exc.strerror}") from exc
        finally:
            os.close(workspace)
        if self._nice:
            try:
                group_nice = make_nicer(self._proc.pid, self._nice)
            except BaseException:
                # Whatever went wrong, a started agent is not left behind for nobody to stop.
                await self.stop(grace_s=0)
                raise
            if group_nice is not None:
                self._group_nice_task = asyncio.create_task(self._nice_group_later(group_nice))
        self._write_prompt()
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    async def _nice_group_later(self, value: int) -> None:
        """The kernel refused the group's nice for now (it takes one change per 100 ms without
        CAP_SYS_ADMIN): try again, in turn with agents started at the same time."""
        proc = self._started()
        for _ in range(_GROUP_NICE_ATTEMPTS):
            await asyncio.sleep(GROUP_NICE_INTERVAL_S)
            if proc.returncode is not None or set_group_nice(proc.pid, value):
                return
        log.warning("agent %d: its scheduling group could not be niced", proc.pid)

    def _write_prompt(self) -> None:
        """The prompt, then the end of stdin: at once when the pipe takes it all (a prompt
        within the pipe's 64 KiB), else the rest as the agent reads it."""
        stdin = self._started().stdin
        try:
            written = stdin.try_write(self._stdin)
        except (BrokenPipeError, ConnectionResetError):
            written = len(self._stdin)  # the agent exited without reading its prompt
        if written == len(self._stdin):
            stdin.close()
        else:
            self._stdin_task = asyncio.create_task(self._write_stdin(written))

    async def _write_stdin(self, written: int) -> None:
        stdin = self._started().stdin
        try:
            await stdin.write_all(self._stdin[written:])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent exited without reading its prompt; its exit code tells the story
        finally:
            stdin.close()

    async def _drain_stderr(self) -> None:
        stderr = self._started().stderr
        while chunk := await stderr.read(_READ_CHUNK):
            self._stderr_tail += chunk
            if len(self._stderr_tail) > self._stderr_limit:
                del self._stderr_tail[: len(self._stderr_tail) - self._stderr_limit]
            if self._on_stderr is not None:
                self._on_stderr(chunk)
            if self._output is not None:
                await self._pace(self._output.spend(chunk.count(b"\n"), len(chunk)))

    def _stop_pacing(self) -> None:
        """stdout has ended or the agent is being stopped: the rest is read at once, and the
        agent leaves the output budget's split (gateway/agent/budget.py)."""
        self._unpaced.set()
        if self._output is not None:
            self._output.close()

    async def _pace(self, wait_s: float) -> None:
        """Wait out the agent's share of the output budget, unless it is being stopped or its
        stdout has ended (its exit must not wait for the rest of its stderr to be paced)."""
        if wait_s > 0 and not self._unpaced.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._unpaced.wait()

    async def batches(self) -> AsyncIterator[list[bytes | OversizedLine]]:
        """stdout as bounded lines, a batch per read, as they arrive, until EOF. Reading never
        stops early: codex panics when its stdout closes under it. Past the agent's share of the
        output budget the next read waits (its pipe fills meanwhile: nothing is lost)."""
        stdout = self._started().stdout
        output = self._output
        while chunk := await stdout.read(_READ_CHUNK):
            batch = list(self._framer.feed(chunk))
            if batch:
                yield batch
            # A read that finds data buffered does not suspend: give followers and other
            # requests their turn between batches of a fast-writing agent.
            await asyncio.sleep(output.spend(len(batch), len(chunk)) if output else 0)
        self._stop_pacing()
        last = list(self._framer.close())
        if last:
            yield last

    async def wait(self) -> int:
        """Its exit code, once it has exited and its stderr has ended."""
        proc = self._started()
        code = await proc.wait()
        # The rest of a prompt it never read has nowhere to go: the writer ends here, at once.
        proc.stdin.close()
        if self._stderr_task is not None:
            await self._stderr_task
        return code

    def stderr_tail(self) -> str:
        return self._stderr_tail.decode(errors="replace")

    async def stop(self, grace_s: float) -> None:
        """SIGINT the group, wait `grace_s`, then SIGKILL the group and its descendants."""
        proc = self._proc
        if proc is None:
            return
        await asyncio.shield(self._stop(proc, grace_s))

    async def _stop(self, proc: Child, grace_s: float) -> None:
        # Keep stdout flowing while stopping: an agent blocked on a full pipe cannot exit.
        drain = asyncio.ensure_future(_discard(proc.stdout))
        self._stop_pacing()
        try:
            found = descendants(proc.pid)
            if proc.returncode is None:
                self.stopped_by_signal = True
                _signal_group(proc.pid, signal.SIGINT)
                await proc.exited_within(grace_s)
            found |= descendants(proc.pid)
            # codex runs commands in sessions of their own: the group kill does not reach them.
            _signal_group(proc.pid, signal.SIGKILL)
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            await proc.exited_within(_KILL_WAIT_S)
            pipes = {drain, *([self._stderr_task] if self._stderr_task else [])}
            _, open_pipes = await asyncio.wait(pipes, timeout=_KILL_WAIT_S)
            if open_pipes:
                # Something outside our reach still holds a pipe: stop listening to it.
                log.warning("agent %d: a pipe stayed open after the kill; closing it", proc.pid)
        finally:
            proc.close_pipes()
            for task in (drain, self._stdin_task, self._stderr_task, self._group_nice_task):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def reap(self) -> None:
        """After a normal exit: kill anything the agent left running in its process group."""
        if self._proc is not None:
            _signal_group(self._proc.pid, signal.SIGKILL)
        if self._group_nice_task is not None:
            self._group_nice_task.cancel()


async def _discard(pipe: Pipe) -> None:
    with contextlib.suppress(OSError):
        while await pipe.read(_READ_CHUNK):
            pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
