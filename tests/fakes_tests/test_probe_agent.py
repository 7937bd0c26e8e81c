"""probe_agent.py reports what it could read, writes what it is asked to, and who it ran as."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.fakes import AGENTS_DIR
from tests.fakes_tests.conftest import Spawn, parse_events

CODEX_ARGS = ["exec", "--json", "--skip-git-repo-check", "-s", "workspace-write", "-"]


def test_probe_agent_reports_reads_writes_and_identity(spawn: Spawn, tmp_path: Path) -> None:
    readable = tmp_path / "readable.txt"
    readable.write_text("the content")
    prompt = f"probe:{readable}\nprobe:{tmp_path / 'missing'}\nwrite:made.txt\nsleep:0.1\n"
    proc = spawn(
        [str(AGENTS_DIR / "probe_agent.py"), *CODEX_ARGS],
        stdin_data=prompt.encode(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    stdout, _ = proc.communicate(timeout=20)

    assert proc.returncode == 0
    events = parse_events(stdout)
    assert [e["type"] for e in events] == [
        "thread.started",
        "turn.started",
        "item.completed",
        "turn.completed",
    ]
    report = json.loads(events[2]["item"]["text"])
    assert (report["uid"], report["gid"], report["cwd"]) == (
        os.getuid(),
        os.getgid(),
        str(tmp_path),
    )
    assert report["probes"] == [
        {"path": str(readable), "readable": True, "content": "the content"},
        {"path": str(tmp_path / "missing"), "readable": False, "error": "FileNotFoundError"},
    ]
    assert report["written"] == ["made.txt"]
    assert (tmp_path / "made.txt").read_text() == "written by the agent\n"
