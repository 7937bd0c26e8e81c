"""What every SessionStore promises (gateway/sessions/store.py), run against each implementation.

The files store, and cluster mode's (gateway/cluster/store.py: the files store mirrored into a real
PostgreSQL, its replica registered and its syncer running). Each test reopens the store where the
promise is about what survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.cluster.node import ClusterNode
from gateway.cluster.store import ClusterSessionStore
from gateway.config import ClusterConfig
from gateway.errors import SessionBusy, SessionNotFound
from gateway.sessions.files import FileSessionStore
from gateway.sessions.model import RunRecord, RunStatus, SessionStatus
from gateway.sessions.store import SessionStore

THREAD = "0b7c6a52-5f0e-4c7a-9c1d-2f3e4a5b6c7d"
OTHER_THREAD = "1c8d7b63-6a1f-4d8b-8d2e-3a4f5b6c7d8e"

STAMP_S = 0.002
"""Timestamps have millisecond resolution: waiting this long makes the next one later (a wait
that a slower machine only lengthens)."""


class Opener:
    """Opens a store over `root`, as a gateway starting there would, and closes it."""

    async def open(self, root: Path) -> SessionStore:
        raise NotImplementedError

    async def close(self, store: SessionStore) -> None:
        raise NotImplementedError


class _Files(Opener):
    async def open(self, root: Path) -> SessionStore:
        store = FileSessionStore([root / "sessions"], root / "secure")
        store.load()
        return store

    async def close(self, store: SessionStore) -> None:
        store.close()


class _Cluster(Opener):
    """A replica of a cluster on a real PostgreSQL: its node registered, its syncer running."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._open: dict[int, tuple[ClusterNode, asyncio.Event, asyncio.Task[None]]] = {}

    async def open(self, root: Path) -> SessionStore:
        node = ClusterNode(
            ClusterConfig(
                database_url=self._dsn,
                replica_id="alpha",
                advertise_addr="127.0.0.1:1",
                lease_ms=60_000,
            )
        )
        store = ClusterSessionStore(FileSessionStore([root / "sessions"], root / "secure"), node)
        await node.open()
        store.load()
        stop = asyncio.Event()
        self._open[id(store)] = (node, stop, asyncio.create_task(store.run(stop)))
        return store

    async def close(self, store: SessionStore) -> None:
        node, stop, syncer = self._open.pop(id(store))
        stop.set()
        await syncer
        store.close()
        await node.close()


STORES = [pytest.param("files", id="files"), pytest.param("cluster", id="cluster")]


