"""A session's run history costs every run the same: meta.json keeps the newest RUNS_IN_META
run records and the older ones are appended to runs.jsonl, so meta.json neither grows nor is
rewritten whole with the session's history (1,500 runs made it 1.2 MB, written 2-3 times a
run). GET /sessions/:id answers as before, over both protocols, from both files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.config import Config
from gateway.sessions.files import META, RUNS, RUNS_IN_META, FileSessionStore
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_bridge, running_gateway


@pytest.fixture
def echo_config(config_for: Callable[..., Config]) -> Config:
    return config_for(codex_bin=AGENTS_DIR / "echo_agent.py")


def prompt(session_id: str, text: str) -> runs_pb2.PromptSessionRequest:
    return runs_pb2.PromptSessionRequest(session_id=session_id, run=runs_pb2.RunInput(prompt=text))


async def detail(gw: RunningGateway, session_id: str) -> sessions_pb2.SessionDetail:
    request = sessions_pb2.GetSessionRequest(session_id=session_id)
    return (await gw.stub.GetSession(request)).session


def record(n: int, status: str = "completed") -> dict[str, Any]:
    """A run record as the reference (and this gateway) writes it."""
    return {
        "run_id": f"old-{n}",
        "status": status,
        "started_at": "2025-01-01T00:00:00.000Z",
        "prompt_preview": f"old prompt {n} " + "x" * 300,
        "timeout_ms": 120000,
        "resume_session_id": None,
        "completed_at": "2025-01-01T00:00:01.000Z",
        "duration_ms": 1000,
        "content_preview": "y" * 300,
    }


def legacy_session(root: Path, session_id: str, runs: list[dict[str, Any]], **extra: Any) -> Path:
    """A session directory with every run record in meta.json, as the reference keeps it."""
    directory = root / f"session-{session_id}"
    directory.mkdir(parents=True)
    meta = {
        "session_id": session_id,
        "codex_session_id": None,
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-01-01T00:00:00.000Z",
        "last_activity_at": "2025-01-01T00:00:00.000Z",
        "status": "idle",
        "model": None,
        "runs": runs,
        "secure": False,
        **extra,
    }
    (directory / META).write_text(json.dumps(meta, indent=2) + "\n")
    for name in ("stdout.log", "stderr.log", "events.jsonl"):
        (directory / name).write_text("")
    return directory


async def test_meta_json_stays_small_and_is_written_twice_per_run(echo_config: Config) -> None:
    total = RUNS_IN_META + 15
    async with (
        running_gateway(echo_config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as rest,
    ):
        store = gw.gateway.store
        first = (
            await gw.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="p0")))
        ).result
        directory = store.resolve(first.session_id).dir
        expected = [first.run_id]
        writes: list[int] = []
        sizes: list[int] = []
        for n in range(1, total):
            before = store.meta_writes
            response = await gw.stub.PromptSession(prompt(first.session_id, f"p{n}"))
            writes.append(store.meta_writes - before)
            expected.append(response.result.run_id)
            sizes.append((directory / META).stat().st_size)
        # Once when the agent has started (with its pid), once when the run has ended.
        assert writes == [2] * (total - 1)
        meta = json.loads((directory / META).read_bytes())
        assert len(meta["runs"]) == RUNS_IN_META
        assert meta["runs_archived"] == total - RUNS_IN_META
        assert len((directory / RUNS).read_bytes().splitlines()) == total - RUNS_IN_META
        # Past RUNS_IN_META runs meta.json no longer grows (a timestamp's digits aside).
        steady = sizes[RUNS_IN_META:]
        assert max(steady) - min(steady) < 64

        grpc_detail = await detail(gw, first.session_id)
        assert grpc_detail.runs == total
        assert [r.run_id for r in grpc_detail.run_history] == expected
        listed = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())
        assert listed.sessions[0].runs == total
        rest_detail = (await rest.get(f"/sessions/{first.session_id}")).json()
        assert rest_detail["runs"] == total
        assert [r["run_id"] for r in rest_detail["run_history"]] == expected
        assert (await rest.get("/sessions")).json()[0]["runs"] == total


async def test_a_session_with_every_record_in_meta_json_moves_them_on_its_next_run(
    echo_config: Config,
) -> None:
    old = [record(n) for n in range(1500)]
    directory = legacy_session(echo_config.session_dirs[0], "legacy", old)
    async with (
        running_gateway(echo_config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as rest,
    ):
        untouched = await detail(gw, "legacy")  # read as it is, before any run
        # 1,500 records are more than an answer's share: the newest that fit, all counted.
        kept = [r.run_id for r in untouched.run_history]
        assert untouched.runs == 1500 and 100 < len(kept) < 1500
        assert kept == [f"old-{n}" for n in range(1500)][-len(kept) :]
        assert not (directory / RUNS).exists()

        result = (await gw.stub.PromptSession(prompt("legacy", "new"))).result
        assert result.status == "completed"
        meta = json.loads((directory / META).read_bytes())
        assert len(meta["runs"]) == RUNS_IN_META
        assert meta["runs_archived"] == 1501 - RUNS_IN_META
        assert (directory / META).stat().st_size < 30_000

        expected = [f"old-{n}" for n in range(1500)] + [result.run_id]
        moved = await detail(gw, "legacy")  # now mostly from runs.jsonl, read backwards
        assert moved.runs == 1501
        kept = [r.run_id for r in moved.run_history]
        assert len(kept) > 100 and kept == expected[-len(kept) :]
        body = (await rest.get("/sessions/legacy")).json()
        assert body["runs"] == 1501
        assert [r["run_id"] for r in body["run_history"]] == kept


async def test_a_record_in_both_files_is_listed_once_and_a_torn_line_costs_only_itself(
    tmp_path: Path,
) -> None:
    # A crash after runs.jsonl was appended and before meta.json was written leaves the moved
    # records in both; a crash in the middle of the append leaves half a line.
    root = tmp_path / "sessions"
    runs = [record(n) for n in range(RUNS_IN_META + 3)]
    directory = legacy_session(root, "crashed", runs, runs_archived=2)
    archived = [json.dumps(record(n)) for n in range(-2, 3)]  # -2, -1 and the first 3 again
    (directory / RUNS).write_text("\n".join(archived) + '\n{"run_id": "torn', encoding="utf-8")
    store = FileSessionStore([root], tmp_path / "secure")
    store.load()
    try:
        session = store.resolve("crashed")
        ids = [r.run_id for r in await store.run_history(session)]
        assert ids == [f"old-{n}" for n in range(-2, RUNS_IN_META + 3)]

        store.save(session)  # moves the three oldest again: after the torn line, not onto it
        lines = (directory / RUNS).read_bytes().splitlines()
        assert lines[5] == b'{"run_id": "torn'
        assert [json.loads(line)["run_id"] for line in lines[6:]] == ["old-0", "old-1", "old-2"]
        assert session.runs_archived == 5
        ids = [r.run_id for r in await store.run_history(session)]
        assert ids == [f"old-{n}" for n in range(-2, RUNS_IN_META + 3)]
    finally:
        store.close()


def test_a_running_record_stays_in_meta_json(tmp_path: Path) -> None:
    # Reconciliation after a crash finds a lost run in meta.json; it must never be moved.
    root = tmp_path / "sessions"
    runs = [record(0, status="running"), *(record(n) for n in range(1, RUNS_IN_META + 5))]
    legacy_session(root, "odd", runs)
    store = FileSessionStore([root], tmp_path / "secure")
    store.load()
    try:
        session = store.resolve("odd")
        store.save(session)
        assert len(session.runs) == RUNS_IN_META + 5
        assert "runs_archived" not in json.loads((session.dir / META).read_bytes())
        assert not (session.dir / RUNS).exists()
    finally:
        store.close()
