"""Regular files only: reading a file whose path a client or a watched folder controls.

Opening a FIFO blocks until a writer appears, a device such as /dev/zero never ends, and a huge
regular file read whole holds the event loop and memory. So a path is opened with `O_NONBLOCK`
(a FIFO opens at once instead of waiting) and `O_NOFOLLOW` where the caller has already resolved
it (a symlink swapped in afterwards is refused rather than followed), the *opened* descriptor is
checked with `fstat` (no race between the check and the read), and at most `max_bytes` are read.
The functions here block on disk I/O: call them through `asyncio.to_thread` from the loop (the
`read_async`/`head_async` wrappers do).

Errors:

    OSError
     └── NotRegularFile(path, reason)    a FIFO, socket, device, directory, over the size cap,
                                         or (read_confined) outside the allowed directories
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gateway.errors import quote_path

OUTSIDE = "outside the allowed directories"


class NotRegularFile(OSError):
    """The path names something other than a regular file within the size cap."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(errno.EINVAL, reason, quote_path(path))
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{quote_path(self.path)}: {self.reason}"


@dataclass(frozen=True)
class Head:
    """The first bytes of a regular file and what fstat said about it."""

    data: bytes
    size: int
    mtime: float


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def _open(path: Path, *, follow: bool) -> tuple[int, os.stat_result]:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    return _open_regular(path, flags if follow else flags | os.O_NOFOLLOW)


def _open_regular(path: Path | str, flags: int) -> tuple[int, os.stat_result]:
    """os.open with `flags` (O_NONBLOCK among them: a FIFO never blocks), then fstat on the
    opened descriptor: NotRegularFile for anything but a regular file."""
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP and flags & os.O_NOFOLLOW:
            raise NotRegularFile(path, "a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a unix socket cannot be open()ed, nor a FIFO for writing
            kind = "a FIFO or socket" if flags & os.O_WRONLY else "a socket"
            raise NotRegularFile(path, kind) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path, _kind(info.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def check(path: Path) -> None:
    """Raise NotRegularFile if `path` exists and is not a regular file (symlinks followed);
    nothing is opened, so nothing can block."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFile(path, _kind(info.st_mode))


def read(path: Path, max_bytes: int, *, follow: bool = False) -> bytes:
    """The whole file; NotRegularFile if it is not a regular file or larger than `max_bytes`.
    FileNotFoundError and other OSErrors pass through."""
    fd, info = _open(path, follow=follow)
    try:
        return _read_all(fd, info, path, max_bytes)
    finally:
        os.close(fd)


def read_confined(path: Path, max_bytes: int, roots: Sequence[Path]) -> bytes:
    """As `read` with symlinks followed, if the file opened lies inside one of `roots`
    (resolved paths); NotRegularFile with the reason OUTSIDE otherwise.

    What is checked is the opened file's own path (from /proc/self/fd), not a path resolved
    earlier: a link or a directory swapped after an earlier check does not lead out.
    """
    fd, info = _open(path, follow=True)
    try:
        try:
            real = Path(os.readlink(f"/proc/self/fd/{fd}"))  # noqa: PTH115  # the fd's own path
        except OSError:
            raise NotRegularFile(path, "cannot be resolved") from None
        if not real.is_absolute() or not any(real.is_relative_to(root) for root in roots):
            raise NotRegularFile(path, OUTSIDE)
        return _read_all(fd, info, path, max_bytes)
    finally:
        os.close(fd)


def _read_all(fd: int, info: os.stat_result, path: Path, max_bytes: int) -> bytes:
    if info.st_size > max_bytes:
        raise NotRegularFile(path, f"larger than {max_bytes} bytes")
    chunks = []
    total = 0
    while True:
        chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:  # it grew while being read
            raise NotRegularFile(path, f"larger than {max_bytes} bytes")
    return b"".join(chunks)


def head(path: Path, max_bytes: int, *, follow: bool = False) -> Head:
    """At most the first `max_bytes` of a regular file, with its size and mtime."""
    fd, info = _open(path, follow=follow)
    try:
        data = os.read(fd, max_bytes) if max_bytes > 0 else b""
    finally:
        os.close(fd)
    return Head(data, info.st_size, info.st_mtime)


def open_for_reading(path: Path) -> BinaryIO:
    """A regular file opened for reading, never through a symlink and never blocking on a
    FIFO (a session's logs, which an agent of the gateway's uid could replace)."""
    fd, _ = _open(path, follow=False)
    return os.fdopen(fd, "rb")


async def read_async(path: Path, max_bytes: int, *, follow: bool = False) -> bytes:
    return await asyncio.to_thread(read, path, max_bytes, follow=follow)


async def head_async(path: Path, max_bytes: int, *, follow: bool = False) -> Head:
    return await asyncio.to_thread(head, path, max_bytes, follow=follow)


def open_for_append(path: Path | str) -> int:
    """A descriptor on a regular file opened (created if missing) for appending, never through
    a symlink and never blocking on a FIFO; for lock files beside the files we write."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    fd, _ = _open_regular(path, flags)
    return fd


def open_for_update(path: Path | str) -> int:
    """A descriptor on a regular file opened (created if missing) for reading and writing at
    given offsets, never through a symlink and never blocking on a FIFO."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    fd, _ = _open_regular(path, flags)
    return fd


def write_new(
    path: Path | str, data: bytes, *, mode: int = 0o600, like: os.stat_result | None = None
) -> None:
    """Write `data` to a new file at `path` (whatever was there is unlinked first; never
    followed, never a FIFO), for the temporary file of an atomic replace. The file has `mode`
    (0600 unless told, less the umask), or, `like` the file it is to replace, takes that file's
    mode (and, when running as root, its owner and group): replacing a user's file does not make
    it the gateway's."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:  # rare (a crash's leftover): not an unlink before every write
        os.unlink(path)  # noqa: PTH108  # a Path or its text
        fd = os.open(path, flags, mode)
    try:
        if like is not None:
            if os.geteuid() == 0:
                # Before the mode (chown clears setuid bits); a file system that refuses (root
                # squashed) leaves the gateway's owner rather than failing the write.
                with contextlib.suppress(OSError):
                    os.fchown(fd, like.st_uid, like.st_gid)
            os.fchmod(fd, stat.S_IMODE(like.st_mode))
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)
