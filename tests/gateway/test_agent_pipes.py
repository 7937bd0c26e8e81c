"""An agent's pipes without asyncio's subprocess transports (gateway/agent/child.py): a prompt
bigger than the pipe reaches the agent whole, an agent that never reads it ends the run normally,
its output arrives whole and in order, and no descriptor is left open after it, whichever way it
ended. Real processes throughout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gateway.agent.process import AgentProcess
from tests.fakes import AGENTS_DIR

PIPE_BYTES = 65_536  # Linux's default pipe buffer: a prompt past it is written in pieces


def _open_fds() -> set[str]:
    return {entry.name for entry in Path("/proc/self/fd").iterdir()}


def _agent(tmp_path: Path, argv: list[str], prompt: str = "hi") -> AgentProcess:
    return AgentProcess(
        argv,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        stdin_text=prompt,
        max_line_bytes=8 << 20,
        stderr_tail_bytes=1024,
    )


async def _output(agent: AgentProcess) -> list[bytes]:
    lines: list[bytes] = []
    async for batch in agent.batches():
        lines.extend(line for line in batch if isinstance(line, bytes))
    return lines


@pytest.mark.parametrize("size", [0, 10, PIPE_BYTES - 1, PIPE_BYTES + 1, 3 * PIPE_BYTES + 17])
async def test_a_prompt_of_any_size_reaches_the_agent_whole(tmp_path: Path, size: int) -> None:
    prompt = "".join(chr(ord("a") + n % 26) for n in range(size))
    before = _open_fds()
    agent = _agent(tmp_path, [sys.executable, str(AGENTS_DIR / "echo_agent.py")], prompt)
    await agent.start()
    lines = await _output(agent)
    assert await agent.wait() == 0
    agent.reap()
    message = json.loads(lines[2])["item"]["text"]
    assert json.loads(message)["prompt"] == prompt
    assert _open_fds() == before


async def test_an_agent_that_never_reads_its_big_prompt_ends_normally(tmp_path: Path) -> None:
    before = _open_fds()
    agent = _agent(tmp_path, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], "x" * 1_000_000)
    await agent.start()
    assert await _output(agent) == [b"out"]
    assert await agent.wait() == 3
    agent.reap()
    assert agent.stderr_tail() == "err\n"
    assert _open_fds() == before


async def test_much_output_arrives_whole_and_in_order(tmp_path: Path) -> None:
    script = "for i in $(seq 1 20000); do echo line $i; echo e$i >&2; done"
    agent = _agent(tmp_path, ["/bin/sh", "-c", script])
    await agent.start()
    lines = await _output(agent)
    assert await agent.wait() == 0
    assert lines == [f"line {n}".encode() for n in range(1, 20_001)]
    assert agent.stderr_tail().endswith("e20000\n")


async def test_a_stopped_agent_leaves_no_descriptor_behind(tmp_path: Path) -> None:
    before = _open_fds()
    # Its pipes are held by a descendant too (the background sleep): the group kill ends both.
    agent = _agent(tmp_path, ["/bin/sh", "-c", "sleep 1000 & sleep 1000"])
    await agent.start()
    await agent.stop(grace_s=0.2)
    assert agent.returncode is not None
    assert _open_fds() == before


async def test_an_agent_killed_by_a_signal_reports_it(tmp_path: Path) -> None:
    agent = _agent(tmp_path, ["/bin/sh", "-c", "kill -TERM $$"])
    await agent.start()
    assert await _output(agent) == []
    assert await agent.wait() == -15
