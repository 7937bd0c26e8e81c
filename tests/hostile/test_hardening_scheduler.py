"""Hardening of the scheduler after trigger reloads moved into worker threads (the review of the
issue 12 changes): reloads applied out of order, a broken file while its triggers are due, and
the mode and owner of the trigger files the gateway rewrites.

- A reload that read the file before a PATCH or a fire and finishes after it is dropped: a
  disabled trigger never fires, a fired one does not fire again.
- A fire re-checks the stored entry: changed on disk since it was armed, it does not run.
- A scheduled file that turns into a FIFO or grows over its cap while its triggers are due: no
  fire, a bounded number of log lines, and the triggers come back when the file is fixed.
- A user's trigger file keeps its mode (and owner, as root) through an API edit; a file the
  gateway creates is 0600.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format, struct_pb2

from codex_gateway.v1 import status_pb2, triggers_pb2
from gateway.automation.scheduler import MAX_RETRY_AFTER, Scheduler
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.gateway.test_triggers import SteppedClock, file_triggers
from tests.harness import RunningGateway, running_bridge, running_gateway
from tests.hostile.test_hardening_triggers import until, with_triggers

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
EVERY5 = {
    "id": "every5",
    "prompt_text": "tick",
    "schedule": {"mode": "interval", "interval_minutes": 5},
    "created_at": START.isoformat(),
}


@pytest.fixture
def trigger_config(config_for: Callable[..., Config], tmp_path: Path) -> Config:
    return with_triggers(config_for(codex_bin=AGENTS_DIR / "echo_agent.py"), tmp_path)


def write_triggers(config: Config, *entries: dict[str, Any]) -> Path:
    path = config.triggers.default_file
    path.write_text(json.dumps({"triggers": list(entries)}))
    return path


class HeldReload:
    """Holds the first reload's worker thread after it has read the file, until released.

    Two reloads' threads finish in an order only the OS decides; there is no real way to make
    the older one finish last on demand, so the scheduler's `_load` is wrapped (the reading
    itself is the real one) and the test releases it once the newer reload has been applied.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.read = threading.Event()
        self.release = threading.Event()
        self._load = scheduler._load
        scheduler._load = self  # type: ignore[method-assign,assignment]

    def __call__(self, *args: Any) -> Any:
        result = self._load(*args)
        if not self.read.is_set():
            self.read.set()
            self.release.wait(30)
        return result


async def test_a_stale_reload_does_not_rearm_a_trigger_disabled_meanwhile(
    trigger_config: Config,
) -> None:
    path = write_triggers(trigger_config, EVERY5)
    clock = SteppedClock(START + timedelta(minutes=4))
    async with running_gateway(trigger_config, clock=clock) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        held = HeldReload(scheduler)
        stale = asyncio.create_task(scheduler.reload(path))  # reads: enabled
        await asyncio.to_thread(held.read.wait, 30)
        await scheduler.update(path, "every5", {"enabled": False})  # written and applied
        held.release.set()
        await stale
        assert scheduler.next_fires() == []
        clock.now = START + timedelta(minutes=10)
        assert await scheduler.fire_due() == []
        assert file_triggers(trigger_config)[0].get("last_attempt_at") is None


async def test_a_stale_reload_does_not_bring_back_the_time_before_a_fire(
    trigger_config: Config,
) -> None:
    path = write_triggers(trigger_config, EVERY5)
    clock = SteppedClock(START + timedelta(minutes=4))
    async with running_gateway(trigger_config, clock=clock) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        clock.now = START + timedelta(minutes=5)
        held = HeldReload(scheduler)
        stale = asyncio.create_task(scheduler.reload(path))  # reads: never fired
        await asyncio.to_thread(held.read.wait, 30)
        await asyncio.gather(*await scheduler.fire_due())
        fired = file_triggers(trigger_config)[0]["last_fired"]
        held.release.set()
        await stale
        assert await scheduler.fire_due() == []
        await scheduler.settle()
        assert file_triggers(trigger_config)[0]["last_fired"] == fired
        session = gw.gateway.store.resolve(file_triggers(trigger_config)[0]["gateway_session_id"])
        assert len(session.runs) == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"enabled": False}, id="disabled"),
        pytest.param({"last_fired": (START + timedelta(minutes=5)).isoformat()}, id="fired"),
        pytest.param(None, id="deleted"),
    ],
)
async def test_a_fire_rechecks_the_stored_entry(
    trigger_config: Config, change: dict[str, Any] | None
) -> None:
    path = write_triggers(trigger_config, EVERY5)
    clock = SteppedClock(START + timedelta(minutes=4))
    async with running_gateway(trigger_config, clock=clock) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        clock.now = START + timedelta(minutes=6)
        # Changed on disk after it was armed, before any reload saw it (the watcher's delay).
        if change is None:
            write_triggers(trigger_config)
        else:
            write_triggers(trigger_config, {**EVERY5, **change})
        before = path.read_bytes()
        tasks = await scheduler.fire_due()
        assert len(tasks) == 1
        await asyncio.gather(*tasks)
        assert path.read_bytes() == before  # not attempted, not even written
        assert await gw.gateway.store.listing(limit=10, since=None, include_secure=True) == []


def scheduler_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gateway.automation.scheduler"]


def make_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def make_over_cap(path: Path) -> None:
    path.write_text(json.dumps({"triggers": [EVERY5], "pad": "x" * 20_000}))


