"""The file watcher on real files in a temp tree, with the echo agent standing in for codex."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codex_gateway.v1 import status_pb2
from gateway.automation.watcher import compile_glob, describe_file, matches, render
from gateway.config import Config, WatcherConfig
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_gateway


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        pytest.param("**/*", "a.txt", True, id="all-top"),
        pytest.param("**/*", "x/y/z.bin", True, id="all-deep"),
        pytest.param("**/*.txt", "a.txt", True, id="doublestar-top"),
        pytest.param("**/*.txt", "inbox/deep/a.txt", True, id="doublestar-deep"),
        pytest.param("**/*.txt", "inbox/a.md", False, id="doublestar-other-ext"),
        pytest.param("*.txt", "a.txt", True, id="star-top"),
        pytest.param("*.txt", "sub/a.txt", False, id="star-stays-in-segment"),
        pytest.param("inbox/**", "inbox/a/b.txt", True, id="trailing-doublestar"),
        pytest.param("inbox/**", "outbox/a.txt", False, id="trailing-doublestar-other"),
        pytest.param("a?.txt", "ab.txt", True, id="question"),
        pytest.param("a?.txt", "a/.txt", False, id="question-no-slash"),
        pytest.param("[ab].txt", "b.txt", True, id="class"),
        pytest.param("[!ab].txt", "b.txt", False, id="negated-class"),
        pytest.param("a+b(1).txt", "a+b(1).txt", True, id="regex-metachars-literal"),
        pytest.param("/abs/**", "abs/x", True, id="leading-slash-ignored"),
        pytest.param("", "anything/at/all", True, id="empty-is-all"),
    ],
)
def test_glob_table(pattern: str, path: str, expected: bool) -> None:
    assert matches(compile_glob(pattern), path) is expected


SEGMENT = st.text(alphabet=st.sampled_from(list("abc.xt-_")), min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")
)


@given(st.lists(SEGMENT, min_size=1, max_size=5))
def test_glob_properties(parts: list[str]) -> None:
    path = "/".join(parts)
    assert matches(compile_glob("**/*"), path)
    assert matches(compile_glob("**/*.txt"), path) == parts[-1].endswith(".txt")
    assert matches(compile_glob("*"), path) == (len(parts) == 1)
    assert matches(compile_glob(f"{parts[0]}/**"), path) == (len(parts) > 1)


def test_render_takes_both_documented_and_reference_names() -> None:
    values = {"file": "/w/a.txt", "filename": "a.txt", "event_type": "created", "event": "add"}
    text = render("{{file}} {{ FileName }} {{event_type}} {{event}} {{unknown}}.", values)
    assert text == "/w/a.txt a.txt created add ."


def test_binary_files_are_described_and_long_ones_truncated(tmp_path: Path) -> None:
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    assert describe_file(binary)[0] == "Binary file (300 bytes), content not shown."
    long = tmp_path / "l.txt"
    long.write_text("é" * 10_000)
    content, _, size = describe_file(long)
    assert content.startswith("File content (truncated):\n" + "é" * 4000 + "\n...[truncated")
    assert size == str(len("é".encode()) * 10_000)


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    folder = tmp_path / "watched"
    folder.mkdir()
    return folder


@pytest.fixture
async def watching(
    config_for: Callable[..., Config], watched: Path, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    template = tmp_path / "MONITOR.md"
    template.write_text("{{event_type}} {{filename}} at {{relative}}: {{content}}")
    watcher = WatcherConfig(
        paths=(watched,), pattern="**/*.txt", prompt_file=template, debounce_ms=300
    )
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", watcher=watcher, max_concurrent=1)
    async with running_gateway(config) as gw:
        stop = asyncio.Event()
        task = asyncio.create_task(gw.gateway.watcher.run(stop))
        await asyncio.sleep(0.5)  # the OS watch is set up
        try:
            yield gw
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)


async def runs_after(gw: RunningGateway, count: int, wait_s: float = 10.0) -> list[dict[str, Any]]:
    """The prompts of the watcher's runs once `count` have finished (and nothing more came)."""
    prompts: list[dict[str, Any]] = []
    for _ in range(int(wait_s / 0.1)):
        sessions = [s for s in gw.gateway.store if s.runs and s.runs[0].source == "watcher"]
        done = [s for s in sessions if s.status == "completed"]
        if len(done) >= count and len(done) == len(sessions):
            await asyncio.sleep(0.8)  # nothing else arrives after the debounce
            sessions = [s for s in gw.gateway.store if s.runs and s.runs[0].source == "watcher"]
            prompts = [(s.last_input or {})["messages"][0]["content"] for s in sessions]
            break
        await asyncio.sleep(0.1)
    return sorted(prompts, key=str)


