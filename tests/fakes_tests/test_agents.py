"""The fault agents do what their docstrings promise, with the argv and stdin codex gets."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.fakes import AGENTS_DIR
from tests.fakes.agents.build import TINY_AGENT_SOURCE, build_tiny_agent
from tests.fakes_tests.conftest import Spawn, is_alive, parse_events, wait_until

CODEX_ARGS = ["exec", "--json", "--skip-git-repo-check", "-s", "workspace-write", "-"]
USAGE_100_10 = {
    "input_tokens": 100,
    "cached_input_tokens": 0,
    "cache_write_input_tokens": 0,
    "output_tokens": 10,
    "reasoning_output_tokens": 0,
}
ALL_AGENTS = sorted(path.name for path in AGENTS_DIR.glob("*_agent.py"))


def agent(name: str) -> str:
    return str(AGENTS_DIR / f"{name}_agent.py")


def run_agent(
    spawn: Spawn, name: str, *args: str, stdin_data: bytes = b"", timeout: float = 20, **kw: object
) -> tuple[int, bytes, bytes]:
    proc = spawn(
        [agent(name), *(args or CODEX_ARGS)],
        stdin_data=stdin_data,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


def read_event(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    assert proc.stdout is not None
    event: dict[str, object] = json.loads(proc.stdout.readline())
    return event


@pytest.mark.parametrize("name", ALL_AGENTS)
def test_agent_prints_nothing_until_stdin_is_closed(spawn: Spawn, name: str) -> None:
    proc = spawn(
        [str(AGENTS_DIR / name), *CODEX_ARGS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None

    readable, _, _ = select.select([proc.stdout], [], [], 0.3)
    assert readable == []
    assert proc.poll() is None

    proc.stdin.write(b"the prompt")
    proc.stdin.close()
    readable, _, _ = select.select([proc.stdout], [], [], 10)
    assert readable == [proc.stdout]  # output, or EOF for empty_agent


def test_echo_agent_reports_prompt_argv_and_cwd(spawn: Spawn, tmp_path: Path) -> None:
    code, stdout, _ = run_agent(spawn, "echo", stdin_data="héllo\nworld".encode(), cwd=tmp_path)

    assert code == 0
    events = parse_events(stdout)
    assert [e["type"] for e in events] == [
        "thread.started",
        "turn.started",
        "item.completed",
        "turn.completed",
    ]
    uuid.UUID(events[0]["thread_id"])
    assert events[2]["item"]["type"] == "agent_message"
    assert json.loads(events[2]["item"]["text"]) == {
        "prompt": "héllo\nworld",
        "argv": CODEX_ARGS,
        "cwd": str(tmp_path),
    }
    assert events[3]["usage"] == USAGE_100_10


@pytest.mark.parametrize("name", ["echo", "env", "counter"])
def test_agent_keeps_the_thread_id_it_resumes(spawn: Spawn, name: str) -> None:
    args = ["exec", "--json", "--skip-git-repo-check", "resume", "the-thread-id", "-"]

    code, stdout, _ = run_agent(spawn, name, *args)

    assert code == 0
    assert parse_events(stdout)[0] == {"type": "thread.started", "thread_id": "the-thread-id"}


def test_env_agent_reports_its_environment(spawn: Spawn) -> None:
    env = {"GATEWAY_MARK": "mark value"}

    code, stdout, _ = run_agent(spawn, "env", env=env)

    assert code == 0
    [message] = [e for e in parse_events(stdout) if e["type"] == "item.completed"]
    reported = json.loads(message["item"]["text"])
    assert reported["GATEWAY_MARK"] == "mark value"
    assert "FAKE_API_KEY" not in reported


def test_counter_agent_prints_numbered_lines_in_order(spawn: Spawn) -> None:
    env = {"FAKE_AGENT_LINES": "25"}

    code, stdout, _ = run_agent(spawn, "counter", env=env)

    assert code == 0
    events = parse_events(stdout)
    texts = [e["item"]["text"] for e in events if e["type"] == "item.completed"]
    assert texts == [f"line {n}" for n in range(25)]
    assert events[-1]["type"] == "turn.completed"


def test_crash_agent_exits_3_with_a_fatal_line(spawn: Spawn) -> None:
    code, stdout, stderr = run_agent(spawn, "crash")

    assert code == 3
    assert [e["type"] for e in parse_events(stdout)] == ["thread.started"]
    assert stderr == b"fatal: simulated crash\n"


def test_turnfailed_agent_fails_the_turn(spawn: Spawn) -> None:
    code, stdout, _ = run_agent(spawn, "turnfailed")

    assert code == 1
    assert parse_events(stdout)[2:] == [
        {"type": "error", "message": "boom from model"},
        {"type": "turn.failed", "error": {"message": "boom from model"}},
    ]


def test_empty_agent_prints_nothing(spawn: Spawn) -> None:
    assert run_agent(spawn, "empty") == (0, b"", b"")


def test_garbage_agent_hides_one_valid_turn_in_junk(spawn: Spawn) -> None:
    code, stdout, _ = run_agent(spawn, "garbage")

    assert code == 0
    lines = stdout.split(b"\n")
    assert b"" in lines
    valid, junk = [], []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:  # also UnicodeDecodeError
            junk.append(line)
            continue
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            valid.append(value)
        else:
            junk.append(line)
    assert [e["type"] for e in valid] == [
        "thread.started",
        "turn.started",
        "item.completed",
        "turn.completed",
    ]
    assert valid[2]["item"]["text"] == "survived garbage"
    assert {b"[1,2]", b'"str"', b"42", b'{"no_type": true}'} <= set(junk)
    with pytest.raises(UnicodeDecodeError):
        stdout.decode()


def test_hugeline_agent_prints_a_10_mb_line(spawn: Spawn) -> None:
    code, stdout, _ = run_agent(spawn, "hugeline")

    assert code == 0
    lines = stdout.splitlines()
    assert [len(line) >= 10 * 1024 * 1024 for line in lines] == [False, False, True, False, False]
    huge = json.loads(lines[2])
    assert huge["item"]["text"] == "x" * (10 * 1024 * 1024)
    assert json.loads(lines[3])["item"]["text"] == "after huge line"
    assert json.loads(lines[4])["type"] == "turn.completed"


def test_endless_agent_floods_stdout_and_stderr_until_killed(spawn: Spawn, tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("wb") as stderr:
        proc = spawn([agent("endless"), *CODEX_ARGS], stdout=subprocess.PIPE, stderr=stderr)
    assert proc.stdout is not None

    lines = [proc.stdout.readline() for _ in range(2000)]

    assert proc.poll() is None
    assert json.loads(lines[0])["type"] == "thread.started"
    messages = [json.loads(line) for line in lines if line.startswith(b"{")]
    assert len(messages) >= 900
    assert all(len(m["item"]["text"]) >= 190 for m in messages[1:])
    assert any(line.startswith(b"plain text") for line in lines)
    assert wait_until(lambda: (tmp_path / "stderr").stat().st_size > 0)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=5) == -signal.SIGKILL


def test_slow_agent_ticks_once_a_second_then_completes(spawn: Spawn) -> None:
    env = {"FAKE_AGENT_SECONDS": "2"}
    started = time.monotonic()

    code, stdout, _ = run_agent(spawn, "slow", env=env)

    assert code == 0
    assert time.monotonic() - started >= 2
    events = parse_events(stdout)
    assert [e["item"]["text"] for e in events if e["type"] == "item.completed"] == [
        "tick 1",
        "tick 2",
    ]
    assert events[-1]["type"] == "turn.completed"


def test_slow_agent_exits_1_at_once_on_sigint(spawn: Spawn) -> None:
    proc = spawn([agent("slow"), *CODEX_ARGS], stdout=subprocess.PIPE)
    assert [read_event(proc)["type"] for _ in range(2)] == ["thread.started", "turn.started"]

    os.kill(proc.pid, signal.SIGINT)

    assert proc.wait(timeout=2) == 1
    assert proc.stdout is not None
    assert b"turn.completed" not in proc.stdout.read()


def hang_agent(spawn: Spawn, tmp_path: Path, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start hang_agent with a child; return it, once its turn started, and the child's pid."""
    pidfile = tmp_path / "child.pid"
    env = {
        "FAKE_AGENT_SPAWN_CHILD": "1",
        "FAKE_AGENT_CHILD_PIDFILE": str(pidfile),
        **env,
    }
    proc = spawn([agent("hang"), *CODEX_ARGS], stdout=subprocess.PIPE, env=env)
    assert [read_event(proc)["type"] for _ in range(2)] == ["thread.started", "turn.started"]
    child = int(pidfile.read_text())
    assert is_alive(child)
    assert os.getpgid(child) == proc.pid  # the child shares the agent's process group
    return proc, child


