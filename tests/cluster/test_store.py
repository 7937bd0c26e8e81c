"""The cluster's session store (gateway/cluster/store.py): every replica's sessions and run records
in PostgreSQL, one run per session across the cluster, a dead replica's runs interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.clock import now_iso
from gateway.cluster.node import ClusterNode
from gateway.cluster.store import ClusterSessionStore
from gateway.config import ClusterConfig
from gateway.errors import SessionBusy, StorageUnavailable
from gateway.sessions.files import FileSessionStore
from gateway.sessions.model import RunRecord, RunStatus, SessionStatus
from tests.fakes import AGENTS_DIR
from tests.fakes.model_server import ModelServer
from tests.gateway.test_limits import error_info
from tests.harness import cluster_config, free_port, running_gateway
from tests.postgres import running_postgres


def run(
    prompt: str = "hi", session_id: str | None = None, env: dict[str, str] | None = None
) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(
        run=runs_pb2.RunInput(prompt=prompt, session_id=session_id, env=env)
    )


async def test_a_completion_on_one_replica_is_listed_by_another_with_its_run(
    tmp_path: Path, pg_dsn: str, model_server: ModelServer
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        alpha = await stack.enter_async_context(
            running_gateway(
                cluster_config(tmp_path, pg_dsn, "alpha", model_url=model_server.base_url),
                background=True,
            )
        )
        beta = await stack.enter_async_context(
            running_gateway(
                cluster_config(tmp_path, pg_dsn, "beta", model_url=model_server.base_url),
                background=True,
            )
        )
        result = (await alpha.stub.Complete(run())).result
        listed = await beta.stub.ListSessions(sessions_pb2.ListSessionsRequest())
        (summary,) = listed.sessions
        assert summary.session_id == result.session_id
        assert summary.status == "completed" and summary.runs == 1
        assert summary.dir.endswith(f"session-{result.session_id}")
        assert summary.codex_session_id == result.codex_session_id
        # the home lists it from its files, the other replica from its row: the same summary
        home = await alpha.stub.ListSessions(sessions_pb2.ListSessionsRequest())
        assert list(home.sessions) == [summary]
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute(
                "SELECT run_id, session_id, replica_id, status, record->>'status' FROM runs"
            ).fetchall()
            home, active = conn.execute(
                "SELECT home_replica, active_run_id FROM sessions"
            ).fetchone() or (None, None)
        assert rows == [(result.run_id, result.session_id, "alpha", "completed", "completed")]
        assert (home, active) == ("alpha", None)


@contextlib.asynccontextmanager
async def replica_store(
    tmp_path: Path, dsn: str, replica_id: str, *, lease_ms: int = 60_000
) -> AsyncIterator[tuple[ClusterNode, ClusterSessionStore]]:
    """A replica's store without its servers: registered, its syncer running, no heartbeat
    (a test beats for it)."""
    node = ClusterNode(
        ClusterConfig(
            database_url=dsn,
            replica_id=replica_id,
            advertise_addr=f"127.0.0.1:{free_port()}",
            lease_ms=lease_ms,
        )
    )
    root = tmp_path / replica_id
    store = ClusterSessionStore(FileSessionStore([root / "sessions"], root / "secure"), node)
    await node.open()
    store.load()
    stop = asyncio.Event()
    syncer = asyncio.create_task(store.run(stop))
    try:
        yield node, store
    finally:
        stop.set()
        await asyncio.wait_for(syncer, 30)
        store.close()
        await node.close()


async def test_one_run_per_session_is_claimed_in_the_database(tmp_path: Path, pg_dsn: str) -> None:
    async with (
        replica_store(tmp_path, pg_dsn, "alpha") as (_, alpha),
        replica_store(tmp_path, pg_dsn, "beta") as (_, beta),
    ):
        session = alpha.create(secure=False)
        await alpha.settle(session)
        async with alpha.exclusive(session, "run-a"):
            # Another store (beta's local set knows nothing of it): the row says no.
            with pytest.raises(SessionBusy):
                async with beta.exclusive(session, "run-b"):
                    pass
            assert await row(pg_dsn, "SELECT active_run_id FROM sessions") == ("run-a",)
        await alpha.settle(session)
        assert await row(pg_dsn, "SELECT active_run_id FROM sessions") == (None,)
        async with beta.exclusive(session, "run-b"):  # free again, for whoever claims it
            assert await row(pg_dsn, "SELECT active_run_id FROM sessions") == ("run-b",)
        await beta.settle(session)
        # A claim right after a release still waiting for the syncer takes its place.
        async with alpha.exclusive(session, "run-c"):
            pass
        async with alpha.exclusive(session, "run-d"):
            assert await row(pg_dsn, "SELECT active_run_id FROM sessions") == ("run-d",)
        await alpha.settle(session)
        assert await row(pg_dsn, "SELECT active_run_id FROM sessions") == (None,)


async def test_a_second_run_of_a_running_session_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    config = cluster_config(tmp_path, pg_dsn, "alpha", codex_bin=AGENTS_DIR / "slow_agent.py")
    async with running_gateway(config, background=True) as alpha:
        long = asyncio.ensure_future(alpha.stub.Complete(run(env={"FAKE_AGENT_SECONDS": "3"})))
        session_id = await wait_for_row(
            pg_dsn, "SELECT session_id FROM sessions WHERE active_run_id IS NOT NULL"
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await alpha.stub.Complete(run(session_id=str(session_id)))
        assert refused.value.code() == SessionBusy.code
        assert (await long).result.session_id == session_id


async def test_the_database_down_refuses_new_runs_and_a_running_one_is_recorded_when_back(
    tmp_path: Path,
) -> None:
    with running_postgres() as server:
        dsn = server.dsn()
        config = cluster_config(
            tmp_path, dsn, "alpha", codex_bin=AGENTS_DIR / "slow_agent.py", lease_ms=30_000
        )
        async with running_gateway(config, background=True) as alpha:
            long = asyncio.ensure_future(alpha.stub.Complete(run(env={"FAKE_AGENT_SECONDS": "4"})))
            await wait_for_row(dsn, "SELECT run_id FROM runs WHERE status = 'running'")
            await asyncio.to_thread(server.stop)
            try:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    # never a hang: answered long before this bound
                    await asyncio.wait_for(alpha.stub.Complete(run()), 20)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert error_info(refused.value)[0].reason == StorageUnavailable.reason
                result = (await long).result  # it finishes, the database down
                with pytest.raises(grpc.aio.AioRpcError) as again:  # its session: refused too
                    await asyncio.wait_for(
                        alpha.stub.Complete(run(session_id=result.session_id)), 20
                    )
                assert error_info(again.value)[0].reason == StorageUnavailable.reason
            finally:
                await asyncio.to_thread(server.start)
            status = await wait_for_row(
                dsn,
                "SELECT r.status FROM runs r JOIN sessions s USING (session_id)"
                " WHERE r.run_id = %s AND r.status <> 'running' AND s.status <> 'running'"
                " AND s.active_run_id IS NULL",
                result.run_id,
            )
            assert status == "completed"
            listed = await alpha.stub.ListSessions(sessions_pb2.ListSessionsRequest())
            assert [s.status for s in listed.sessions] == ["completed"]


async def test_a_dead_replicas_running_run_is_interrupted_and_its_late_write_fenced(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        alpha_node, alpha = await stack.enter_async_context(
            replica_store(tmp_path, pg_dsn, "alpha", lease_ms=500)
        )
        beta_node, _ = await stack.enter_async_context(
            replica_store(tmp_path, pg_dsn, "beta", lease_ms=500)
        )
        session = alpha.create(secure=False)
        record = RunRecord(run_id="run-1", status=RunStatus.RUNNING, started_at=now_iso())
        record.metadata, record.agent_pid = {}, 4_000_000
        session.runs.append(record)
        session.status = SessionStatus.RUNNING
        await stack.enter_async_context(alpha.exclusive(session, "run-1"))
        alpha.save(session)
        await alpha.settle(session)
        assert await row(pg_dsn, "SELECT status, active_run_id FROM sessions") == (
            "running",
            "run-1",
        )
        # alpha stops beating; beta, beating, reaps it once its lease is long expired
        deadline = asyncio.get_running_loop().time() + 30
        while beta_node.replicas.reaped_total == 0:
            assert asyncio.get_running_loop().time() < deadline, "alpha was never reaped"
            await asyncio.sleep(0.1)
            await beta_node.replicas.beat()
        lost = "replica alpha was lost during this run"
        assert await row(
            pg_dsn,
            "SELECT status, active_run_id, meta->>'status', meta->'runs'->0->>'status',"
            " meta->'runs'->0->>'error', meta->'runs'->0 ? 'agent_pid' FROM sessions",
        ) == ("interrupted", None, "interrupted", "interrupted", lost, False)
        assert await row(
            pg_dsn,
            "SELECT status, completed_at IS NOT NULL, agent_pid, record->>'status',"
            " record->>'error', record->>'completed_at' IS NOT NULL FROM runs",
        ) == ("interrupted", True, None, "interrupted", lost, True)

        # alpha, not knowing yet, records its run's end: fenced, the reaper's state stays
        record.status, record.completed_at = RunStatus.COMPLETED, now_iso()
        session.status = SessionStatus.COMPLETED
        alpha.save(session)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(alpha.settle(session), 1.5)
        assert await row(pg_dsn, "SELECT status FROM sessions") == ("interrupted",)
        assert await row(pg_dsn, "SELECT status FROM runs") == ("interrupted",)
        other = alpha.create(secure=False, persist=False)
        with pytest.raises(StorageUnavailable):  # nor does it claim a session meanwhile
            async with alpha.exclusive(other, "run-2"):
                pass
        assert await row(pg_dsn, "SELECT count(*) FROM sessions") == (1,)

        # finding itself reaped, it takes the reaper's record of the run (the cluster acted on
        # it: its webhook, its slot), registers again, and writes: the reaper's state stays
        await alpha_node.replicas.beat()
        assert alpha_node.replicas.epoch > 0
        assert (record.status, record.error) == (RunStatus.INTERRUPTED, lost)
        assert session.status == SessionStatus.INTERRUPTED
        await asyncio.wait_for(alpha.settle(session), 20)
        epoch = await row(pg_dsn, "SELECT epoch FROM replicas WHERE replica_id = 'alpha'")
        assert await row(pg_dsn, "SELECT status, replica_epoch FROM sessions") == (
            "interrupted",
            epoch[0],
        )
        assert await row(pg_dsn, "SELECT status, record->>'error' FROM runs") == (
            "interrupted",
            lost,
        )
        meta = json.loads((session.dir / "meta.json").read_text())
        assert meta["runs"][0]["status"] == "interrupted"  # its files agree


async def row(dsn: str, query: str, *params: object) -> tuple[Any, ...] | None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(query, params or None)  # type: ignore[arg-type]
        return await cursor.fetchone()


async def wait_for_row(dsn: str, query: str, *params: object, timeout_s: float = 30) -> Any:
    """The first column of the query's first row, once it has one."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        with contextlib.suppress(psycopg.OperationalError):  # the server is starting again
            found = await row(dsn, query, *params)
            if found is not None:
                return found[0]
        assert asyncio.get_running_loop().time() < deadline, f"no row for {query}"
        await asyncio.sleep(0.05)