async def test_create_modify_delete_and_nested(watching: RunningGateway, watched: Path) -> None:
    (watched / "a.txt").write_text("hello")
    assert await runs_after(watching, 1) == ["created a.txt at a.txt: File content:\nhello"]
    (watched / "a.txt").write_text("hello again")
    prompts = await runs_after(watching, 2)
    assert "modified a.txt at a.txt: File content:\nhello again" in prompts
    (watched / "deep" / "er").mkdir(parents=True)
    (watched / "deep" / "er" / "n.txt").write_text("nested")
    prompts = await runs_after(watching, 3)
    assert "created n.txt at deep/er/n.txt: File content:\nnested" in prompts
    (watched / "a.txt").unlink()
    prompts = await runs_after(watching, 4)
    assert any(p.startswith("deleted a.txt at a.txt") for p in prompts)


async def test_a_burst_of_writes_is_one_run(watching: RunningGateway, watched: Path) -> None:
    target = watched / "burst.txt"
    for i in range(30):
        target.write_text(f"version {i}")
        await asyncio.sleep(0.01)
    prompts = await runs_after(watching, 1)
    assert prompts == ["created burst.txt at burst.txt: File content:\nversion 29"]


async def test_files_not_matching_and_symlinks_out_start_nothing(
    watching: RunningGateway, watched: Path, tmp_path: Path
) -> None:
    (watched / "notes.md").write_text("no")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret outside the root")
    (watched / "link.txt").symlink_to(outside)
    await asyncio.sleep(1.5)
    assert [s for s in watching.gateway.store] == []
    status = await watching.stub.GetStatus(status_pb2.GetStatusRequest())
    assert status.watcher.enabled and status.watcher.runs_started == 0


async def test_status_reports_the_last_event(watching: RunningGateway, watched: Path) -> None:
    (watched / "s.txt").write_text("x")
    await runs_after(watching, 1)
    status = await watching.stub.GetStatus(status_pb2.GetStatusRequest())
    assert status.watcher.runs_started == 1 and status.watcher.events_seen >= 1
    assert status.watcher.last_event["relative"] == "s.txt"
    assert status.watcher.paths == [str(watched.resolve())]
    info = await watching.stub.GetInfo(status_pb2.GetInfoRequest())
    assert info.watcher.enabled and info.watcher.pattern == "**/*.txt"


async def test_polling_mode_works_too(config_for: Callable[..., Config], watched: Path) -> None:
    watcher = WatcherConfig(
        paths=(watched,), pattern="**/*", debounce_ms=100, poll_ms=100, force_polling=True
    )
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", watcher=watcher)
    async with running_gateway(config) as gw:
        stop = asyncio.Event()
        task = asyncio.create_task(gw.gateway.watcher.run(stop))
        await asyncio.sleep(0.5)
        (watched / "p.bin").write_bytes(b"\x00binary")
        prompts = await runs_after(gw, 1)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert len(prompts) == 1 and "Binary file (7 bytes), content not shown." in prompts[0]
    assert gw.gateway.watcher.mode == "polling"


async def test_a_burst_of_files_waits_for_slots_instead_of_failing(
    watching: RunningGateway, watched: Path
) -> None:
    for i in range(6):
        (watched / f"f{i}.txt").write_text(str(i))
    prompts = await runs_after(watching, 6, wait_s=20)
    assert len(prompts) == 6  # max_concurrent=1: they queued for the slot, none was dropped
    assert json.dumps(prompts)
