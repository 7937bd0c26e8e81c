"""meta.json through the codec: the reference's format on disk, every key it does not type kept.

A meta.json that the reference (or a newer gateway) wrote must come back from a save as it was,
but for what the gateway changed: a key this gateway does not know survives, and so does a known
key whose value it cannot read (a mistyped value is read as absent, and written back untouched).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.agent.events import canonical_thread_id
from gateway.errors import SessionBusy, StorageFailed
from gateway.sessions.codec import decode_run, decode_session, dumps, encode_run, encode_session
from gateway.sessions.files import META, FileSessionStore
from gateway.sessions.model import RunRecord, RunStatus, SessionStatus

THREAD = "0b7c6a52-5f0e-4c7a-9c1d-2f3e4a5b6c7d"

REFERENCE_RUN = {
    "run_id": "6f1d2c3b-1111-4a2b-8c3d-4e5f6a7b8c9d",
    "status": "completed",
    "started_at": "2026-10-01T10:00:00.000Z",
    "prompt_preview": "User:\nfix the tests",
    "timeout_ms": 120000,
    "resume_session_id": None,
    "model": "gpt-5.5",
    "source": "completion",
    "metadata": {},
    "attempts": 1,
    "completed_at": "2026-10-01T10:00:04.250Z",
    "duration_ms": 4250,
    "content_preview": "Done.",
    "usage": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
}

REFERENCE_META = {
    "session_id": "3d4e5f60-2222-4b3c-9d4e-5f6a7b8c9d0e",
    "codex_session_id": THREAD,
    "created_at": "2026-10-01T09:59:59.000Z",
    "updated_at": "2026-10-01T10:00:04.251Z",
    "last_activity_at": "2026-10-01T10:00:04.250Z",
    "status": "completed",
    "model": "gpt-5.5",
    "objective": "",
    "nudge_prompt": "",
    "nudge_interval_ms": None,
    "worker_state": "stopped",
    "worker_pid": None,
    "execution_timeout_ms": 120000,
    "idle_timeout_ms": None,
    "runs": [REFERENCE_RUN],
    "secure": False,
    "metadata": {"project": "apollo", "ticket": 42},
    "last_input": {"messages": [{"role": "user", "content": "fix the tests"}], "system_prompt": ""},
    "workspace": "/workspace",
}

METAS = [
    pytest.param(REFERENCE_META, id="reference-layout"),
    pytest.param(
        {"session_id": "legacy", "nudge_prompt": "keep going", "runs": []}, id="legacy-minimal"
    ),
    pytest.param({"session_id": "bare"}, id="only-an-id"),
    pytest.param(
        {
            **REFERENCE_META,
            "runs": [
                {**REFERENCE_RUN, "status": "running", "agent_pid": 4242, "tool_calls": 3},
                "not a record",
                {**REFERENCE_RUN, "status": "paused", "first_seq": 1, "last_seq": 9},
            ],
            "runs_archived": 40,
            "thread_usage": {"input_tokens": 100, "output_tokens": 20},
            "worker_state": "running",
            "future_key": {"nested": [1, 2.5, None, "x"]},
        },
        id="newer-gateway-keys",
    ),
    pytest.param(
        {
            "session_id": "odd",
            "codex_session_id": THREAD.upper(),
            "status": "hibernating",
            "model": 42,
            "metadata": None,
            "execution_timeout_ms": 1.5,
            "runs_archived": -3,
            "runs": [{"run_id": 7, "timeout_ms": 120000.0, "usage": "lots", "attempts": True}],
            "secure": "yes",
        },
        id="mistyped-values",
    ),
    pytest.param(
        {"session_id": "not-a-thread", "codex_session_id": "--help", "runs": None},
        id="thread-that-is-not-a-uuid",
    ),
]


def _decoded(document: dict[str, Any]) -> Any:
    return decode_session(document["session_id"], Path("/nowhere"), document, secure=False)


@pytest.mark.parametrize("meta", METAS)
def test_a_meta_is_written_back_byte_for_byte_when_nothing_changed(meta: dict[str, Any]) -> None:
    original = dumps(meta)
    assert dumps(encode_session(_decoded(copy.deepcopy(meta)))) == original


@pytest.mark.parametrize("meta", METAS)
def test_a_saved_meta_changes_only_what_the_gateway_changed(
    tmp_path: Path, meta: dict[str, Any]
) -> None:
    directory = tmp_path / "sessions" / f"session-{meta['session_id']}"
    directory.mkdir(parents=True)
    (directory / META).write_text(json.dumps(meta, indent=2))
    store = FileSessionStore([tmp_path / "sessions"], tmp_path / "secure")
    store.load()
    try:
        session = next(iter(store))
        session.objective = "a new objective"
        store.save(session)
    finally:
        store.close()
    written = json.loads((directory / META).read_bytes())
    expected = {**meta, "updated_at": written["updated_at"], "objective": "a new objective"}
    assert written == expected
    assert list(written) == list(expected)  # the keys in their places, new ones at the end


def test_a_new_session_is_written_in_the_reference_layout(tmp_path: Path) -> None:
    store = FileSessionStore([tmp_path / "sessions"], tmp_path / "secure")
    store.load()
    try:
        session = store.create(secure=False, metadata={"a": 1}, workspace="/w")
    finally:
        store.close()
    written = json.loads((session.dir / META).read_bytes())
    assert list(written) == [
        "session_id",
        "codex_session_id",
        "created_at",
        "updated_at",
        "last_activity_at",
        "status",
        "model",
        "objective",
        "nudge_prompt",
        "nudge_interval_ms",
        "worker_state",
        "worker_pid",
        "execution_timeout_ms",
        "idle_timeout_ms",
        "runs",
        "secure",
        "metadata",
        "workspace",
    ]
    assert written["status"] == "idle" and written["metadata"] == {"a": 1}
    assert session.status is SessionStatus.IDLE


def test_a_new_run_record_is_written_in_the_runners_order_and_drops_cleared_keys() -> None:
    record = RunRecord(
        run_id="r",
        status=RunStatus.RUNNING,
        started_at="t0",
        prompt_preview="p",
        timeout_ms=1000,
        source="prompt",
        metadata={},
        attempts=1,
        agent_pid=99,
    )
    assert list(encode_run(record)) == [
        "run_id",
        "status",
        "started_at",
        "prompt_preview",
        "timeout_ms",
        "resume_session_id",
        "model",
        "source",
        "metadata",
        "attempts",
        "agent_pid",
    ]
    record.status, record.agent_pid, record.completed_at = RunStatus.COMPLETED, None, "t1"
    written = encode_run(record)
    assert "agent_pid" not in written
    assert written["status"] == "completed" and written["completed_at"] == "t1"
    assert json.loads(dumps(written))["status"] == "completed"


@pytest.mark.parametrize(
    ("value", "typed"),
    [
        pytest.param("completed", RunStatus.COMPLETED, id="known"),
        pytest.param("paused", "paused", id="unknown-kept-as-text"),
        pytest.param(3, "", id="not-text"),
    ],
)
def test_a_run_status_reads_as_its_enum_or_the_text_it_was(value: Any, typed: Any) -> None:
    record = decode_run({"run_id": "r", "status": value})
    assert record.status == typed
    assert encode_run(record)["status"] == value


def test_an_unreadable_meta_is_never_written(tmp_path: Path) -> None:
    directory = tmp_path / "sessions" / "session-broken"
    directory.mkdir(parents=True)
    (directory / META).write_text("{not json")
    store = FileSessionStore([tmp_path / "sessions"], tmp_path / "secure")
    store.load()
    try:
        (session,) = list(store)
        assert session.error is not None
        with pytest.raises(StorageFailed):
            store.save(session)
    finally:
        store.close()
    assert (directory / META).read_text() == "{not json"


async def test_one_run_at_a_time_is_the_stores_business(tmp_path: Path) -> None:
    store = FileSessionStore([tmp_path / "sessions"], tmp_path / "secure")
    store.load()
    try:
        session = store.create(secure=False)
        other = store.create(secure=False)
        async with store.exclusive(session, "r1"):
            assert store.busy(session) and not store.busy(other)
            with pytest.raises(SessionBusy):
                async with store.exclusive(session, "r2"):
                    pass
            async with store.exclusive(other, "r3"):
                assert store.busy(other)
        assert not store.busy(session)
        with pytest.raises(RuntimeError):
            async with store.exclusive(session, "r4"):
                raise RuntimeError("the run failed")
        assert not store.busy(session)  # released by a failing run too
    finally:
        store.close()


# Any JSON: what a reference or a newer gateway may have put under any key.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
SESSION_KEYS = [
    "codex_session_id",
    "created_at",
    "updated_at",
    "last_activity_at",
    "status",
    "model",
    "objective",
    "nudge_prompt",
    "execution_timeout_ms",
    "metadata",
    "workspace",
    "last_input",
    "thread_usage",
    "runs_archived",
    "secure",
]
RUN_KEYS = [*REFERENCE_RUN, "agent_pid", "error", "first_seq", "last_seq"]
KNOWN_VALUE = st.one_of(
    JSON,
    st.sampled_from([THREAD, THREAD.upper(), "completed", "running", "idle", "2026-10-01T10:00Z"]),
)
UNKNOWN_KEY = st.text(min_size=1, max_size=12).filter(
    lambda key: key not in {*SESSION_KEYS, *RUN_KEYS, "session_id", "runs"}
)
RUN = st.dictionaries(st.sampled_from(RUN_KEYS), KNOWN_VALUE, max_size=6).flatmap(
    lambda known: st.dictionaries(UNKNOWN_KEY, JSON, max_size=3).map(
        lambda extra: {**known, **extra}
    )
)
META_DOCUMENT = st.builds(
    lambda known, extra, runs: {"session_id": "s", **known, **extra, **runs},
    st.dictionaries(st.sampled_from(SESSION_KEYS), KNOWN_VALUE, max_size=8),
    st.dictionaries(UNKNOWN_KEY, JSON, max_size=4),
    st.one_of(
        st.just({}),
        st.builds(lambda runs: {"runs": runs}, st.lists(RUN | JSON, max_size=4)),
    ),
)


@given(META_DOCUMENT)
def test_any_meta_round_trips_unchanged(meta: dict[str, Any]) -> None:
    assert dumps(encode_session(_decoded(copy.deepcopy(meta)))) == dumps(meta)


@given(META_DOCUMENT, st.integers(min_value=0, max_value=3))
def test_unknown_keys_survive_whatever_the_gateway_changes(
    meta: dict[str, Any], archived: int
) -> None:
    session = _decoded(copy.deepcopy(meta))
    archived = min(archived, len(session.runs))
    session.status = SessionStatus.RUNNING
    session.model = "gpt-5.5"
    session.metadata = {"changed": True}
    session.codex_session_id = THREAD
    for record in session.runs:
        record.status = RunStatus.INTERRUPTED
        record.agent_pid = None
    session.runs.append(RunRecord(run_id="new", status=RunStatus.RUNNING, metadata={}))
    del session.runs[:archived]
    session.runs_archived += archived
    written = json.loads(dumps(encode_session(session)))
    unknown = [key for key in meta if key not in {*SESSION_KEYS, "session_id", "runs"}]
    assert [(key, written[key]) for key in written if key in unknown] == [
        (key, meta[key]) for key in unknown
    ]
    assert written["status"] == "running"
    # The same thread in another hex case is left as it was written.
    assert canonical_thread_id(written["codex_session_id"]) == THREAD
    stored_runs = meta.get("runs")
    runs_before = (
        [r for r in stored_runs if isinstance(r, dict)] if isinstance(stored_runs, list) else []
    )
    kept = runs_before[archived:]
    assert len(written["runs"]) == len(kept) + 1
    for before, after in zip(kept, written["runs"], strict=False):
        extra = [key for key in before if key not in RUN_KEYS]
        assert {key: after[key] for key in extra} == {key: before[key] for key in extra}
        assert after["status"] == "interrupted"
        pid = before.get("agent_pid")
        if isinstance(pid, int) and not isinstance(pid, bool):
            assert "agent_pid" not in after  # cleared
        else:
            assert after.get("agent_pid") == pid  # unreadable, so untouched
    assert written["runs"][-1]["run_id"] == "new"
