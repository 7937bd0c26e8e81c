"""procfs: the readers of /proc, against real processes: this one, a child and its child, and a
process that has exited."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from gateway import procfs


@pytest.fixture
def family() -> Iterator[tuple[int, int]]:
    """A child (`sh`) that started a grandchild (`sleep`), as their pids."""
    with subprocess.Popen(
        ["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        try:
            yield proc.pid, grandchild
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(grandchild, signal.SIGKILL)
            proc.kill()


@pytest.fixture
def gone() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_descendants_are_children_and_theirs(family: tuple[int, int]) -> None:
    child, grandchild = family
    assert {child, grandchild} <= procfs.descendants(os.getpid())
    assert procfs.descendants(child) == {grandchild}


def test_the_parent_in_stat_fields(family: tuple[int, int]) -> None:
    child, grandchild = family
    assert int(procfs.stat_fields(grandchild)[1]) == child
    assert procfs.stat_fields(child)[0] in {b"S", b"R"}


def test_cmdline_is_the_argv(family: tuple[int, int]) -> None:
    _, grandchild = family
    deadline = time.monotonic() + 10
    while procfs.cmdline(grandchild)[:2] != [b"sleep", b"30"]:  # until the fork has exec'd
        assert time.monotonic() < deadline, procfs.cmdline(grandchild)
        time.sleep(0.01)
    assert procfs.cmdline(os.getpid())[0] == os.fsencode(sys.orig_argv[0])  # this process's own


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda pid: procfs.status_kib(pid, "VmRSS"), id="status_kib"),
        pytest.param(procfs.rss_bytes, id="rss_bytes"),
    ],
)
def test_memory_is_read_and_zero_once_gone(read: object, gone: int) -> None:
    assert callable(read)
    assert read(os.getpid()) > 0
    assert read(gone) == 0


@pytest.mark.parametrize("read", [procfs.cmdline, procfs.stat_fields], ids=["cmdline", "stat"])
def test_a_gone_process_is_an_oserror(read: object, gone: int) -> None:
    assert callable(read)
    with pytest.raises(OSError):
        read(gone)
    assert procfs.descendants(gone) == set()
