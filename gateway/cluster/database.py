"""The cluster's database: one connection pool per replica, its schema migrated at startup.

Migrations are the numbered files in `migrations/` (`0001_name.sql`, ...): every one not yet
applied, in order, each once, under a transaction-level advisory lock, so replicas that start
together migrate once (the others wait and find nothing left to do). A database whose schema is
newer than this code stops startup (exit 2) naming both versions: an older replica must not
write rows it does not understand.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.config import StartupError
from gateway.errors import StorageUnavailable

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key of the migrations ("cgw" "mig").
MIGRATION_LOCK = 0x636777_6D6967
CONNECT_TIMEOUT_S = 5
# How long a request waits for a pooled connection before it is told the database is
# unavailable (503): a database that is down must not hang the callers.
ACQUIRE_TIMEOUT_S = 2.0
POOL_MAX = 8
_MIGRATION_NAME = re.compile(r"(?P<version>[0-9]{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str


def migrations() -> list[Migration]:
    """This code's migrations, in order."""
    found = []
    for entry in resources.files("gateway.cluster.migrations").iterdir():
        matched = _MIGRATION_NAME.fullmatch(entry.name)
        if matched:
            found.append(
                Migration(int(matched["version"]), entry.name, entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda migration: migration.version)
    return found


class Database:
    """The replica's pool of connections to the cluster's PostgreSQL."""

    def __init__(self, url: str, *, pool_max: int = POOL_MAX) -> None:
        self.url = url
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_max,
            open=False,
            timeout=ACQUIRE_TIMEOUT_S,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            name="codex-gateway",
        )

    async def open(self) -> None:
        """Connect (StartupError naming the variable when the database cannot be reached) and
        bring the schema up to this code's version."""
        # One connection first: a refused or failed one says why at once, where the pool would
        # retry until its timeout and then say only that it timed out.
        try:
            probe = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
        except psycopg.Error as exc:
            raise StartupError(
                f"CODEX_GATEWAY_DATABASE_URL: cannot reach the database ({_reason(exc)})"
            ) from None
        await probe.close()
        try:
            await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout as exc:
            await self._pool.close()
            raise StartupError(
                f"CODEX_GATEWAY_DATABASE_URL: cannot reach the database ({_reason(exc)})"
            ) from None
        try:
            await self.migrate()
        except BaseException:
            await self._pool.close()
            raise

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """A pooled connection in autocommit mode (`conn.transaction()` for more than one
        statement); StorageUnavailable (503) when none can be had in time.

        psycopg_pool waits for a connection with asyncio.wait_for, which in 3.11 swallows a
        cancellation that comes as the wait ends (the connection was handed over): the caller
        would go on as if never cancelled. A cancellation requested during the wait and not
        raised is raised here, the connection going back to the pool."""
        task = asyncio.current_task()
        requested = task.cancelling() if task is not None else 0
        try:
            async with self._pool.connection() as conn:
                if task is not None and task.cancelling() > requested:
                    raise asyncio.CancelledError
                yield conn
        except PoolTimeout as exc:
            raise StorageUnavailable("the cluster database is unavailable") from exc
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"the cluster database is unavailable: {exc}") from exc

    async def migrate(self) -> int:
        """Apply the missing migrations; the schema's version after."""
        known = migrations()
        newest = known[-1].version if known else 0
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute("SELECT version FROM schema_migrations")
            applied = {int(row[0]) for row in await cursor.fetchall()}
            current = max(applied, default=0)
            if current > newest:
                raise StartupError(
                    f"CODEX_GATEWAY_DATABASE_URL: the database's schema is version {current}, "
                    f"newer than this gateway's {newest}: upgrade this replica"
                )
            for migration in known:
                if migration.version in applied:
                    continue
                log.info("applying database migration %s", migration.name)
                await conn.execute(migration.text.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            return max(current, newest)


def _reason(exc: BaseException) -> str:
    """The (last) connection error, without the URL (libpq's messages name the host and port,
    never the password)."""
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__ or exc.__context__
    lines = [line.strip() for line in str(cause or exc).splitlines() if line.strip()]
    return "; ".join(lines)[:300] if lines else type(exc).__name__
