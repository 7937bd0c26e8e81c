"""detail.read_files: what a session's detail shows of its files, each part within its share of
the answer's bytes, read from real session files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sessions.detail import read_files
from gateway.sessions.files import EVENTS, STDERR, STDOUT, FileSessionStore
from gateway.sessions.model import Session


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    store = FileSessionStore([tmp_path / "sessions"], tmp_path / "secure")
    store.load()
    try:
        created = store.create(secure=False)
        store.save(created)
        files = created.files_dir
        (files / STDOUT).write_text("".join(f"out {n} {'y' * 45}\n" for n in range(10)))
        (files / STDERR).write_text("err 0\nerr 1\n")
        events = [{"type": "item.completed", "n": n, "pad": "x" * 100} for n in range(10)]
        (files / EVENTS).write_text("".join(json.dumps(e) + "\n" for e in events) + "torn{\n")
        yield created
    finally:
        store.close()


async def test_the_tails_hold_the_last_lines(session: Session) -> None:
    found = await read_files(session, lines=3, max_bytes=1 << 20, stderr=True, events=True)
    assert (found.lines, found.share) == (3, 1 << 18)
    assert found.stdout.splitlines() == [f"out {n} {'y' * 45}" for n in (7, 8, 9)]
    assert found.stderr == "err 0\nerr 1"
    assert found.events is not None
    assert [e["n"] for e in found.events] == [8, 9]  # the torn last line costs only itself
    assert found.events_omitted == 0


async def test_what_was_not_asked_for_is_not_read(session: Session) -> None:
    found = await read_files(session, lines=3, max_bytes=1 << 20, stderr=False, events=False)
    assert (found.stderr, found.events, found.events_omitted) == (None, None, 0)


async def test_a_part_over_its_share_keeps_its_newest_lines_and_says_so(session: Session) -> None:
    found = await read_files(session, lines=10, max_bytes=4 * 300, stderr=False, events=True)
    assert found.stdout.startswith("[gateway: older lines omitted to keep this answer under 300")
    assert found.stdout.endswith("out 9 " + "y" * 45)
    assert found.events is not None
    assert [e["n"] for e in found.events] == [8, 9]
    assert found.events_omitted == 10 - 3  # at most: the torn line was one of the 3 kept
