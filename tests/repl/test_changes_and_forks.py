"""`changes` and `fork` against the real gateway and codex, over REST and gRPC."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import Config
from tests.fakes.model_server import ModelServer
from tests.harness import running_bridge, running_gateway
from tests.repl.terminal import UUID, Terminal, piped, repl_env

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(workspace: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV, "HOME": str(workspace.parent)}
    return subprocess.run(
        ["git", *args], cwd=workspace, env=env, check=True, capture_output=True, text=True
    ).stdout


def _where(protocol: str, target: str, url: str) -> list[str]:
    return ["--grpc", target] if protocol == "grpc" else [url]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_changes_list_the_runs_files_and_its_diff(
    config_for: Callable[..., Config], tmp_path: Path, protocol: str
) -> None:
    config = config_for()
    workspace = config.default_workspace
    _git(workspace, "init", "-q")
    (workspace / "notes.txt").write_text("one\n")
    _git(workspace, "add", "notes.txt")
    _git(workspace, "commit", "-q", "-m", "base")
    (workspace / "notes.txt").write_text("one\ntwo, not the run's\n")  # already uncommitted
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        where = _where(protocol, gw.target, url)
        ran = await piped(
            [*where, "--mode", "compact"], "run [[scenario:patch]] add it\n", repl_env(tmp_path)
        )
        assert ran.returncode == 0, ran.stderr
        assert "→ changes: 1 file(s), +1 -0\n" in ran.stdout
        session_id = re.search(rf"→ pinned session ({UUID})", ran.stdout)
        assert session_id is not None
        script = "\n".join(
            [
                "mode compact",
                f"changes {session_id[1]}",
                f"changes {session_id[1]} diff",
                f"show {session_id[1]}",
                f"changes {session_id[1]} no-such-run",
            ]
        )
        answer = await piped([*where], script + "\n", repl_env(tmp_path))
    assert answer.returncode == 1  # the unknown run
    head = r"run [0-9a-f]{8}: 1 file\(s\), \+1 -0 · since [0-9a-f]{10}\n"
    listed, rest = re.split(head, answer.stdout)[1:]
    with_diff, shown = rest.split(f"session       {session_id[1]}")
    assert listed.split() == ["added", "+1", "-0", "hello.txt"]
    assert with_diff.startswith(listed)
    assert "--- /dev/null\n+++ b/hello.txt\n@@ -0,0 +1 @@\n+hello\n" in with_diff
    assert "notes.txt" not in answer.stdout  # changed before the run: not the run's change
    assert re.search(r"completed   completion .* 1 file\(s\) \+1 -0\n", shown)  # show
    assert answer.stderr.startswith("✗ 404 Not Found: " if protocol == "rest" else "✗ NOT_FOUND: ")
    assert _git(workspace, "status", "--porcelain").splitlines() == [" M notes.txt", "?? hello.txt"]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_fork_continues_the_parents_history_in_a_new_pinned_session(
    config_for: Callable[..., Config], model_server: ModelServer, tmp_path: Path, protocol: str
) -> None:
    config = config_for()
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        script = "\n".join(
            [
                "mode compact",
                "run [[reply:the parent's answer]] first question",
                "use",
            ]
        )
        where = _where(protocol, gw.target, url)
        first = await piped(where, script + "\n", repl_env(tmp_path))
        assert first.returncode == 0, first.stderr
        parent = re.search(rf"pinned session: ({UUID})", first.stdout)
        assert parent is not None
        script = "\n".join(
            [
                "mode compact",
                f"fork {parent[1]} [[scenario:echo_history]] and the fork goes on",
                "use",
                f"fork {parent[1]}",  # no prompt: no turn, a new session all the same
                "use",
                f"prompt {parent[1]} [[scenario:echo_history]] the parent goes on",
                "fork nope",
            ]
        )
        answer = await piped(where, script + "\n", repl_env(tmp_path), wait_s=120)
    assert answer.returncode == 1  # fork nope
    pins = re.findall(rf"→ pinned session ({UUID}) \(a fork of {parent[1]}\)", answer.stdout)
    used = re.findall(rf"pinned session: ({UUID})", answer.stdout)
    assert len(pins) == 2 and used == pins and parent[1] not in pins and pins[0] != pins[1]
    # The model saw the parent's history on the fork, and the parent goes on without the fork's.
    _, fork_turn, parent_turn = [" ".join(r.user_texts()) for r in model_server.requests]
    assert "first question" in fork_turn and "the fork goes on" in fork_turn
    assert "first question" in parent_turn and "the parent goes on" in parent_turn
    assert "the fork goes on" not in parent_turn
    assert answer.stderr.startswith("✗ 404 Not Found: " if protocol == "rest" else "✗ NOT_FOUND: ")
    async with running_gateway(config) as gw:
        shown = await piped(
            ["--grpc", gw.target, "--mode", "compact"], f"show {pins[0]}\n", repl_env(tmp_path)
        )
    assert re.search(rf"forked from +{parent[1]}", shown.stdout)
    assert re.search(r"completed +fork ", shown.stdout)


async def test_at_a_terminal_the_diff_is_coloured_and_ctrl_c_stops_waiting_for_a_fork(
    config_for: Callable[..., Config], spawn: Callable[..., Terminal]
) -> None:
    config = config_for()
    _git(config.default_workspace, "init", "-q")
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        term = spawn(url, "--mode", "compact")
        await term.line("run [[scenario:patch]] add it")
        await term.expect("→ changes: 1 file(s), +1 -0")
        session_id = (await term.match(rf"→ pinned session ({UUID})"))[1]
        await term.send("chan\t")
        await term.expect("changes")
        await term.send(f" {session_id[:6]}\t")
        await term.expect(session_id)
        await term.send(" di\t")
        await term.expect("diff")
        await term.send("\r")
        await term.expect("+hello")
        assert re.search(r"\x1b\[[0-9;]*32m\+hello", term.raw)  # green, as git colours it
        await term.line(f"fork {session_id} [[scenario:tool]] [[cmd:sleep 30]]")
        await term.expect("forking and running")
        await term.interrupt()
        await term.match(r"Stopped waiting after \d+\.\ds: the gateway finishes the fork")
        await term.expect(f"codex ({session_id[:8]})>")  # still the parent pinned
        await term.line("exit")
        assert await term.exit_status() == 0
        assert "Traceback" not in term.screen
