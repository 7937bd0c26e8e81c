"""Process checks for tests: is a pid still running, what does this process have below it, and
what is each of those (for failure messages that say what was left running, not just a pid)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.agent import descendants


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a parent that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def live_children() -> set[int]:
    return {pid for pid in descendants(os.getpid()) if alive(pid)}


def describe(pid: int) -> str:
    """`pid` as /proc shows it: command line, state, parent, nice and what it waits in."""
    proc = Path(f"/proc/{pid}")
    try:
        argv = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
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
