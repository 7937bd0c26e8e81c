"""How much CPU an agent gets next to the gateway: its nice value and its scheduling group's.

With autogroup scheduling (on by default in most kernels) a session is a scheduling group, and
across groups only the group's nice counts: an agent in a session of its own would otherwise
weigh as much as the whole gateway. So an agent is niced twice: its process group (every thread
codex has started by now, and by inheritance every one it starts later, with the commands it
runs), and its session's group. (Commands codex starts in sessions of their own get groups of
their own at the default weight, with the nice value inherited.) Measured with 8 real codex runs
on 2 CPUs, /health p99: 86-109 ms not niced, 47-73 ms at 10, 31-38 ms at 19 (BENCHMARKS.md).

The gateway itself may be in no autogroup: the root group, where a process in the session of a
container's init lives (CI's runner does), and where its threads weigh by their own nice.

Without CAP_SYS_ADMIN the kernel takes one change of a group's nice per 100 ms, machine-wide,
and refuses the others with EAGAIN: agents started together must take turns (`set_group_nice`
says when to try again).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

OWN_AUTOGROUP = Path("/proc/self/autogroup")
GROUP_NICE_INTERVAL_S = 0.1  # the kernel's interval between group changes without CAP_SYS_ADMIN


def make_nicer(pid: int, nice: int, own_autogroup: Path = OWN_AUTOGROUP) -> int | None:
    """Make the process group `pid` and its session's scheduling group `nice` steps nicer than
    the gateway (capped at 19). Returns the group's nice value when the kernel said to try
    again later (`set_group_nice`), else None."""
    own_nice = os.getpriority(os.PRIO_PROCESS, 0)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PGRP, pid, min(19, own_nice + nice))
    base = autogroup_nice(own_autogroup)
    group_nice = min(19, (own_nice if base is None else base) + nice)
    return None if set_group_nice(pid, group_nice) else group_nice


def set_group_nice(pid: int, value: int) -> bool:
    """Set the nice value of `pid`'s scheduling group; False when the kernel says to try again
    later, True when it is done or cannot be done (no autogroups, the process is gone)."""
    try:
        fd = os.open(f"/proc/{pid}/autogroup", os.O_WRONLY)
        try:
            os.write(fd, str(value).encode())  # unbuffered: the kernel's answer is this write's
        finally:
            os.close(fd)
    except OSError as exc:
        return exc.errno != errno.EAGAIN
    return True


def autogroup_nice(path: Path) -> int | None:
    """The nice value in an autogroup file (`/proc/<pid>/autogroup`: "/autogroup-123 nice 0"),
    or None when there is none: no such file (a kernel without autogroups) or an empty one (a
    process in the root group)."""
    try:  # os.open/os.read: once per run, a third of read_text()'s system calls
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            words = os.read(fd, 4096).decode(errors="replace").split()
        finally:
            os.close(fd)
    except OSError:
        return None
    match words:
        case [_, "nice", value] if value.removeprefix("-").isdigit():
            return int(value)
        case _:
            return None
