"""Data the session benchmarks run on: session directories in the reference layout, and a big
realistic stdout.log, all generated deterministically (a seeded PRNG) so runs compare.

    <root>/session-<id>/meta.json     what gateway/sessions/files.py and runs/runner.py write
                        stdout.log    RUN START/END markers around codex's JSON events
                        stderr.log    empty (optional)
                        events.jsonl  the parsed events, each with its run_id (optional)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

from gateway.clock import iso

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
WORDS = [
    "build",
    "test",
    "module",
    "config",
    "request",
    "response",
    "handler",
    "session",
    "worker",
    "queue",
    "cache",
    "index",
    "parser",
    "token",
    "stream",
    "buffer",
    "socket",
    "timeout",
    "retry",
    "schema",
    "migration",
    "deploy",
    "container",
    "image",
    "commit",
    "branch",
    "merge",
    "review",
    "patch",
    "function",
    "class",
    "method",
    "import",
    "package",
    "version",
    "release",
    "error",
    "warning",
    "notice",
    "debug",
    "trace",
    "metric",
    "latency",
    "throughput",
    "memory",
    "disk",
    "network",
    "thread",
    "process",
    "signal",
    "channel",
    "future",
    "promise",
    "callback",
    "event",
    "listener",
    "router",
    "endpoint",
    "service",
    "client",
    "server",
    "proxy",
    "gateway",
    "record",
    "field",
    "value",
    "key",
    "table",
    "column",
    "row",
    "query",
    "transaction",
]
FILES = [
    "src/app.py",
    "src/server/routes.py",
    "src/models/user.py",
    "tests/test_api.py",
    "README.md",
    "package.json",
    "Makefile",
    "docs/index.md",
    "lib/util.ts",
    "cmd/main.go",
    "internal/store/db.go",
]
COMMANDS = (
    "ls -la",
    "git status --short",
    "pytest -q tests",
    "rg -n TODO src",
    "cat README.md",
    "npm test",
    "go build ./...",
    "python -m mypy src",
)


def _sentence(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def _turn_events(rng: random.Random, thread_id: str, items: int) -> list[dict[str, Any]]:
    """One codex turn as `codex exec --json` prints it: commands, reasoning, a last message."""
    events: list[dict[str, Any]] = [{"type": "thread.started", "thread_id": thread_id}]
    events.append({"type": "turn.started"})
    for number in range(items):
        kind = rng.random()
        item_id = f"item_{number}"
        if kind < 0.45:
            command = rng.choice(COMMANDS)
            output_lines = [
                f"{rng.choice(FILES)}:{rng.randint(1, 400)}: {_sentence(rng, 3, 9)}"
                for _ in range(rng.randint(1, 6))
            ]
            started = {
                "id": item_id,
                "type": "command_execution",
                "command": f"/bin/bash -lc '{command}'",
                "aggregated_output": "",
                "exit_code": None,
                "status": "in_progress",
            }
            events.append({"type": "item.started", "item": started})
            done = {
                **started,
                "aggregated_output": "\n".join(output_lines) + "\n",
                "exit_code": 0 if rng.random() < 0.9 else 1,
                "status": "completed",
            }
            events.append({"type": "item.completed", "item": done})
        elif kind < 0.8:
            text = f"**{_sentence(rng, 2, 5)}** {_sentence(rng, 8, 24)}"
            events.append(
                {
                    "type": "item.completed",
                    "item": {"id": item_id, "type": "reasoning", "text": text},
                }
            )
        else:
            changes = [{"path": rng.choice(FILES), "kind": "update"}]
            item = {"id": item_id, "type": "file_change", "changes": changes, "status": "completed"}
            events.append({"type": "item.completed", "item": item})
    message = " ".join(_sentence(rng, 6, 18) for _ in range(rng.randint(1, 4)))
    events.append(
        {
            "type": "item.completed",
            "item": {"id": f"item_{items}", "type": "agent_message", "text": message},
        }
    )
    usage = {
        "input_tokens": rng.randint(2000, 40000),
        "cached_input_tokens": rng.randint(0, 20000),
        "output_tokens": rng.randint(50, 3000),
    }
    events.append({"type": "turn.completed", "usage": usage})
    return events


def run_text(run_id: str, events: list[dict[str, Any]], start: str, end: str, status: str) -> str:
    """One run's block of stdout.log, as gateway/sessions/logs.py `RunLog` writes it."""
    lines = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events)
    return (
        f"\n\n===== RUN {run_id} START {start} =====\n{lines}"
        f"\n===== RUN {run_id} END {end} [{status}] =====\n"
    )


