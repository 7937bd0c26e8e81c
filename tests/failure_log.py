"""A line per failed test, written as it happens, for CI logs that keep only their tail.

`make test` prints the file after a failed run, so the last lines of its output name every test
that failed and why, even when pytest itself stops on an internal error. What fails outside a
test is written too: a collection error, an internal error, a run that ends non-zero with no test
failed, and a run terminated from outside (SIGTERM: a CI time limit), with the tests running then
and every thread's stack on stderr.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--failure-log",
        metavar="PATH",
        default=None,
        help="append a line per failed test to PATH (emptied at the start)",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--failure-log")
    # Under pytest-xdist the controller gets every worker's reports: it alone writes the file.
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_FailureLog(Path(path)), "failure-log")


class _FailureLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self._path = path
        self._written = 0
        self._running: set[str] = set()
        self._started = time.monotonic()
        signal.signal(signal.SIGTERM, self._terminated)

    def _write(self, line: str) -> None:
        self._written += 1
        with self._path.open("a") as log:
            log.write(line + "\n")

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self._running.add(nodeid)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self._running.discard(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            where = f"{report.when}, {report.duration:.1f}s"
            self._write(f"{report.nodeid} [{where}]: {_first(report)}")

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write(f"{report.nodeid or '(collection)'} [collect]: {_first(report)}")

    def pytest_internalerror(self, excrepr: object) -> None:
        self._write(f"(pytest) [internal error]: {str(excrepr).strip().splitlines()[-1][:600]}")

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        if exitstatus not in (0, 5) and not self._written:
            self._write(f"(pytest) [session]: exit status {exitstatus}, no test failed")

    def _terminated(self, signum: int, frame: FrameType | None) -> None:
        elapsed = time.monotonic() - self._started
        running = ", ".join(sorted(self._running)) or "none"
        self._write(f"(pytest) [terminated]: SIGTERM after {elapsed:.0f}s; running: {running}")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)


def _first(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The first line of why a report failed."""
    crash = getattr(report.longrepr, "reprcrash", None)
    reason = (crash.message if crash is not None else str(report.longrepr)).strip()
    return reason.splitlines()[0][:600] if reason else "?"
