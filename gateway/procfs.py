"""Procfs: what Linux's /proc says about processes, read in one place.

Readers of a process that is gone (or of a /proc that is absent) answer as the callers need it:
`cmdline` and `stat_fields` raise OSError, the sizes are 0, `descendants` is empty. Plain
`open()` rather than pathlib: these run in hot loops over every process (the status report,
the orphan scan, the benchmarks' samplers).
"""

from __future__ import annotations

import os

_PAGE = os.sysconf("SC_PAGE_SIZE")


def cmdline(pid: int) -> list[bytes]:
    """The arguments `pid` was started with (an empty list for a kernel thread)."""
    with open(f"/proc/{pid}/cmdline", "rb") as file:  # noqa: PTH123  # see the docstring
        return file.read().split(b"\0")


def stat_fields(pid: int) -> list[bytes]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses):
    [0] state, [1] parent pid, [11] utime, [12] stime, [13] cutime, [14] cstime, in ticks."""
    with open(f"/proc/{pid}/stat", "rb") as file:  # noqa: PTH123  # see the docstring
        return file.read().rsplit(b")", 1)[-1].split()


def status_kib(pid: int, name: str) -> int:
    """A kB field of /proc/<pid>/status (`VmRSS`, `VmHWM`); 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as file:  # noqa: PTH123  # see the docstring
            for line in file:
                if line.startswith(name.encode() + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """The resident set size of `pid` in bytes, from /proc/<pid>/statm; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:  # noqa: PTH123  # see the docstring
            fields = file.read().split()
    except OSError:
        return 0
    return int(fields[1]) * _PAGE


def descendants(root: int) -> set[int]:
    """Every live process below `root` (empty where /proc is unavailable)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")  # noqa: PTH208  # names only, hot path
    except OSError:
        return set()
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            parent = int(stat_fields(int(entry))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found