@pytest.mark.parametrize("breaks", [make_fifo, make_over_cap], ids=["fifo", "over-cap"])
async def test_a_broken_file_with_a_due_trigger_does_not_spin(
    config_for: Callable[..., Config],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    breaks: Callable[[Path], None],
) -> None:
    config = with_triggers(
        config_for(codex_bin=AGENTS_DIR / "echo_agent.py"), tmp_path, max_file_bytes=8192
    )
    path = write_triggers(config, EVERY5)
    clock = SteppedClock(START + timedelta(minutes=4))
    caplog.set_level(logging.INFO)
    async with running_gateway(config, clock=clock) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        clock.now = START + timedelta(minutes=5)
        breaks(path)  # armed and due, then the file breaks before any reload sees it
        fires = 0
        for _ in range(50):  # what the scheduler's loop would do, as fast as it can
            tasks = await scheduler.fire_due()
            fires += len(tasks)
            await asyncio.gather(*tasks)
        assert fires <= 1
        assert len(scheduler_records(caplog)) <= 3, [
            r.getMessage() for r in scheduler_records(caplog)
        ]
        assert scheduler.next_fires() == []
        _, files = scheduler.status()
        assert files[0][2] is not None  # the error is reported
        await asyncio.wait_for(gw.stub.Health(status_pb2.HealthRequest()), 5)
        path.unlink()
        write_triggers(config, EVERY5)  # fixed
        await scheduler.reload()
        assert [t.id for _, _, t in scheduler.next_fires()] == ["every5"]
        clock.now += MAX_RETRY_AFTER  # past any hold-back
        await asyncio.gather(*await scheduler.fire_due())
        assert file_triggers(config)[0]["last_status"] == "success"


async def test_a_broken_file_does_not_spin_the_running_loop(
    config_for: Callable[..., Config], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = with_triggers(
        config_for(codex_bin=AGENTS_DIR / "echo_agent.py"), tmp_path, max_file_bytes=8192
    )
    path = write_triggers(config, EVERY5)
    clock = SteppedClock(START + timedelta(minutes=4))
    caplog.set_level(logging.INFO)
    async with running_gateway(config, clock=clock, background=True) as gw:
        scheduler = gw.gateway.scheduler
        await until(_async(lambda: bool(scheduler.next_fires())), "the trigger armed")
        clock.now = START + timedelta(minutes=6)  # due; the next reload wakes the loop
        make_over_cap(path)
        await until(_async(lambda: scheduler.status()[1][0][2] is not None), "the error")
        counted = len(scheduler_records(caplog))
        await asyncio.sleep(1.5)
        assert len(scheduler_records(caplog)) - counted <= 2
        await asyncio.wait_for(gw.stub.Health(status_pb2.HealthRequest()), 5)  # responsive
        write_triggers(config, EVERY5)  # fixed: armed again, and fires
        await until(
            _async(lambda: file_triggers(config)[0].get("last_status") == "success"), "a fire"
        )


def _async(check: Callable[[], bool]) -> Callable[[], Any]:
    async def run() -> bool:
        return check()

    return run


# -- the mode and owner of trigger files the gateway rewrites -----------------------------------


@pytest.fixture
async def api(trigger_config: Config) -> AsyncIterator[tuple[RunningGateway, httpx.AsyncClient]]:
    async with (
        running_gateway(trigger_config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
    ):
        yield gw, client


async def patch(protocol: str, gw: RunningGateway, client: httpx.AsyncClient) -> None:
    if protocol == "rest":
        answer = await client.patch("/triggers/every5", json={"title": "edited"})
        assert answer.status_code == 200, answer.text
    else:
        struct = struct_pb2.Struct()
        struct.update({"title": "edited"})
        await gw.stub.UpdateTrigger(
            triggers_pb2.UpdateTriggerRequest(trigger_id="every5", patch=struct)
        )


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o664])
async def test_a_users_trigger_file_keeps_its_mode(
    api: tuple[RunningGateway, httpx.AsyncClient],
    trigger_config: Config,
    protocol: str,
    mode: int,
) -> None:
    gw, client = api
    path = write_triggers(trigger_config, EVERY5)
    path.chmod(mode)
    await patch(protocol, gw, client)
    assert file_triggers(trigger_config)[0]["title"] == "edited"
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_trigger_file_owned_by_another_user_keeps_its_owner(
    api: tuple[RunningGateway, httpx.AsyncClient], trigger_config: Config, protocol: str
) -> None:
    gw, client = api
    path = write_triggers(trigger_config, EVERY5)
    os.chown(path, 4321, 4322)
    path.chmod(0o644)
    await patch(protocol, gw, client)
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (4321, 4322, 0o644)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_trigger_file_the_gateway_creates_is_private(
    api: tuple[RunningGateway, httpx.AsyncClient], trigger_config: Config, protocol: str
) -> None:
    gw, client = api
    path = trigger_config.triggers.default_file
    assert not path.exists()
    if protocol == "rest":
        answer = await client.post("/triggers", json=EVERY5)
        assert answer.status_code == 200, answer.text
    else:
        await gw.stub.CreateTriggers(triggers_pb2.CreateTriggersRequest(triggers=_value(EVERY5)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == os.geteuid()


def _value(payload: dict[str, Any]) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(payload, value)
    return value


# -- the scheduler's own writes stay under the file's cap ---------------------------------------


async def test_a_long_run_error_is_recorded_short(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    config = with_triggers(
        config_for(codex_bin=AGENTS_DIR / "echo_agent.py"), tmp_path, max_file_bytes=8192
    )
    long_cwd = "missing/" + "d" * 3000  # the run fails naming it: a long error message
    write_triggers(config, {**EVERY5, "cwd": long_cwd})
    clock = SteppedClock(START + timedelta(minutes=4))
    async with running_gateway(config, clock=clock) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        clock.now = START + timedelta(minutes=5)
        await asyncio.gather(*await scheduler.fire_due())
        stored = file_triggers(config)[0]
        assert stored["last_status"] == "error"
        assert len(stored["last_error"]) <= 301
        assert config.triggers.default_file.stat().st_size <= 8192