@pytest.fixture(params=STORES)
def opener(request: pytest.FixtureRequest) -> Opener:
    if request.param == "files":
        return _Files()
    return _Cluster(request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def store(opener: Opener, tmp_path: Path) -> AsyncIterator[SessionStore]:
    opened = await opener.open(tmp_path)
    yield opened
    with contextlib.suppress(KeyError):  # a test that reopened it closed it
        await opener.close(opened)


@contextlib.asynccontextmanager
async def _reopened(
    opener: Opener, tmp_path: Path, store: SessionStore
) -> AsyncIterator[SessionStore]:
    """The store closed, and opened again as after a restart (closed on leaving)."""
    await opener.close(store)
    again = await opener.open(tmp_path)
    try:
        yield again
    finally:
        await opener.close(again)


async def test_a_created_session_is_found_by_its_id_and_survives_a_restart(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    session = store.create(secure=False, metadata={"k": "v"}, workspace="/w")
    assert store.resolve(session.id) is session
    assert session.status is SessionStatus.IDLE and session.runs == []
    async with _reopened(opener, tmp_path, store) as again:
        found = again.resolve(session.id)
        assert (found.metadata, found.workspace, found.secure) == ({"k": "v"}, "/w", False)


async def test_an_unknown_or_overlong_id_is_not_found(store: SessionStore) -> None:
    for key in ("nope", "x" * 10_000, THREAD):
        with pytest.raises(SessionNotFound):
            store.resolve(key)


async def test_a_thread_leads_to_the_session_that_had_it_first(
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
    async with _reopened(opener, tmp_path, store) as again:
        owner = again.thread_owner(THREAD)
        assert owner is not None and owner.id == first.id
        assert again.thread_owner(OTHER_THREAD) is None


async def test_a_secure_sessions_thread_is_secure(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    plain, secure = store.create(secure=False), store.create(secure=True)
    plain.codex_session_id, secure.codex_session_id = OTHER_THREAD, THREAD
    store.save(plain)
    store.save(secure)
    assert store.thread_is_secure(THREAD) and not store.thread_is_secure(OTHER_THREAD)
    async with _reopened(opener, tmp_path, store) as again:
        assert again.thread_is_secure(THREAD.upper())
        assert again.resolve(secure.id).secure


async def test_listing_is_newest_first_within_limit_since_and_the_secure_filter(
    store: SessionStore,
) -> None:
    made = [store.create(secure=index == 3) for index in range(5)]
    for session in made:  # saved in order: each newer than the one before
        time.sleep(STAMP_S)
        store.save(session)
    for session in made:  # where every reader reads it
        await store.settle(session)
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


async def test_run_records_are_kept_in_order_across_a_restart(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    session = store.create(secure=False)
    for number in range(45):  # past what meta.json keeps: some are archived
        session.runs.append(
            RunRecord(run_id=f"run-{number:02d}", status=RunStatus.COMPLETED, metadata={})
        )
        store.save(session)
    assert [r.run_id for r in await store.run_history(session)] == [
        f"run-{n:02d}" for n in range(45)
    ]
    assert session.run_count == 45
    async with _reopened(opener, tmp_path, store) as again:
        found = again.resolve(session.id)
        assert found.run_count == 45
        history = await again.run_history(found)
        assert [r.run_id for r in history] == [f"run-{n:02d}" for n in range(45)]
        assert all(r.status is RunStatus.COMPLETED for r in history)


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
    async with store.exclusive(session, "run-4"):  # at once after the release
        assert store.active_run(session) == "run-4"
    await store.settle(session)
    async with store.exclusive(session, "run-5"):  # and after it settled
        pass


async def test_settle_returns_for_a_saved_and_a_never_saved_session(store: SessionStore) -> None:
    saved, unsaved = store.create(secure=False), store.create(secure=False, persist=False)
    store.save(saved)
    await asyncio.wait_for(store.settle(saved), 20)
    await asyncio.wait_for(store.settle(unsaved), 20)


async def test_the_listing_survives_a_restart(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    made = [store.create(secure=False, metadata={"n": n}) for n in range(3)]
    for session in made:
        time.sleep(STAMP_S)
        store.save(session)
    async with _reopened(opener, tmp_path, store) as again:
        listed = await again.listing(limit=10, since=None, include_secure=False)
        assert [(s.id, s.metadata) for s in listed] == [(s.id, s.metadata) for s in reversed(made)]
        assert all(s.dir == m.dir for s, m in zip(listed, reversed(made), strict=True))


async def test_a_run_left_running_by_a_crash_is_interrupted_at_load(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    session = store.create(secure=False)
    session.runs.append(RunRecord(run_id="lost", status=RunStatus.RUNNING, metadata={}))
    session.status = SessionStatus.RUNNING
    store.save(session)
    async with _reopened(opener, tmp_path, store) as again:  # as a gateway started after the crash
        found = again.resolve(session.id)
        assert found.status is SessionStatus.INTERRUPTED
        (record,) = found.runs
        assert record.status is RunStatus.INTERRUPTED and record.error and record.completed_at
    on_disk = json.loads((session.dir / "meta.json").read_bytes())
    assert on_disk["status"] == "interrupted" and on_disk["runs"][0]["status"] == "interrupted"


async def test_a_session_not_persisted_yet_is_indexed_but_not_durable(
    opener: Opener, store: SessionStore, tmp_path: Path
) -> None:
    session = store.create(secure=False, persist=False)
    assert store.resolve(session.id) is session
    async with _reopened(opener, tmp_path, store) as again:
        with pytest.raises(SessionNotFound):
            again.resolve(session.id)


async def test_saving_stamps_updated_at(store: SessionStore) -> None:
    session = store.create(secure=False)
    before = session.updated_at
    time.sleep(STAMP_S)
    session.updated_at = "2000-01-01T00:00:00.000Z"
    store.save(session)
    assert session.updated_at > before
    assert session.modified_at > datetime.fromisoformat("2000-01-02T00:00:00+00:00")
