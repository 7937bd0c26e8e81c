"""Hardening of triggers, the scheduler, the files the gateway opens and the background loops
(issue 12: findings 1, 5, 13, 15 and 18), over gRPC and REST against real gateways.

- Dates at the edges of the range, in every date field a trigger carries: 400 naming the field
  over the API; in a file on disk, skipped and reported in /status; never an exception in a loop.
- A background loop that raises is logged once and restarted; the gateway goes on serving.
- FIFOs, sockets, devices, directories, symlinks and huge files as trigger files, lock files,
  discovered triggers.json, watched files and the watcher's prompt template: refused or ignored,
  and /health answers meanwhile.
- 10,000 cron triggers load, list and schedule while health keeps answering (no wall times).
- A 2,000-component trigger_file and deeply nested JSON: 400, no traceback in the log.
- timeout_ms and numeric ids, which arrive as doubles through google.protobuf.Value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_gateway.v1 import status_pb2, triggers_pb2
from gateway.automation.triggers import DATE_FIELDS, normalise
from gateway.config import Config, TriggerConfig, WatcherConfig
from gateway.errors import InvalidRequest
from gateway.supervisor import supervise
from tests.fakes import AGENTS_DIR
from tests.faults.spawned import gateway_env, spawn, until_serving
from tests.gateway.test_limits import error_info
from tests.harness import RunningGateway, running_bridge, running_gateway

DAILY = {"mode": "daily", "time": "14:00", "timezone": "America/Chicago"}
EDGES_OUT_OF_RANGE = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59.999999-23:59",
    "0001-01-01T00:00:00.000001+00:01",
]
EDGES_IN_RANGE = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59+14:00",
]
# Every date a trigger carries: its own, and its schedule's.
DATE_PATHS = [*DATE_FIELDS, "schedule.at"]


def entry_with(field: str, value: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"prompt_text": "x", "schedule": dict(DAILY), **extra}
    if field == "schedule.at":
        entry["schedule"] = {"mode": "once", "at": value}
    else:
        entry[field] = value
    return entry


def with_triggers(config: Config, tmp_path: Path, **caps: Any) -> Config:
    trigger_file = tmp_path / "triggers" / "main.json"
    trigger_file.parent.mkdir(exist_ok=True)
    return dataclasses.replace(
        config,
        triggers=TriggerConfig(
            default_file=trigger_file,
            roots=(trigger_file.parent,),
            discovery_dir=tmp_path / "codex-sessions",
            **caps,
        ),
    )


@pytest.fixture
def trigger_config(config_for: Callable[..., Config], tmp_path: Path) -> Config:
    return with_triggers(config_for(codex_bin=AGENTS_DIR / "echo_agent.py"), tmp_path)


@pytest.fixture
async def api(trigger_config: Config) -> AsyncIterator[tuple[RunningGateway, httpx.AsyncClient]]:
    async with (
        running_gateway(trigger_config, background=True) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
    ):
        yield gw, client


def value_of(payload: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(payload, value)
    return value


def struct_of(payload: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(payload)
    return struct


async def grpc_refusal(call: Any) -> str:
    """The field an INVALID_ARGUMENT names."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    info, _ = error_info(caught.value)
    return str(info.metadata["field"])


async def healthy(gw: RunningGateway, client: httpx.AsyncClient | None = None) -> None:
    await asyncio.wait_for(gw.stub.Health(status_pb2.HealthRequest()), 5)
    if client is not None:
        assert (await client.get("/health")).json() == {"status": "ok"}


async def triggers_status(gw: RunningGateway, path: Path) -> status_pb2.TriggerFileStatus:
    status = await gw.stub.GetStatus(status_pb2.GetStatusRequest())
    (found,) = [f for f in status.triggers.files if f.path == str(path)]
    return found


async def until(condition: Callable[[], Any], what: str, timeout_s: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if await condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.exc_info is not None]
    assert not noisy, [r.getMessage() for r in noisy]


