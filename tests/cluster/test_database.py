"""The replica's connection pool: a cancellation that comes as a connection is handed over is
never lost (psycopg_pool waits with asyncio.wait_for, which in 3.11 swallows it), and the
connection goes back to the pool. A real PostgreSQL, a pool of one."""

from __future__ import annotations

import asyncio

from gateway.cluster.database import Database


async def test_a_cancel_as_the_connection_is_handed_over_is_raised_not_lost(pg_dsn: str) -> None:
    database = Database(pg_dsn, pool_max=1)
    await database.open()
    try:

        async def hold(holder_in: asyncio.Event, holder_out: asyncio.Event) -> None:
            async with database.connection():
                holder_in.set()
                await holder_out.wait()

        async def wait_then_use(went_on: asyncio.Event) -> None:
            async with database.connection() as conn:
                went_on.set()  # only a waiter that was not cancelled gets here
                await conn.execute("SELECT 1")

        for _ in range(20):  # the race has one shape here, but it is cheap to ask again
            went_on, holder_in, holder_out = asyncio.Event(), asyncio.Event(), asyncio.Event()
            holder = asyncio.create_task(hold(holder_in, holder_out))
            await holder_in.wait()
            waiter = asyncio.create_task(wait_then_use(went_on))
            await asyncio.sleep(0.05)  # the waiter waits for the one connection
            holder_out.set()
            await holder  # the connection is handed to the waiter...
            waiter.cancel()  # ...and the waiter is cancelled before it runs again
            await asyncio.wait({waiter})
            assert waiter.cancelled() and not went_on.is_set()
        async with asyncio.timeout(5):  # the connection went back: the pool of one serves
            async with database.connection() as conn:
                await conn.execute("SELECT 1")
    finally:
        await database.close()