async def test_sessions_from_before_cluster_mode_are_pushed_at_startup(
    tmp_path: Path, pg_dsn: str
) -> None:
    root = tmp_path / "alpha"
    files = FileSessionStore([root / "sessions"], root / "secure")
    files.load()
    old = files.create(secure=False, metadata={"from": "embedded"})
    old.runs.append(RunRecord(run_id="run-old", status=RunStatus.COMPLETED, metadata={}))
    old.status = SessionStatus.COMPLETED
    files.save(old)
    files.close()
    async with replica_store(tmp_path, pg_dsn, "alpha") as (_, alpha):
        assert await wait_for_row(pg_dsn, "SELECT status FROM runs WHERE run_id = 'run-old'") == (
            "completed"
        )
        (listed,) = await alpha.listing(limit=10, since=None, include_secure=False)
        assert listed.id == old.id and listed.metadata == {"from": "embedded"}


async def test_a_session_the_database_refuses_holds_back_no_other(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with replica_store(tmp_path, pg_dsn, "alpha") as (_, alpha):
        refused, kept = alpha.create(secure=False), alpha.create(secure=False)
        refused.status = "bad\x00status"  # a text column cannot hold it
        kept.metadata = {"nul": "a\x00b"}  # jsonb cannot either: written as U+FFFD
        alpha.save(refused)
        alpha.save(kept)
        await asyncio.wait_for(alpha.settle(refused), 20)
        await asyncio.wait_for(alpha.settle(kept), 20)
        listed = await alpha.listing(limit=10, since=None, include_secure=False)
        assert [s.id for s in listed] == [kept.id]
        assert await row(pg_dsn, "SELECT meta->'metadata'->>'nul' FROM sessions") == ("a\ufffdb",)


async def test_an_unreadable_session_is_listed_by_every_replica(
    tmp_path: Path, pg_dsn: str
) -> None:
    broken = tmp_path / "alpha" / "sessions" / "session-broken"
    broken.mkdir(parents=True)
    (broken / "meta.json").write_text("{not json")
    async with (
        replica_store(tmp_path, pg_dsn, "alpha") as (_, alpha),
        replica_store(tmp_path, pg_dsn, "beta") as (_, beta),
    ):
        assert await wait_for_row(pg_dsn, "SELECT status FROM sessions") == "unreadable"
        (here,) = await alpha.listing(limit=10, since=None, include_secure=False)
        (there,) = await beta.listing(limit=10, since=None, include_secure=False)
        assert here.id == there.id == "broken"
        assert here.error and here.error.startswith("unreadable")  # the files store's own
        assert there.error == "unreadable on its home replica" and there.dir == broken
