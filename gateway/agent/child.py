"""A child process on the event loop at the cost of a few system calls: its pipes are plain
non-blocking descriptors, read or written when the loop says they are ready, and its exit is a
pidfd the loop watches (a waiting thread where the kernel has no pidfds).

asyncio's subprocess support builds a transport and a protocol for each pipe and one for the
process, and calls back through each of them as the child starts, writes and ends: half of what
starting an agent cost the gateway (BENCHMARKS.md, issue 18). The gateway uses none of what they
add: it reads each pipe in a loop of its own, at its own pace, and writes one prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

LOST_EXIT_CODE = 255
"""The exit code of a child something else reaped first (as asyncio reports it)."""


class Pipe:
    """Our end of one of the child's pipes, non-blocking, used from the running loop."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd
        self._waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    async def read(self, size: int) -> bytes:
        """Up to `size` bytes once there are some; b"" at the end (which closes it), or once
        closed here."""
        while (fd := self._fd) is not None:
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                await self._ready(fd, writing=False)
                continue
            if not data:
                self.close()
            return data
        return b""

    async def write_all(self, data: bytes) -> None:
        """All of `data`, as the reader takes it (BrokenPipeError when it is gone)."""
        view = memoryview(data)
        while view and (fd := self._fd) is not None:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await self._ready(fd, writing=True)

    def try_write(self, data: bytes) -> int:
        """As much of `data` as fits now, without waiting: the bytes written."""
        if self._fd is None:
            return 0
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0

    async def _ready(self, fd: int, *, writing: bool) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        if writing:
            loop.add_writer(fd, _wake, waiter)
        else:
            loop.add_reader(fd, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if self._fd == fd:  # not closed meanwhile (close() has unwatched it then)
                _unwatch(loop, fd)

    def close(self) -> None:
        """Close our end now; a read or write waiting on it returns."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            _unwatch(waiter.get_loop(), fd)
            _wake(waiter)
        os.close(fd)

    def __del__(self) -> None:  # as a file object does: a pipe dropped unread is closed
        if self._fd is not None:
            os.close(self._fd)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _unwatch(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    loop.remove_reader(fd)
    loop.remove_writer(fd)


class Child:
    """A started process and our ends of its stdin, stdout and stderr."""

    def __init__(
        self, popen: subprocess.Popen[bytes], stdin: Pipe, stdout: Pipe, stderr: Pipe
    ) -> None:
        self._popen = popen  # kept until reaped: a dropped Popen would be reaped by subprocess
        self.pid = popen.pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._exit: asyncio.Future[int] = self._loop.create_future()
        self._watch_exit()

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        umask: int,
        user: int | None = None,
        group: int | None = None,
        extra_groups: Sequence[int] | None = None,
    ) -> Child:
        """Start `argv` in a session of its own (its own process group, no controlling
        terminal). Raises what subprocess raises: FileNotFoundError, PermissionError, OSError."""
        fds: list[int] = []
        try:
            for _ in range(3):
                fds.extend(os.pipe2(os.O_CLOEXEC))
            stdin_read, stdin_write, stdout_read, stdout_write, stderr_read, stderr_write = fds
            popen = subprocess.Popen(  # noqa: S603  # an argv list, never a shell
                list(argv),
                stdin=stdin_read,
                stdout=stdout_write,
                stderr=stderr_write,
                env=env,
                cwd=cwd,
                start_new_session=True,
                umask=umask,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        for fd in (stdin_read, stdout_write, stderr_write):  # the child's ends
            os.close(fd)
        return cls(popen, Pipe(stdin_write), Pipe(stdout_read), Pipe(stderr_read))

    async def wait(self) -> int:
        """Its exit code once it has exited (-N: killed by signal N); its pipes may stay open."""
        return await asyncio.shield(self._exit)

    async def exited_within(self, timeout_s: float) -> bool:
        """Whether it has exited, waiting at most `timeout_s` for it."""
        if not self._exit.done():
            await asyncio.wait({self._exit}, timeout=timeout_s)
        return self._exit.done()

    def close_pipes(self) -> None:
        for pipe in (self.stdin, self.stdout, self.stderr):
            pipe.close()

    def _watch_exit(self) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError:  # a kernel without pidfds (before 5.3): a thread waits instead
            threading.Thread(
                target=self._wait_in_thread, name=f"wait-{self.pid}", daemon=True
            ).start()
            return
        self._loop.add_reader(pidfd, self._reap, pidfd)

    def _reap(self, pidfd: int) -> None:
        """Its pidfd is readable: it has exited, and waitpid returns at once."""
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            log.warning("child %d was reaped by something else", self.pid)
            self._exited(LOST_EXIT_CODE)
            return
        self._exited(os.waitstatus_to_exitcode(status))

    def _wait_in_thread(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = LOST_EXIT_CODE
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._exited, code)

    def _exited(self, code: int) -> None:
        self.returncode = self._popen.returncode = code
        if not self._exit.done():
            self._exit.set_result(code)
