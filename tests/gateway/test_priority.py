"""Agents are niced, with their scheduling groups, relative to the gateway, wherever it runs.

The gateway's own path (an agent just started, end to end) is in test_faults.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.agent.priority import OWN_AUTOGROUP, autogroup_nice, make_nicer
from tests.processes import describe, expected_group_nice, nice_of, stat_fields


@pytest.mark.parametrize(
    ("text", "nice"),
    [
        pytest.param("/autogroup-123 nice 0\n", 0, id="in an autogroup"),
        pytest.param("/autogroup-7 nice -5\n", -5, id="a negative nice"),
        pytest.param("/autogroup-7 nice 19\n", 19, id="the nicest"),
        pytest.param("", None, id="in the root group"),
        pytest.param(None, None, id="no autogroups in this kernel"),
        pytest.param("/autogroup-7 nice\n", None, id="truncated"),
        pytest.param("/autogroup-7 weight 3\n", None, id="not a nice"),
    ],
)
def test_autogroup_nice_reads_the_file_or_says_there_is_none(
    text: str | None, nice: int | None, tmp_path: Path
) -> None:
    path = tmp_path / "autogroup"
    if text is not None:
        path.write_text(text)
    assert autogroup_nice(path) == nice


# The gateway's group as this process's, or as a file standing for a state no process a test
# starts can be put in: a group niced apart from the process (so that the group's nice, not the
# process's, is seen to count), and the root group, reached only by the session of the
# machine's (or container's) init, as CI's runner is, where /proc/self/autogroup is empty.
@pytest.mark.parametrize("steps", [7, 19])
@pytest.mark.parametrize(
    "gateway_group",
    [
        pytest.param(None, id="its own"),
        pytest.param("/autogroup-1 nice 3\n", id="a niced group"),
        pytest.param("", id="the root group"),
    ],
)
def test_make_nicer_renices_the_process_group_and_its_scheduling_group(
    steps: int, gateway_group: str | None, tmp_path: Path
) -> None:
    """What the gateway does to each agent right after the spawn, done to a process that is
    asleep (waiting for a line), then woken to start a command, which inherits it."""
    own_autogroup = OWN_AUTOGROUP
    if gateway_group is not None:
        own_autogroup = tmp_path / "autogroup"
        own_autogroup.write_text(gateway_group)
    pidfile = tmp_path / "command.pid"
    script = (
        f"read line; sleep 1000 & echo $! > {pidfile}.partial; mv {pidfile}.partial {pidfile}; wait"
    )
    with subprocess.Popen(
        ["sh", "-c", script], stdin=subprocess.PIPE, start_new_session=True
    ) as shell:
        try:
            wait_for(
                lambda: stat_fields(shell.pid)[0] == "S",
                "the shell to wait for its line",
                shell.pid,
            )
            make_nicer(shell.pid, steps, own_autogroup)
            expected = min(19, nice_of(os.getpid()) + steps)
            assert nice_of(shell.pid) == expected
            group = autogroup_nice(Path(f"/proc/{shell.pid}/autogroup"))
            assert group == expected_group_nice(steps, own_autogroup)
            assert shell.stdin is not None
            shell.stdin.write(b"go\n")
            shell.stdin.close()
            wait_for(pidfile.exists, "the pid of the command it starts", shell.pid)
            assert nice_of(int(pidfile.read_text())) == expected
        finally:
            os.killpg(shell.pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], what: str, pid: int, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {describe(pid)}"
        time.sleep(0.01)


# Without CAP_SYS_ADMIN (a gateway that is not root, or root in a container without it), the
# kernel takes one change of a group's nice per 100 ms machine-wide. This process has it, so the
# agents are started by a child without it. Four at once: each waits its turn.
AGENTS_STARTED_TOGETHER = """
import asyncio, json, sys
from pathlib import Path
from gateway.agent.process import AgentProcess
from gateway.agent.priority import autogroup_nice

async def main(workspace, steps, target):
    agents = [
        AgentProcess(["sleep", "1000"], env={"PATH": "/usr/bin:/bin"}, cwd=Path(workspace),
                     stdin_text="", max_line_bytes=1024, stderr_tail_bytes=1024, nice=steps)
        for _ in range(4)
    ]
    try:
        for agent in agents:
            await agent.start()
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            nices = [autogroup_nice(Path(f"/proc/{agent.pid}/autogroup")) for agent in agents]
            if nices == [target] * 4 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)
        capabilities = int(Path("/proc/self/status").read_text().split("CapEff:")[1].split()[0], 16)
        print(json.dumps({"nices": nices, "cap_sys_admin": bool(capabilities >> 21 & 1)}))
    finally:
        for agent in agents:
            await agent.stop(0)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def test_agents_started_together_without_cap_sys_admin_all_get_their_group_niced(
    tmp_path: Path,
) -> None:
    target = expected_group_nice(5)
    without_sys_admin = ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin"]
    script = [sys.executable, "-c", AGENTS_STARTED_TOGETHER, str(tmp_path), "5", str(target)]
    done = subprocess.run(
        [*without_sys_admin, *script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["cap_sys_admin"] is False
    assert report["nices"] == [target] * 4
