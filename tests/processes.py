"""Process checks for tests: is a pid still running, what does this process have below it, and
what is each of those (for failure messages that say what was left running, not just a pid)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.agent.priority import OWN_AUTOGROUP, autogroup_nice
from gateway.procfs import descendants


def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: [0] state, [1] parent, [16] nice (OSError once
    the process is gone)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a parent that may never reap it."""
    try:
        return stat_fields(pid)[0] not in ("Z", "X")
    except OSError:
        return False


def live_children() -> set[int]:
    return {pid for pid in descendants(os.getpid()) if alive(pid)}


def describe(pid: int) -> str:
    """`pid` as /proc shows it: command line, state, parent, nice and what it waits in."""
    proc = Path(f"/proc/{pid}")
    try:
        argv = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        fields = stat_fields(pid)
        wchan = (proc / "wchan").read_text().strip() or "-"
    except OSError:
        return f"{pid} (gone)"
    command = " ".join(part.decode(errors="replace") for part in argv)[:160]
    state, ppid, nice = fields[0], fields[1], fields[16]
    return f"{pid} [{command}] state {state}, ppid {ppid}, nice {nice}, waiting in {wchan}"


def running_below() -> dict[int, str]:
    """Every live process below this one, described: `assert running_below() == {}` fails
    naming what was left running."""
    return {pid: describe(pid) for pid in sorted(live_children())}


def nice_of(pid: int) -> int:
    """The nice value of a process's every thread (they must agree)."""
    values = {
        int(stat_fields(int(tid))[16])
        for tid in os.listdir(f"/proc/{pid}/task")  # noqa: PTH208  # names only
    }
    (value,) = values
    return value


def expected_group_nice(steps: int, own_autogroup: Path = OWN_AUTOGROUP) -> int:
    """The nice an agent's scheduling group gets `steps` nicer than this process (the gateway
    under test): relative to this process's group, or to its own nice outside any group."""
    own_group = autogroup_nice(own_autogroup)
    return min(19, (nice_of(os.getpid()) if own_group is None else own_group) + steps)