# -- finding 1: dates at the edges of the range --------------------------------------------------


@pytest.mark.parametrize("value", EDGES_OUT_OF_RANGE)
@pytest.mark.parametrize("field", DATE_PATHS)
async def test_an_edge_date_is_400_naming_the_field_on_both_protocols(
    api: tuple[RunningGateway, httpx.AsyncClient], field: str, value: str
) -> None:
    gw, client = api
    for body, named in (
        (entry_with(field, value), field),
        ([entry_with(field, value)], f"triggers[0].{field}"),
    ):
        response = await client.post("/triggers", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["field"] == named
        assert (
            await grpc_refusal(
                gw.stub.CreateTriggers(triggers_pb2.CreateTriggersRequest(triggers=value_of(body)))
            )
            == named
        )
    assert (
        await client.post("/triggers", json={"id": "t", **entry_with("title", "ok")})
    ).is_success
    patch = entry_with(field, value)
    del patch["prompt_text"]
    if field == "created_at":
        # A trigger's creation time is the gateway's: a patch of it is ignored, whatever it is.
        assert (await client.patch("/triggers/t", json=patch)).status_code == 200
    else:
        response = await client.patch("/triggers/t", json=patch)
        assert response.status_code == 400 and response.json()["field"] == field, response.text
        assert (
            await grpc_refusal(
                gw.stub.UpdateTrigger(
                    triggers_pb2.UpdateTriggerRequest(trigger_id="t", patch=struct_of(patch))
                )
            )
            == field
        )
    await asyncio.sleep(0.3)  # a scheduler reload would have run by now
    await healthy(gw, client)
    (stored,) = json.loads(gw.gateway.config.triggers.default_file.read_text())["triggers"]
    assert value not in json.dumps(stored)


@pytest.mark.parametrize("value", EDGES_IN_RANGE)
@pytest.mark.parametrize("field", DATE_PATHS)
async def test_an_edge_date_inside_the_range_is_taken_and_scheduled(
    api: tuple[RunningGateway, httpx.AsyncClient], field: str, value: str
) -> None:
    gw, client = api
    body = entry_with(field, value, id="edge")
    if field != "schedule.at":
        body["schedule"] = {"mode": "interval", "interval_minutes": 1}
    response = await client.post("/triggers", json=body)
    assert response.status_code == 200, response.text
    listed = await client.get("/triggers")
    assert [t["id"] for t in listed.json()["triggers"]] == ["edge"]
    await asyncio.sleep(0.3)
    await healthy(gw, client)


def file_with_edges() -> list[dict[str, Any]]:
    entries = [{"id": "good", "prompt_text": "x", "schedule": DAILY}]
    for field in DATE_PATHS:
        for n, value in enumerate(EDGES_OUT_OF_RANGE):
            entries.append(entry_with(field, value, id=f"bad-{field}-{n}"))
    return entries


async def test_edge_dates_in_a_file_on_disk_are_skipped_and_reported(
    trigger_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    path = trigger_config.triggers.default_file
    entries = file_with_edges()
    path.write_text(json.dumps({"triggers": entries}))
    async with running_gateway(trigger_config, background=True) as gw:
        await until(lambda: _has_file(gw, path), "the file's status")
        found = await triggers_status(gw, path)
        assert found.triggers == 1 and found.skipped == len(entries) - 1
        assert len(found.problems) == min(20, len(entries) - 1)
        for field in DATE_FIELDS:
            assert any(field in problem for problem in found.problems), field
        assert [t.id for _, _, t in gw.gateway.scheduler.next_fires()] == ["good"]
        listed = await gw.stub.ListTriggers(triggers_pb2.ListTriggersRequest())
        assert [t.id for t in listed.triggers] == ["good"]
        await healthy(gw)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def _has_file(gw: RunningGateway, path: Path) -> bool:
    status = await gw.stub.GetStatus(status_pb2.GetStatusRequest())
    return any(f.path == str(path) for f in status.triggers.files)


async def test_a_gateway_process_with_edge_dates_on_disk_starts_and_stays_up(
    tmp_path: Path,
) -> None:
    """The reported failure: every start died in the scheduler's first reload."""
    env = gateway_env(tmp_path)
    trigger_file = Path(env["CODEX_GATEWAY_TRIGGER_FILE"])
    trigger_file.parent.mkdir(parents=True)
    trigger_file.write_text(json.dumps({"triggers": file_with_edges()}))
    gateway = spawn(env, tmp_path / "gateway.log")
    try:
        await until_serving(gateway)
        async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, timeout=10) as client:
            for _ in range(10):  # the scheduler has reloaded (and would have died) by now
                await asyncio.sleep(0.2)
                assert gateway.running(), gateway.log_tail()
            status = (await client.get("/status")).json()
            (found,) = [f for f in status["triggers"]["files"] if f["path"] == str(trigger_file)]
            assert found["triggers"] == 1 and found["skipped"] == len(file_with_edges()) - 1
            created = await client.post(
                "/triggers", json=entry_with(DATE_FIELDS[1], "9999-12-31T23:59:59-14:00")
            )
            assert created.status_code == 400
            await asyncio.sleep(0.5)
            assert gateway.running(), gateway.log_tail()
            assert (await client.get("/health")).json() == {"status": "ok"}
    finally:
        assert gateway.stop() == 0, gateway.log_tail()


_OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_SCHEDULES = st.sampled_from(
    [
        {"mode": "interval", "interval_minutes": 1},
        {"mode": "interval", "interval_minutes": 525_600 * 5000},
        {"mode": "daily", "time": "23:59", "timezone": "Pacific/Kiritimati"},
        {"mode": "cron", "cron": "0 0 29 2 *", "timezone": "Pacific/Pago_Pago"},
    ]
)
_NOWS = st.sampled_from(
    [
        datetime(2026, 12, 6, tzinfo=UTC),
        datetime(1, 1, 1, 12, tzinfo=UTC),
        datetime(9999, 12, 31, 12, tzinfo=UTC),
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    moment=st.datetimes(min_value=datetime.min, max_value=datetime.max),
    offset=_OFFSETS | st.none(),
    field=st.sampled_from(DATE_PATHS),
    schedule=_SCHEDULES,
    now=_NOWS,
)
def test_property_any_date_with_any_offset_is_taken_or_named_never_raised(
    moment: datetime,
    offset: timezone | None,
    field: str,
    schedule: dict[str, Any],
    now: datetime,
) -> None:
    text = moment.replace(tzinfo=offset).isoformat()
    raw = entry_with(field, text)
    if field != "schedule.at":
        raw["schedule"] = schedule
    try:
        trigger = normalise(raw)
    except InvalidRequest as exc:
        assert exc.field == field
        return
    fire = trigger.next_fire(now)  # never raises, whatever the dates
    assert fire is None or fire.tzinfo is not None


# -- the background loops ------------------------------------------------------------------------


class BrokenClock:
    """The scheduler's clock, raising while `broken`: a real fault at the loop's own seam."""

    def __init__(self) -> None:
        self.broken = True
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        if self.broken:
            raise OverflowError("date value out of range")
        return datetime.now(UTC)


async def test_a_failing_scheduler_loop_is_logged_once_and_restarted(
    trigger_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    path = trigger_config.triggers.default_file
    path.write_text(
        json.dumps(
            {
                "triggers": [
                    {
                        "id": "now",
                        "prompt_text": "x",
                        "schedule": {"mode": "once", "at": "2020-01-01T00:00:00Z"},
                    }
                ]
            }
        )
    )
    clock = BrokenClock()
    caplog.set_level(logging.WARNING, logger="gateway.supervisor")
    async with running_gateway(trigger_config, clock=clock, background=True) as gw:
        failures = lambda: [r for r in caplog.records if r.name == "gateway.supervisor"]  # noqa: E731
        await until(_async(lambda: len(failures()) >= 2), "two failures of the loop")
        await healthy(gw)  # serving all along
        with_trace = [r for r in failures() if r.exc_info is not None]
        assert len(with_trace) == 1 and "scheduler" in with_trace[0].getMessage()
        assert all(r.exc_info is None for r in failures()[1:])
        clock.broken = False
        # Restarted, it reloads and fires the overdue one-shot, which then leaves the file.
        await until(
            _async(lambda: json.loads(path.read_text())["triggers"] == []),
            "the restarted scheduler to fire",
        )
        await healthy(gw)


def _async(check: Callable[[], bool]) -> Callable[[], Any]:
    async def run() -> bool:
        return check()

    return run


async def test_supervise_restarts_with_backoff_and_stops_on_stop() -> None:
    starts: list[float] = []
    stop = asyncio.Event()

    async def flaky(stop: asyncio.Event) -> None:
        starts.append(asyncio.get_running_loop().time())
        if len(starts) < 3:
            raise RuntimeError("boom")
        await stop.wait()

    task = asyncio.create_task(supervise("flaky", flaky, stop, initial_backoff_s=0.05))
    await until(_async(lambda: len(starts) == 3), "the third start")
    assert starts[2] - starts[1] >= starts[1] - starts[0]  # the backoff doubles
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_supervise_returns_when_stopped_during_its_backoff() -> None:
    stop = asyncio.Event()

    async def broken(stop: asyncio.Event) -> None:
        raise ValueError("always")

    task = asyncio.create_task(supervise("broken", broken, stop, initial_backoff_s=60))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 5)


# -- finding 5: files that are not regular files -------------------------------------------------


_SOCKETS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _SOCKETS:
        _SOCKETS.pop().close()


def plant(kind: str, path: Path, outside: Path) -> None:
    """Put a `kind` of non-regular file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        _SOCKETS.append(server)
        # Bound at a short path, then moved: a socket's path is limited to 107 bytes, and a
        # test's tmp path can be longer (under pytest-xdist's workers).
        with tempfile.TemporaryDirectory(prefix="s-", dir="/tmp") as short:
            server.bind(f"{short}/s")
            Path(short, "s").replace(path)
    elif kind == "symlink-to-fifo":
        os.mkfifo(path.parent / f".{path.name}.fifo")
        path.symlink_to(path.parent / f".{path.name}.fifo")
    elif kind == "symlink-out-of-roots":
        outside.mkdir(parents=True, exist_ok=True)
        (outside / "secret.json").write_text('{"triggers": []}')
        path.symlink_to(outside / "secret.json")
    elif kind == "device":
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD")
    elif kind == "directory":
        path.mkdir()
    elif kind == "huge":
        with path.open("wb") as handle:
            handle.truncate(8 * 1024**3)
    else:
        raise AssertionError(kind)


KINDS = ["fifo", "socket", "symlink-to-fifo", "symlink-out-of-roots", "device", "directory", "huge"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_trigger_file_that_is_not_a_regular_file_is_400_and_nothing_blocks(
    api: tuple[RunningGateway, httpx.AsyncClient], tmp_path: Path, kind: str
) -> None:
    gw, client = api
    plant(kind, gw.gateway.config.triggers.default_file.parent / "odd.json", tmp_path / "out")
    body = {"prompt_text": "x", "schedule": DAILY}
    for method, url, kwargs in (
        ("GET", "/triggers", {}),
        ("GET", "/triggers/x", {}),
        ("POST", "/triggers", {"json": body}),
        ("PATCH", "/triggers/x", {"json": {"enabled": False}}),
        ("DELETE", "/triggers/x", {}),
    ):
        response = await asyncio.wait_for(
            client.request(method, url, params={"trigger_file": "odd.json"}, **kwargs), 10
        )
        assert response.status_code == 400, (method, url, response.text)
        assert response.json()["field"] == "trigger_file"
        assert "odd.json" in response.json()["error"] or kind == "symlink-out-of-roots"
        await healthy(gw, client)
    for call in (
        gw.stub.ListTriggers(triggers_pb2.ListTriggersRequest(trigger_file="odd.json")),
        gw.stub.GetTrigger(triggers_pb2.GetTriggerRequest(trigger_id="x", trigger_file="odd.json")),
        gw.stub.CreateTriggers(
            triggers_pb2.CreateTriggersRequest(trigger_file="odd.json", triggers=value_of(body))
        ),
        gw.stub.UpdateTrigger(
            triggers_pb2.UpdateTriggerRequest(
                trigger_id="x", trigger_file="odd.json", patch=struct_of({"enabled": False})
            )
        ),
        gw.stub.DeleteTrigger(
            triggers_pb2.DeleteTriggerRequest(trigger_id="x", trigger_file="odd.json")
        ),
    ):
        assert await asyncio.wait_for(grpc_refusal(call), 10) == "trigger_file"


@pytest.mark.parametrize(
    "kind", ["fifo", "socket", "symlink-to-fifo", "device", "directory", "huge"]
)
async def test_scheduled_trigger_files_that_are_not_regular_are_reported_not_waited_on(
    trigger_config: Config, tmp_path: Path, kind: str
) -> None:
    """The configured file, and a discovered <sessions>/*/triggers.json."""
    config = dataclasses.replace(
        trigger_config,
        triggers=dataclasses.replace(trigger_config.triggers, max_file_bytes=1024 * 1024),
    )
    default = config.triggers.default_file
    assert config.triggers.discovery_dir is not None
    discovered = config.triggers.discovery_dir / "session-a" / "triggers.json"
    plant(kind, default, tmp_path / "out")
    plant(kind, discovered, tmp_path / "out2")
    async with running_gateway(config, background=True) as gw:
        for path in (default, discovered.resolve()):
            await until(lambda path=path: _has_file(gw, path), f"the status of {path}")
            found = await triggers_status(gw, path)
            assert found.error and found.triggers == 0, found
        await healthy(gw)


async def test_a_fifo_as_the_lock_file_is_400_not_a_hang(
    api: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    gw, client = api
    default = gw.gateway.config.triggers.default_file
    os.mkfifo(default.parent / f".{default.name}.lock")
    response = await asyncio.wait_for(
        client.post("/triggers", json={"prompt_text": "x", "schedule": DAILY}), 10
    )
    assert response.status_code == 400 and response.json()["field"] == "trigger_file"
    await healthy(gw, client)


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    folder = tmp_path / "watched"
    folder.mkdir()
    return folder


async def test_the_watcher_ignores_what_is_not_a_regular_file_and_keeps_serving(
    config_for: Callable[..., Config], tmp_path: Path, watched: Path
) -> None:
    config = config_for(
        codex_bin=AGENTS_DIR / "echo_agent.py",
        watcher=WatcherConfig(paths=(watched,), pattern="**", debounce_ms=100),
    )
    async with running_gateway(config, background=True) as gw:
        await asyncio.sleep(0.5)  # the watch is up
        os.mkfifo(watched / "a.fifo")
        plant("socket", watched / "b.sock", tmp_path)
        os.mkfifo(tmp_path / "elsewhere.fifo")
        (watched / "c.link").symlink_to(watched / "a.fifo")
        (watched / "d.out").symlink_to(tmp_path / "elsewhere.fifo")
        await asyncio.sleep(0.3)
        with (watched / "huge.txt").open("wb") as handle:
            handle.truncate(8 * 1024**3)

        async def one_run() -> bool:
            return gw.gateway.watcher.status.runs_started >= 1

        await until(one_run, "the run for the huge file")
        await asyncio.sleep(0.5)  # anything else would have started by now
        await healthy(gw)
        status = gw.gateway.watcher.status
        assert status.runs_started == 1, status
        assert status.last_event is not None and status.last_event["relative"] == "huge.txt"
        await gw.gateway.runner.shutdown(5)
    sessions = list((config.session_dirs[0]).glob("session-*/meta.json"))
    assert len(sessions) == 1
    prompt = json.loads(sessions[0].read_text())["runs"][0]
    assert "(8589934592 bytes)" in json.dumps(prompt)  # described from its head alone


@pytest.mark.parametrize("kind", ["fifo", "directory", "huge"])
async def test_a_watcher_prompt_template_that_is_not_a_regular_file_falls_back(
    config_for: Callable[..., Config], tmp_path: Path, watched: Path, kind: str
) -> None:
    template = tmp_path / "template.md"
    plant(kind, template, tmp_path / "out")
    config = config_for(
        codex_bin=AGENTS_DIR / "echo_agent.py",
        watcher=WatcherConfig(paths=(watched,), pattern="**", prompt_file=template),
    )
    async with running_gateway(config, background=True) as gw:

        async def reported() -> bool:
            return gw.gateway.watcher.status.last_error is not None

        await until(reported, "the template's error")
        assert "using the default" in str(gw.gateway.watcher.status.last_error)
        await healthy(gw)


# -- finding 13: 10,000 triggers never hold the loop ---------------------------------------------


def many_cron_triggers(count: int) -> dict[str, Any]:
    return {
        "triggers": [
            {
                "id": f"cron-{n}",
                "prompt_text": "x",
                "schedule": {
                    "mode": "cron",
                    "cron": f"{n % 60} {n % 24} * * *",
                    "timezone": "Europe/Paris",
                },
                "created_at": "2026-01-01T00:00:00Z",
            }
            for n in range(count)
        ]
    }


async def answered_while(
    task: asyncio.Task[Any], gw: RunningGateway, client: httpx.AsyncClient
) -> int:
    """How many health checks (gRPC and REST alternately) were answered before `task` ended."""
    answered = 0
    while not task.done():
        await healthy(gw) if answered % 2 else await client.get("/health")
        if not task.done():
            answered += 1
    await task
    return answered


# What this pins is the loop answering health checks while the work goes on, not how long the
# work takes (BENCHMARKS.md row 16 measures that). Creating the 2,000 took over 30 s once in a
# full clean-clone run (2-4 s alone, and in every other full run); the cause is not known yet.
WORK_TIMEOUT_S = 150


@pytest.mark.timeout(WORK_TIMEOUT_S + 30)
async def test_ten_thousand_cron_triggers_load_list_and_schedule_while_health_answers(
    api: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    gw, client = api
    path = gw.gateway.config.triggers.default_file
    path.write_text(json.dumps(many_cron_triggers(10_000)))
    scheduler = gw.gateway.scheduler
    loading = asyncio.create_task(scheduler.reload(path))
    assert await answered_while(loading, gw, client) >= 1
    assert len(scheduler.next_fires()) == 10_000
    listing = asyncio.create_task(client.get("/triggers", timeout=WORK_TIMEOUT_S))
    assert await answered_while(listing, gw, client) >= 1
    assert len(listing.result().json()["triggers"]) == 10_000
    creating = asyncio.create_task(
        client.post("/triggers", json=many_cron_triggers(2_000)["triggers"], timeout=WORK_TIMEOUT_S)
    )
    assert await answered_while(creating, gw, client) >= 1
    assert creating.result().status_code == 200, creating.result().text[:300]


@pytest.mark.parametrize(
    ("caps", "content"),
    [
        pytest.param({"max_per_file": 10}, many_cron_triggers(11), id="too-many-triggers"),
        pytest.param({"max_file_bytes": 4096}, many_cron_triggers(40), id="too-many-bytes"),
    ],
)
async def test_a_trigger_file_over_its_caps_is_refused_and_reported(
    config_for: Callable[..., Config], tmp_path: Path, caps: dict[str, int], content: Any
) -> None:
    config = with_triggers(config_for(codex_bin=AGENTS_DIR / "echo_agent.py"), tmp_path, **caps)
    path = config.triggers.default_file
    path.write_text(json.dumps(content))
    async with running_gateway(config, background=True) as gw:
        await until(lambda: _has_file(gw, path), "the file's status")
        found = await triggers_status(gw, path)
        assert found.error and found.triggers == 0
        assert await grpc_refusal(gw.stub.ListTriggers(triggers_pb2.ListTriggersRequest())) == (
            "trigger_file"
        )
        path.write_text(json.dumps(many_cron_triggers(2)))
        refused = many_cron_triggers(12)["triggers"]
        assert await grpc_refusal(
            gw.stub.CreateTriggers(triggers_pb2.CreateTriggersRequest(triggers=value_of(refused)))
        ) in ("triggers", "trigger_file")


# -- finding 15: deep paths, deep JSON -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("a/" * 2000 + "t.json", id="2000-components"),
        pytest.param("./" * 2000 + "t.json", id="2000-dots"),
        pytest.param("x" * 5000 + ".json", id="5000-characters"),
        pytest.param("a/../" * 1000 + "t.json", id="1000-up-and-down"),
    ],
)
async def test_a_deep_or_long_trigger_file_is_400_without_a_traceback(
    api: tuple[RunningGateway, httpx.AsyncClient], raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    gw, client = api
    body = {"prompt_text": "x", "schedule": DAILY}
    for method, kwargs in (("GET", {}), ("POST", {"json": body})):
        response = await client.request(method, "/triggers", params={"trigger_file": raw}, **kwargs)
        assert response.status_code == 400, response.text[:300]
        assert response.json()["field"] == "trigger_file" and len(response.text) < 1000
    assert (
        await grpc_refusal(
            gw.stub.CreateTriggers(
                triggers_pb2.CreateTriggersRequest(trigger_file=raw, triggers=value_of(body))
            )
        )
        == "trigger_file"
    )
    no_tracebacks(caplog)
    assert not (gw.gateway.config.triggers.default_file.parent / "a").exists()


async def test_deeply_nested_json_in_a_trigger_file_is_reported_not_raised(
    api: tuple[RunningGateway, httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    gw, client = api
    path = gw.gateway.config.triggers.default_file
    entry = {"id": "deep", "prompt_text": "x", "schedule": DAILY}
    path.write_text(
        json.dumps({"triggers": [entry]})[:-2] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    await gw.gateway.scheduler.reload(path)
    found = await triggers_status(gw, path)
    assert found.error and "nested deeper" in found.error and len(found.error) < 500
    response = await client.get("/triggers")
    assert response.status_code == 400 and response.json()["field"] == "trigger_file"
    no_tracebacks(caplog)
    await healthy(gw, client)


# -- finding 18: numbers through google.protobuf.Value -------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({"timeout_ms": 60000}, {"timeout_ms": "60000"}, id="timeout"),
        pytest.param({"max_duration_ms": 1500}, {"timeout_ms": "1500"}, id="max-duration"),
        pytest.param({"id": 42}, {"id": "42"}, id="numeric-id"),
        pytest.param({"id": 9007199254740992}, {"id": "9007199254740992"}, id="id-2-53"),
    ],
)
async def test_whole_numbers_arrive_as_doubles_and_are_taken(
    api: tuple[RunningGateway, httpx.AsyncClient], extra: dict[str, Any], expected: dict[str, str]
) -> None:
    gw, client = api
    body = {"id": "n", "prompt_text": "x", "schedule": DAILY, **extra}
    response = await client.post("/triggers", json=body)
    assert response.status_code == 200, response.text
    shown = response.json()["trigger"]
    assert {k: str(shown[k]) for k in expected} == expected
    created = await gw.stub.CreateTriggers(
        triggers_pb2.CreateTriggersRequest(triggers=value_of(body))
    )
    assert {k: str(getattr(created.trigger, k)) for k in expected} == expected
    if "timeout_ms" in extra:
        patched = await client.patch("/triggers/n", json={"timeout_ms": 120000})
        assert (
            patched.status_code == 200 and str(patched.json()["trigger"]["timeout_ms"]) == "120000"
        )
        updated = await gw.stub.UpdateTrigger(
            triggers_pb2.UpdateTriggerRequest(trigger_id="n", patch=struct_of({"timeout_ms": 5000}))
        )
        assert updated.trigger.timeout_ms == 5000


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param({"timeout_ms": 1.5}, "timeout_ms", id="fractional-timeout"),
        pytest.param({"timeout_ms": -1}, "timeout_ms", id="negative-timeout"),
        pytest.param({"timeout_ms": 1e300}, "timeout_ms", id="huge-timeout"),
        pytest.param({"timeout_ms": "60000"}, "timeout_ms", id="string-timeout"),
        pytest.param({"max_duration_ms": 0.5}, "max_duration_ms", id="fractional-max-duration"),
        pytest.param({"id": 4.2}, "id", id="fractional-id"),
        pytest.param({"id": 1e300}, "id", id="huge-id"),
        pytest.param({"id": True}, "id", id="boolean-id"),
    ],
)
async def test_other_numbers_are_400_naming_the_field(
    api: tuple[RunningGateway, httpx.AsyncClient], extra: dict[str, Any], field: str
) -> None:
    gw, client = api
    body = {"prompt_text": "x", "schedule": DAILY, **extra}
    response = await client.post("/triggers", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert (
        await grpc_refusal(
            gw.stub.CreateTriggers(triggers_pb2.CreateTriggersRequest(triggers=value_of(body)))
        )
        == field
    )
    if field != "id":
        await client.post("/triggers", json={"id": "p", "prompt_text": "x", "schedule": DAILY})
        patched = await client.patch("/triggers/p", json=extra)
        assert patched.status_code == 400 and patched.json()["field"] == field


async def test_a_trigger_nested_too_deep_for_its_file_is_400_on_both_protocols(
    api: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    """What the API accepts, the file must be able to hold: a trigger file over MAX_JSON_DEPTH
    would be refused on its next read, every trigger in it with it."""
    gw, client = api
    nested: list[Any] = []
    inner = nested
    for _ in range(35):
        inner.append([])
        inner = inner[0]
    body = {"prompt_text": "x", "schedule": DAILY, "extra": nested}
    response = await client.post("/triggers", json=body)
    assert response.status_code == 400 and response.json()["field"] == "trigger", response.text
    assert (
        await grpc_refusal(
            gw.stub.CreateTriggers(triggers_pb2.CreateTriggersRequest(triggers=value_of(body)))
        )
        == "trigger"
    )
    assert not gw.gateway.config.triggers.default_file.exists()


# -- finding 14, for triggers: the request env's allow-list at write time -----------------------


async def test_a_trigger_env_outside_the_allow_list_is_400_when_written_on_both_protocols(
    api: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    gw, client = api
    refused = {"prompt_text": "x", "schedule": DAILY, "env": {"MY_SETTING": "1"}}
    answer = await client.post("/triggers", json=refused)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "env" and "MY_SETTING" in answer.json()["error"]
    batch = await client.post("/triggers", json=[{**refused, "env": {"TASK_OK": "1"}}, refused])
    assert batch.status_code == 400 and batch.json()["field"] == "triggers[1].env", batch.text
    assert await grpc_refusal(
        gw.stub.CreateTriggers(triggers_pb2.CreateTriggersRequest(triggers=value_of(refused)))
    ) == ("env")
    taken = await client.post("/triggers", json={**refused, "id": "t1", "env": {"TASK_OK": "1"}})
    assert taken.status_code == 200, taken.text
    patched = await client.patch("/triggers/t1", json={"env": {"EDITOR": "vi"}})
    assert patched.status_code == 400 and patched.json()["field"] == "env", patched.text
    assert await grpc_refusal(
        gw.stub.UpdateTrigger(
            triggers_pb2.UpdateTriggerRequest(
                trigger_id="t1", patch=struct_of({"env": {"MY_SETTING": "1"}})
            )
        )
    ) == ("env")