def test_hang_agent_hangs_until_sigint_which_it_obeys_like_codex(
    spawn: Spawn, tmp_path: Path
) -> None:
    proc, child = hang_agent(spawn, tmp_path)
    time.sleep(0.3)
    assert proc.poll() is None

    os.kill(proc.pid, signal.SIGINT)  # the agent only, not its group

    assert proc.wait(timeout=2) == 1
    assert wait_until(lambda: not is_alive(child))  # it killed its child, as codex does


def test_hang_agent_ignoring_sigint_needs_sigkill_to_its_group(
    spawn: Spawn, tmp_path: Path
) -> None:
    proc, child = hang_agent(spawn, tmp_path, FAKE_AGENT_IGNORE_SIGINT="1")

    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None
    assert is_alive(child)  # the child inherited the ignored SIGINT

    os.killpg(proc.pid, signal.SIGKILL)

    assert proc.wait(timeout=2) == -signal.SIGKILL
    assert wait_until(lambda: not is_alive(child))


def test_hang_agent_killed_alone_orphans_its_child(spawn: Spawn, tmp_path: Path) -> None:
    """What the gateway must avoid: SIGKILL to the agent's pid, not its group."""
    proc, child = hang_agent(spawn, tmp_path, FAKE_AGENT_IGNORE_SIGINT="1")

    proc.kill()

    assert proc.wait(timeout=2) == -signal.SIGKILL
    time.sleep(0.2)
    assert is_alive(child)
    os.kill(child, signal.SIGKILL)  # the spawn fixture would also get it, through the group


