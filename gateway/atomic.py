"""Atomic replace: a file is written beside its destination and renamed over it, so a reader (or
the gateway after a crash) finds the old content or the new, never half of it."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

from gateway import regular_file

_temp_numbers = itertools.count()


def write_atomic(
    path: Path | str, data: bytes, *, mode: int = 0o600, like: os.stat_result | None = None
) -> None:
    """Replace `path` with `data`. The temporary file, `.<name>.<pid>.<n>.tmp` in the same
    directory, is unique per process and call (threads may write at once), never followed
    through a symlink; it is created with `mode` (before the umask), or `like` the file it
    replaces (`regular_file.write_new`). Whatever fails removes it and is raised as is.

    No fsync: the file survives a crash of the process, which is the failure that matters to
    the gateway, and writers stay fast; a power loss may cost the newest writes.
    """
    # Paths as text: a Path built, joined and renamed cost more than the write (twice a run).
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f".{name}.{os.getpid()}.{next(_temp_numbers)}.tmp")  # noqa: PTH118
    try:
        regular_file.write_new(temp, data, mode=mode, like=like)
        os.replace(temp, path)  # noqa: PTH105  # text, above
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)  # noqa: PTH108  # text, above
        raise
