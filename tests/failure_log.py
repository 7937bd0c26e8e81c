"""A line per failed test, written as it happens, for CI logs that keep only their tail.

`make test` prints the file after a failed run, so the last lines of its output name every test
that failed and why, even when pytest itself stops on an internal error.
"""

from __future__ import annotations

from pathlib import Path

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

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.failed:
            return
        crash = getattr(report.longrepr, "reprcrash", None)
        reason = (crash.message if crash is not None else str(report.longrepr)).strip()
        first = reason.splitlines()[0][:600] if reason else "?"
        with self._path.open("a") as log:
            log.write(f"{report.nodeid} [{report.when}, {report.duration:.1f}s]: {first}\n")