def test_tiny_agent_compiles_and_prints_one_turn(spawn: Spawn, tmp_path: Path) -> None:
    binary = build_tiny_agent(tmp_path / "bin")
    proc = spawn([str(binary), *CODEX_ARGS], stdin_data=b"prompt", stdout=subprocess.PIPE)
    stdout, _ = proc.communicate(timeout=5)

    assert proc.returncode == 0
    lines = stdout.decode().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events] == [
        "thread.started",
        "turn.started",
        "item.completed",
        "turn.completed",
    ]
    assert str(uuid.UUID(events[0]["thread_id"])) == events[0]["thread_id"]
    assert events[2]["item"] == {"id": "item_0", "type": "agent_message", "text": "ok"}
    assert events[3]["usage"] == USAGE_100_10


def test_tiny_agent_ids_differ_and_resume_keeps_the_id(spawn: Spawn, tmp_path: Path) -> None:
    binary = build_tiny_agent(tmp_path / "bin")

    def first_event(*args: str) -> dict[str, object]:
        proc = spawn([str(binary), *args], stdout=subprocess.PIPE)
        stdout, _ = proc.communicate(timeout=5)
        return dict(json.loads(stdout.splitlines()[0]))

    assert first_event(*CODEX_ARGS) != first_event(*CODEX_ARGS)
    assert first_event("exec", "--json", "resume", "abc", "-")["thread_id"] == "abc"


def test_build_tiny_agent_is_cached_until_the_source_changes(tmp_path: Path) -> None:
    binary = build_tiny_agent(tmp_path)
    built = binary.stat().st_mtime_ns

    assert build_tiny_agent(tmp_path) == binary
    assert binary.stat().st_mtime_ns == built

    old = TINY_AGENT_SOURCE.stat().st_mtime - 10
    os.utime(binary, (old, old))
    build_tiny_agent(tmp_path)
    assert binary.stat().st_mtime > old
    assert [p.name for p in tmp_path.iterdir()] == ["tiny_agent"]
