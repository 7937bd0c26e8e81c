"""Process checks for tests: is a pid still running, what does this process have below it."""

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
