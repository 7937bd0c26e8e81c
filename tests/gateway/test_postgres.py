"""The test database (tests/postgres.py) is a real PostgreSQL: tables, transactions seen across
connections, LISTEN/NOTIFY, and a fresh database for every test."""

from __future__ import annotations

import asyncio

import pytest
from psycopg import AsyncConnection

# Two tests below, in this order, prove isolation: the second must not see the first's table.
ISOLATION_TABLE = "left_by_an_earlier_test"


async def test_a_table_takes_rows_and_gives_them_back(pg_dsn: str) -> None:
    async with await AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE runs (id int PRIMARY KEY, state text NOT NULL)")
        await conn.execute(
            "INSERT INTO runs VALUES (%s, %s), (%s, %s)", (1, "queued", 2, "running")
        )
        cursor = await conn.execute("SELECT id, state FROM runs ORDER BY id")
        assert await cursor.fetchall() == [(1, "queued"), (2, "running")]


async def test_a_commit_is_seen_by_another_connection_and_not_before(pg_dsn: str) -> None:
    async with (
        await AsyncConnection.connect(pg_dsn, autocommit=True) as reader,
        await AsyncConnection.connect(pg_dsn) as writer,
    ):
        await reader.execute("CREATE TABLE leases (name text PRIMARY KEY)")
        await writer.execute("INSERT INTO leases VALUES ('a')")
        cursor = await reader.execute("SELECT count(*) FROM leases")
        assert await cursor.fetchone() == (0,)  # not committed yet
        await writer.commit()
        cursor = await reader.execute("SELECT name FROM leases")
        assert await cursor.fetchall() == [("a",)]


async def test_a_notify_reaches_the_listening_connection(pg_dsn: str) -> None:
    async with (
        await AsyncConnection.connect(pg_dsn, autocommit=True) as listener,
        await AsyncConnection.connect(pg_dsn, autocommit=True) as sender,
    ):
        await listener.execute("LISTEN run_events")
        await sender.execute("SELECT pg_notify('run_events', 'run-1 done')")
        async with asyncio.timeout(10):
            notify = await anext(aiter(listener.notifies()))
        assert (notify.channel, notify.payload) == ("run_events", "run-1 done")
        assert notify.pid != listener.info.backend_pid  # it came from the other connection


@pytest.mark.parametrize("step", ["leaves a table", "finds none"])
async def test_every_test_gets_an_empty_database(pg_dsn: str, step: str) -> None:
    async with await AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        cursor = await conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert await cursor.fetchone() == (0,)
        if step == "leaves a table":
            await conn.execute(f"CREATE TABLE {ISOLATION_TABLE} (x int)")
