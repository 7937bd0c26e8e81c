"""GET /sessions/:id costs the answer's size, not the session's history (issue 12 review).

runs.jsonl grows with every run (5,000 runs with 20 KB of metadata: 100 MB) and was read whole,
on the event loop, for every GET /sessions/:id. Now it is read backwards until the answer's share
is filled, in a worker thread: a real gateway process answers a session of 2,000 archived 20 KB
records with its newest runs and their full count, and its peak RSS (VmHWM) grows by a small
part of the file, over both protocols.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from codex_gateway.v1 import gateway_pb2_grpc, sessions_pb2
from gateway.config import DEFAULT_MAX_ANSWER_BYTES
from gateway.sessions.files import META, RUNS, RUNS_IN_META
from gateway.sessions.logs import lines_backwards
from tests.faults.spawned import Spawned, gateway_env, running

ARCHIVED = 2000
METADATA_BYTES = 20_000
SESSION = "b16b0000-0000-4000-8000-000000000001"
SHARE = DEFAULT_MAX_ANSWER_BYTES // 4  # the run history's share of an answer
RSS_GROWTH_LIMIT = 16 * 1024 * 1024  # the file is 40 MB; reading it whole took twice that


def record(n: int, metadata_bytes: int) -> dict[str, Any]:
    return {
        "run_id": f"run-{n:05d}",
        "status": "completed",
        "started_at": "2025-01-01T00:00:00.000Z",
        "completed_at": "2025-01-01T00:00:01.000Z",
        "prompt_preview": f"prompt {n}",
        "timeout_ms": 120000,
        "metadata": {"blob": "m" * metadata_bytes},
    }


def big_session(root: Path) -> list[str]:
    """A session of ARCHIVED big records in runs.jsonl and RUNS_IN_META small ones in meta.json;
    its run ids, oldest first."""
    directory = root / f"session-{SESSION}"
    directory.mkdir(parents=True)
    total = ARCHIVED + RUNS_IN_META
    with (directory / RUNS).open("w") as runs:
        for n in range(ARCHIVED):
            runs.write(json.dumps(record(n, METADATA_BYTES), separators=(",", ":")) + "\n")
    meta = {
        "session_id": SESSION,
        "codex_session_id": None,
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-01-01T00:00:00.000Z",
        "status": "completed",
        "runs": [record(n, 10) for n in range(ARCHIVED, total)],
        "runs_archived": ARCHIVED,
    }
    (directory / META).write_text(json.dumps(meta))
    for name in ("stdout.log", "stderr.log", "events.jsonl"):
        (directory / name).write_text("")
    return [f"run-{n:05d}" for n in range(total)]


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def get_both(gateway: Spawned, session_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, trust_env=False) as rest:
        answer = await rest.get(f"/sessions/{session_id}")
        assert answer.status_code == 200, answer.text[:300]
        by_rest: dict[str, Any] = answer.json()
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        response = await stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session_id), timeout=60
        )
    by_grpc = {
        "runs": response.session.runs,
        "run_history": [{"run_id": r.run_id} for r in response.session.run_history],
        "size": sum(r.ByteSize() for r in response.session.run_history),
    }
    return by_rest, by_grpc


async def test_a_long_history_answers_its_newest_runs_at_bounded_cost(tmp_path: Path) -> None:
    expected = big_session(tmp_path / "sessions")
    small = tmp_path / "sessions" / "session-small"
    small.mkdir()
    (small / META).write_text(json.dumps({"session_id": "small", "runs": [record(0, 10)]}))
    env = gateway_env(tmp_path)
    async with running(env, tmp_path) as gateway:
        await get_both(gateway, "small")  # both paths warm before the baseline
        before = peak_rss(gateway.pid)
        for _ in range(3):
            by_rest, by_grpc = await get_both(gateway, SESSION)
            for answer in (by_rest, by_grpc):
                assert answer["runs"] == len(expected)  # every run counted...
                kept = [r["run_id"] for r in answer["run_history"]]
                # ...the newest that fit listed: all of meta.json's, then runs.jsonl's newest.
                assert RUNS_IN_META + 10 < len(kept) < RUNS_IN_META + 100, len(kept)
                assert kept == expected[-len(kept) :]
            assert by_grpc["size"] <= SHARE
        growth = peak_rss(gateway.pid) - before
        assert growth < RSS_GROWTH_LIMIT, f"peak RSS grew by {growth >> 20} MiB"


async def test_a_history_that_fits_is_answered_whole(tmp_path: Path) -> None:
    """A few archived records: all of them, in order, a record in both files once."""
    from gateway.sessions.files import FileSessionStore

    root = tmp_path / "sessions"
    directory = root / "session-few"
    directory.mkdir(parents=True)
    # A crash after 1 and 2 were appended, before meta.json was written: moved again, right
    # after; and one after 3 was appended: in both files.
    lines = [json.dumps(record(n, 100)) for n in (0, 1, 2, 1, 2, 3)]
    (directory / RUNS).write_text("\n".join(lines) + '\n{"run_id": "torn')
    meta = {"session_id": "few", "runs": [record(3, 10), record(4, 10)], "runs_archived": 4}
    (directory / META).write_text(json.dumps(meta))
    store = FileSessionStore([root], tmp_path / "secure")
    store.load()
    try:
        session = store.resolve("few")
        read = await store.run_history(session, max_bytes=SHARE)
        assert [r.run_id for r in read] == [f"run-{n:05d}" for n in range(5)]
        assert read[-2].metadata["blob"] == "m" * 10  # meta.json's copy of run 3
        assert session.run_count == 6  # what meta.json says; the answer's `runs`
    finally:
        store.close()


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 65_536])
def test_lines_backwards_are_the_files_lines_last_first(tmp_path: Path, block: int) -> None:
    chooser = random.Random(block)
    path = tmp_path / "lines"
    for _ in range(20):
        parts = ["x" * chooser.choice([0, 1, 2, 5, 9, 30]) for _ in range(chooser.randint(0, 12))]
        data = "\n".join(parts) + chooser.choice(["", "\n", "\n\n"])
        path.write_text(data)
        wanted = [line.encode() for line in data.split("\n") if 0 < len(line) <= 9][::-1]
        got = list(lines_backwards(path, max_line_bytes=9, block_bytes=block))
        assert got == wanted, (data, block)


def test_lines_backwards_never_holds_a_long_line(tmp_path: Path) -> None:
    path = tmp_path / "lines"
    path.write_bytes(b"first\n" + b"y" * 5_000_000 + b"\nlast\n")
    assert list(lines_backwards(path, max_line_bytes=100, block_bytes=4096)) == [
        b"last",
        b"first",
    ]
    assert list(lines_backwards(tmp_path / "missing", max_line_bytes=100)) == []