def write_sessions(
    root: Path, count: int, *, seed: int = 7, full_layout: bool = False
) -> list[str]:
    """`count` sessions of 1-3 finished runs each, their `updated_at` spread over the month
    before EPOCH: meta.json and stdout.log (1-4 KiB), and with `full_layout` also stderr.log
    and events.jsonl (which neither startup, listing nor the default detail read: left out by
    default, it halves the files to write). Returns their ids."""
    rng = random.Random(seed)  # noqa: S311  # test data, not secrets
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for _ in range(count):
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        thread_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        created = EPOCH - dt.timedelta(seconds=rng.randint(3600, 30 * 86400))
        moment = created
        runs, stdout, events_lines = [], [], []
        for index in range(rng.randint(1, 3)):
            run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            started = moment + dt.timedelta(seconds=rng.randint(5, 600))
            ended = started + dt.timedelta(milliseconds=rng.randint(800, 120_000))
            moment = ended
            events = _turn_events(rng, thread_id, rng.randint(0, 3))
            prompt = _sentence(rng, 4, 20)
            status = "completed" if rng.random() < 0.9 else "error"
            usage = events[-1]["usage"]
            runs.append(
                {
                    "run_id": run_id,
                    "status": status,
                    "started_at": iso(started),
                    "prompt_preview": prompt,
                    "timeout_ms": 120000,
                    "resume_session_id": thread_id if index else None,
                    "model": "gpt-5.5",
                    "source": "completion" if index == 0 else "prompt",
                    "metadata": {},
                    "attempts": 1,
                    "completed_at": iso(ended),
                    "duration_ms": int((ended - started).total_seconds() * 1000),
                    "content_preview": events[-2]["item"]["text"][:400],
                    "usage": {
                        **usage,
                        "total_tokens": usage["input_tokens"] + usage["output_tokens"],
                    },
                    **({"error": "codex exited with code 1"} if status == "error" else {}),
                }
            )
            stdout.append(run_text(run_id, events, iso(started), iso(ended), status))
            events_lines += [
                json.dumps({**event, "run_id": run_id}, separators=(",", ":")) + "\n"
                for event in events
            ]
        meta = {
            "session_id": session_id,
            "codex_session_id": thread_id,
            "created_at": iso(created),
            "updated_at": iso(moment),
            "last_activity_at": iso(moment),
            "status": runs[-1]["status"],
            "model": "gpt-5.5",
            "objective": "",
            "nudge_prompt": "",
            "nudge_interval_ms": None,
            "worker_state": "stopped",
            "worker_pid": None,
            "execution_timeout_ms": 120000,
            "idle_timeout_ms": None,
            "runs": runs,
            "secure": False,
            "metadata": {"project": rng.choice(WORDS), "ticket": rng.randint(1, 9999)},
            "last_input": {
                "messages": [{"role": "user", "content": runs[-1]["prompt_preview"]}],
                "system_prompt": "",
            },
            "workspace": "/workspace",
        }
        directory = root / f"session-{session_id}"
        directory.mkdir()
        (directory / "meta.json").write_text(json.dumps(meta, separators=(",", ":")) + "\n")
        (directory / "stdout.log").write_text("".join(stdout))
        if full_layout:
            (directory / "stderr.log").write_text("")
            (directory / "events.jsonl").write_text("".join(events_lines))
        ids.append(session_id)
    return ids


NEEDLE = "checksum mismatch in shard 7f3a-quarantine"
"""The exact query: appears once, near the end of the search corpus (a case differing)."""
FUZZY_QUERY = "checksum mismach in shard 7f3a quarantine"
"""The fuzzy query: the needle with a typo and a separator changed; its best hit is that line."""
NEEDLE_LINE_TEXT = "Checksum MISMATCH in shard 7f3a-quarantine: refusing to restore the snapshot."
CORPUS_VERSION = 1


def corpus_path(directory: Path, size_mib: int) -> Path:
    return directory / f"search-corpus-v{CORPUS_VERSION}-{size_mib}mib.log"


def ensure_session_store(directory: Path, count: int) -> tuple[Path, list[str], bool]:
    """A session root of `count` sessions (`write_sessions`), written once and reused: the
    gateways read it and never change a finished session. Writing and deleting 20,000 files
    every run would leave the disk busy (ext4 without a journal scans recently deleted inodes
    on every create for minutes) under the next benchmarks. Returns the root, the session ids
    and whether it was written now."""
    store = directory / f"sessions-store-v1-{count}"
    ids_file = store / "ids.json"
    if ids_file.exists():
        return store / "sessions", json.loads(ids_file.read_text()), False
    shutil.rmtree(store, ignore_errors=True)
    ids = write_sessions(store / "sessions", count)
    ids_file.write_text(json.dumps(ids))  # last: a store without it is incomplete
    return store / "sessions", ids, True


def ensure_corpus(directory: Path, size_mib: int, *, seed: int = 11) -> tuple[Path, bool]:
    """A stdout.log of `size_mib` MiB (runs of codex events with their markers, as a long-lived
    session accumulates them), written once and reused; the needle is in the last 1 %.
    Returns the path and whether it was generated now."""
    path = corpus_path(directory, size_mib)
    size = size_mib << 20
    if path.exists() and path.stat().st_size >= size:
        return path, False
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)  # noqa: S311  # test data
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    moment = EPOCH
    written = 0
    needle_at = int(size * 0.995)
    needle_done = False
    thread_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    with tmp.open("w", encoding="utf-8") as out:
        while written < size:
            run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            events = _turn_events(rng, thread_id, rng.randint(20, 80))
            if not needle_done and written >= needle_at:
                events.insert(
                    -1,
                    {
                        "type": "item.completed",
                        "item": {"id": "item_x", "type": "agent_message", "text": NEEDLE_LINE_TEXT},
                    },
                )
                needle_done = True
            end = moment + dt.timedelta(seconds=rng.randint(5, 300))
            text = run_text(run_id, events, iso(moment), iso(end), "completed")
            moment = end
            out.write(text)
            written += len(text.encode())
        if not needle_done:
            item = {"id": "item_x", "type": "agent_message", "text": NEEDLE_LINE_TEXT}
            out.write(json.dumps({"type": "item.completed", "item": item}) + "\n")
    tmp.replace(path)
    return path, True
