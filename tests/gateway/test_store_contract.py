"""What every SessionStore promises (gateway/sessions/store.py), run against each implementation.

Only the files store exists today; the PostgreSQL one of cluster mode joins STORES and must pass
the same tests. Each test reopens the store where the promise is about what survives a restart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.errors import SessionBusy, SessionNotFound
from gateway.sessions.files import FileSessionStore
from gateway.sessions.model import RunRecord, RunStatus, SessionStatus
from gateway.sessions.store import SessionStore

THREAD = "0b7c6a52-5f0e-4c7a-9c1d-2f3e4a5b6c7d"
OTHER_THREAD = "1c8d7b63-6a1f-4d8b-8d2e-3a4f5b6c7d8e"

Opener = Callable[[Path], SessionStore]
STAMP_S = 0.002
"""Timestamps have millisecond resolution: waiting this long makes the next one later (a wait
that a slower machine only lengthens)."""


def _files(root: Path) -> SessionStore:
    return FileSessionStore([root / "sessions"], root / "secure")


STORES = [pytest.param(_files, id="files")]


@pytest.fixture(params=STORES)
def opener(request: pytest.FixtureRequest) -> Opener:
    opener: Opener = request.param
    return opener


@pytest.fixture
def store(opener: Opener, tmp_path: Path) -> Iterator[SessionStore]:
    opened = opener(tmp_path)
    opened.load()
    yield opened
    opened.close()


def _reopened(opener: Opener, tmp_path: Path, store: SessionStore) -> SessionStore:
    store.close()
    again = opener(tmp_path)
    again.load()
    return again


def test_a_created_session_is_found_by_its_id_and_survives_a_restart(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    session = store.create(secure=False, metadata={"k": "v"}, workspace="/w")
    assert store.resolve(session.id) is session
    assert session.status is SessionStatus.IDLE and session.runs == []
    again = _reopened(opener, tmp_path, store)
    try:
        found = again.resolve(session.id)
        assert (found.metadata, found.workspace, found.secure) == ({"k": "v"}, "/w", False)
    finally:
        again.close()


def test_an_unknown_or_overlong_id_is_not_found(store: SessionStore) -> None:
    for key in ("nope", "x" * 10_000, THREAD):
        with pytest.raises(SessionNotFound):
            store.resolve(key)


def test_a_thread_leads_to_the_session_that_had_it_first(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    first = store.create(secure=False)
    first.codex_session_id = THREAD
    store.remember_thread(first)
    assert store.resolve(THREAD.upper()) is first  # known before any save
    store.save(first)
    time.sleep(STAMP_S)
    later = store.create(secure=False)
    later.codex_session_id = THREAD
    store.save(later)
    assert store.thread_owner(THREAD) is first
    again = _reopened(opener, tmp_path, store)
    try:
        owner = again.thread_owner(THREAD)
        assert owner is not None and owner.id == first.id
        assert again.thread_owner(OTHER_THREAD) is None
    finally:
        again.close()


def test_a_secure_sessions_thread_is_secure(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    plain, secure = store.create(secure=False), store.create(secure=True)
    plain.codex_session_id, secure.codex_session_id = OTHER_THREAD, THREAD
    store.save(plain)
    store.save(secure)
    assert store.thread_is_secure(THREAD) and not store.thread_is_secure(OTHER_THREAD)
    again = _reopened(opener, tmp_path, store)
    try:
        assert again.thread_is_secure(THREAD.upper())
        assert again.resolve(secure.id).secure
    finally:
        again.close()


async def test_listing_is_newest_first_within_limit_since_and_the_secure_filter(
    store: SessionStore,
) -> None:
    made = [store.create(secure=index == 3) for index in range(5)]
    for session in made:  # saved in order: each newer than the one before
        time.sleep(STAMP_S)
        store.save(session)
    newest = await store.listing(limit=2, since=None, include_secure=True)
    assert [s.id for s in newest] == [made[4].id, made[3].id]
    plain = await store.listing(limit=10, since=None, include_secure=False)
    assert [s.id for s in plain] == [made[4].id, made[2].id, made[1].id, made[0].id]
    since = made[2].modified_at
    assert {s.id for s in await store.listing(limit=10, since=since, include_secure=True)} == {
        made[3].id,
        made[4].id,
    }
    later = since + timedelta(days=1)
    assert await store.listing(limit=10, since=later, include_secure=True) == []
    assert len(store) == 5 and {s.id for s in store} == {s.id for s in made}


def test_run_records_are_kept_in_order_across_a_restart(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    session = store.create(secure=False)
    for number in range(45):  # past what meta.json keeps: some are archived
        session.runs.append(
            RunRecord(run_id=f"run-{number:02d}", status=RunStatus.COMPLETED, metadata={})
        )
        store.save(session)
    assert [r.run_id for r in store.run_history(session)] == [f"run-{n:02d}" for n in range(45)]
    assert session.run_count == 45
    again = _reopened(opener, tmp_path, store)
    try:
        found = again.resolve(session.id)
        assert found.run_count == 45
        history = again.run_history(found)
        assert [r.run_id for r in history] == [f"run-{n:02d}" for n in range(45)]
        assert all(r.status is RunStatus.COMPLETED for r in history)
    finally:
        again.close()


async def test_one_run_at_a_time_per_session(store: SessionStore) -> None:
    session, other = store.create(secure=False), store.create(secure=False)
    async with store.exclusive(session, "run-1"):
        assert store.busy(session) and not store.busy(other)
        assert store.active_run(session) == "run-1" and store.active_run(other) is None
        with pytest.raises(SessionBusy):
            async with store.exclusive(session, "run-2"):
                pass
        assert store.active_run(session) == "run-1"  # the refused claim changed nothing
        async with store.exclusive(other, "run-3"):
            assert store.busy(other) and store.active_run(other) == "run-3"
    assert not store.busy(session) and not store.busy(other)
    assert store.active_run(session) is None


def test_a_run_left_running_by_a_crash_is_interrupted_at_load(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    session = store.create(secure=False)
    session.runs.append(RunRecord(run_id="lost", status=RunStatus.RUNNING, metadata={}))
    session.status = SessionStatus.RUNNING
    store.save(session)
    again = _reopened(opener, tmp_path, store)  # as a gateway started after the crash
    try:
        found = again.resolve(session.id)
        assert found.status is SessionStatus.INTERRUPTED
        (record,) = found.runs
        assert record.status is RunStatus.INTERRUPTED and record.error and record.completed_at
    finally:
        again.close()
    on_disk = json.loads((session.dir / "meta.json").read_bytes())
    assert on_disk["status"] == "interrupted" and on_disk["runs"][0]["status"] == "interrupted"


def test_a_session_not_persisted_yet_is_indexed_but_not_durable(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    session = store.create(secure=False, persist=False)
    assert store.resolve(session.id) is session
    again = _reopened(opener, tmp_path, store)
    try:
        with pytest.raises(SessionNotFound):
            again.resolve(session.id)
    finally:
        again.close()


def test_saving_stamps_updated_at(store: SessionStore) -> None:
    session = store.create(secure=False)
    before = session.updated_at
    time.sleep(STAMP_S)
    session.updated_at = "2000-01-01T00:00:00.000Z"
    store.save(session)
    assert session.updated_at > before
    assert session.modified_at > datetime.fromisoformat("2000-01-02T00:00:00+00:00")
