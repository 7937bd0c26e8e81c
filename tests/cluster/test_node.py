"""A replica joining the cluster: migrations, registration, leases and reaping, on a real
PostgreSQL."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from gateway.cluster.database import Database, migrations
from gateway.cluster.node import ClusterNode
from gateway.cluster.replicas import Connection
from gateway.config import ClusterConfig, StartupError


def _config(
    dsn: str, replica_id: str = "r1", port: int = 50001, lease_ms: int = 1000
) -> ClusterConfig:
    return ClusterConfig(
        database_url=dsn,
        replica_id=replica_id,
        advertise_addr=f"127.0.0.1:{port}",
        lease_ms=lease_ms,
    )


async def _rows(dsn: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(query.encode())
        return list(await cursor.fetchall())


async def test_replicas_that_start_together_migrate_once(pg_dsn: str) -> None:
    databases = [Database(pg_dsn) for _ in range(4)]
    try:
        await asyncio.gather(*(database.open() for database in databases))
    finally:
        await asyncio.gather(*(database.close() for database in databases))
    applied = await _rows(pg_dsn, "SELECT version FROM schema_migrations ORDER BY version")
    assert [row[0] for row in applied] == [migration.version for migration in migrations()]


async def test_a_schema_newer_than_the_code_stops_startup_naming_both_versions(
    pg_dsn: str,
) -> None:
    database = Database(pg_dsn)
    await database.open()
    await database.close()
    newest = migrations()[-1].version
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, 'from_the_future')",
            (newest + 1,),
        )
    with pytest.raises(StartupError, match=rf"version {newest + 1}, newer than .* {newest}"):
        await Database(pg_dsn).open()


async def test_an_unreachable_database_stops_startup_naming_the_variable() -> None:
    database = Database("postgresql://nobody@127.0.0.1:9/none")
    with pytest.raises(StartupError, match="CODEX_GATEWAY_DATABASE_URL: cannot reach"):
        await database.open()


async def test_a_second_live_replica_with_one_id_is_refused(pg_dsn: str) -> None:
    first = ClusterNode(_config(pg_dsn, port=50001))
    await first.open()
    try:
        second = ClusterNode(_config(pg_dsn, port=50002))
        with pytest.raises(StartupError, match="replica 'r1' is already running"):
            await second.open()
        status = await first.status()
        assert [replica.replica_id for replica in status.replicas] == ["r1"]
    finally:
        await first.close()


async def test_a_restart_at_its_own_address_takes_over_with_a_new_epoch(pg_dsn: str) -> None:
    first = ClusterNode(_config(pg_dsn))
    await first.open()
    await first.database.close()  # dies without ending its lease
    again = ClusterNode(_config(pg_dsn))
    await again.open()
    try:
        assert again.replicas.epoch > first.replicas.epoch
    finally:
        await again.close()


async def test_an_expired_replica_is_reaped_once_and_finds_out_when_it_returns(
    pg_dsn: str,
) -> None:
    reaped: list[str] = []

    async def hook(conn: Connection, replica_id: str) -> None:
        reaped.append(replica_id)

    survivor = ClusterNode(_config(pg_dsn, "a", 50001, lease_ms=1000))
    doomed = ClusterNode(_config(pg_dsn, "b", 50002, lease_ms=1000))
    survivor.replicas.on_reap(hook)
    fenced = asyncio.Event()

    async def on_fenced() -> None:
        fenced.set()

    doomed.replicas.on_fenced(on_fenced)
    await survivor.open()
    await doomed.open()
    try:
        reaped.clear()  # the registrations' own calls
        old_epoch = doomed.replicas.epoch
        # The survivor renews; the doomed one stops renewing. Expired for another lease: reaped.
        for _ in range(30):
            await survivor.replicas.beat()
            if "b" in reaped:
                break
            await asyncio.sleep(0.1)
        assert reaped == ["b"]
        state = await _rows(pg_dsn, "SELECT state, epoch FROM replicas WHERE replica_id = 'b'")
        assert state[0][0] == "reaped" and int(str(state[0][1])) > old_epoch
        # Its next heartbeat finds its epoch gone: it stops its agents and registers again.
        await doomed.replicas.beat()
        assert fenced.is_set()
        assert doomed.replicas.epoch > int(str(state[0][1]))
        alive = [r.replica_id for r in (await survivor.status()).replicas]
        assert alive == ["a", "b"]
    finally:
        await doomed.close()
        await survivor.close()


async def test_a_migration_numbered_below_one_applied_is_still_applied(pg_dsn: str) -> None:
    # Migrations land from parallel branches: a database may have 0004 before 0002 exists.
    database = Database(pg_dsn)
    await database.open()
    await database.close()
    first = migrations()[0]
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute("DROP TABLE runs, sessions, replicas; DROP SEQUENCE replica_epochs")
        await conn.execute("DELETE FROM schema_migrations WHERE version = %s", (first.version,))
    database = Database(pg_dsn)
    await database.open()
    await database.close()
    tables = await _rows(pg_dsn, "SELECT to_regclass('replicas') IS NOT NULL")
    assert tables == [(True,)]
