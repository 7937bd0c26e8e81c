"""Triggers: the CRUD API over gRPC and REST, trigger files on disk, and the scheduler firing
them (time stepped with an injected clock, plus one real fire of the real codex CLI)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2

from codex_gateway.v1 import triggers_pb2
from gateway.config import Config, TriggerConfig
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_bridge, running_gateway

DAILY = {"mode": "daily", "time": "14:00", "timezone": "America/Chicago"}


def with_triggers(config: Config, tmp_path: Path) -> Config:
    trigger_file = tmp_path / "triggers" / "main.json"
    trigger_file.parent.mkdir(exist_ok=True)
    return dataclasses.replace(
        config,
        triggers=TriggerConfig(
            default_file=trigger_file,
            roots=(trigger_file.parent,),
            discovery_dir=tmp_path / "codex-sessions",
        ),
    )


@pytest.fixture
def trigger_config(config_for: Callable[..., Config], tmp_path: Path) -> Config:
    return with_triggers(config_for(codex_bin=AGENTS_DIR / "echo_agent.py"), tmp_path)


@pytest.fixture
async def api(trigger_config: Config) -> AsyncIterator[tuple[RunningGateway, httpx.AsyncClient]]:
    async with (
        running_gateway(trigger_config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
    ):
        yield gw, client


def file_triggers(config: Config) -> list[dict[str, Any]]:
    return list(json.loads(config.triggers.default_file.read_text())["triggers"])


async def test_create_list_get_patch_delete_over_rest(
    api: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    gw, client = api
    created = await client.post(
        "/triggers",
        json={
            "id": "report",
            "title": "Daily",
            "prompt_text": "Run the report",
            "schedule": DAILY,
            "tags": ["r"],
        },
    )
    assert created.status_code == 200, created.text
    trigger = created.json()["trigger"]
    assert trigger["id"] == "report" and trigger["enabled"] is True and trigger["next_fire"]
    assert trigger["schedule"]["timezone"] == "America/Chicago"
    listed = (await client.get("/triggers")).json()
    assert listed["trigger_file"] == str(gw.gateway.config.triggers.default_file)
    assert [t["id"] for t in listed["triggers"]] == ["report"]
    assert (await client.get("/triggers/report")).json()["trigger"]["title"] == "Daily"
    patched = await client.patch("/triggers/report", json={"enabled": False})
    assert patched.status_code == 200 and patched.json()["trigger"]["enabled"] is False
    assert patched.json()["trigger"]["next_fire"] is None
    assert file_triggers(gw.gateway.config)[0]["enabled"] is False
    assert (await client.delete("/triggers/report")).json() == {"trigger_id": "report"}
    assert (await client.get("/triggers/report")).status_code == 404
    assert (await client.delete("/triggers/report")).status_code == 404


async def test_post_replaces_and_takes_batches(
    api: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    gw, client = api
    await client.post("/triggers", json={"id": "a", "prompt_text": "one", "schedule": DAILY})
    again = await client.post(
        "/triggers", json={"id": "a", "prompt_text": "two", "schedule": DAILY}
    )
    assert again.status_code == 200
    assert [t["prompt_text"] for t in file_triggers(gw.gateway.config)] == ["two"]
    batch = await client.post(
        "/triggers",
        json=[
            {
                "id": "b",
                "prompt_text": "x",
                "schedule": {"mode": "interval", "interval_minutes": 5},
            },
            {"prompt_text": "y", "schedule": {"cron": "*/15 * * * *"}},
        ],
    )
    assert batch.status_code == 200, batch.text
    ids = [t["id"] for t in batch.json()["triggers"]]
    assert ids[0] == "b" and ids[1]  # an id was given to the one without
    assert [t["id"] for t in file_triggers(gw.gateway.config)] == ["a", "b", ids[1]]
    wrapped = await client.post(
        "/triggers", json={"triggers": [{"id": "c", "prompt_text": "z", "schedule": DAILY}]}
    )
    assert wrapped.status_code == 200 and wrapped.json()["triggers"][0]["id"] == "c"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"schedule": DAILY}, "prompt_text", id="no-prompt"),
        pytest.param(
            {"prompt_text": "x", "schedule": {"mode": "daily", "time": "24:00"}},
            "schedule.time",
            id="bad-time",
        ),
        pytest.param(
            {
                "prompt_text": "x",
                "schedule": {"mode": "daily", "time": "9:00", "timezone": "Mars/Olympus"},
            },
            "schedule.timezone",
            id="bad-zone",
        ),
        pytest.param(
            {"prompt_text": "x", "schedule": {"mode": "weekly"}}, "schedule.mode", id="bad-mode"
        ),
        pytest.param(
            {"prompt_text": "x", "schedule": {"cron": "* * *"}}, "schedule.cron", id="bad-cron"
        ),
        pytest.param(
            {"prompt_text": "x", "schedule": {"mode": "interval", "interval_minutes": 0}},
            "schedule.interval_minutes",
            id="zero-interval",
        ),
        pytest.param(
            {"prompt_text": "x", "schedule": {"mode": "once", "at": "tomorrow"}},
            "schedule.at",
            id="bad-at",
        ),
        pytest.param(
            {"prompt_text": "x", "schedule": DAILY, "env": {"PATH": "/x"}}, "env", id="bad-env"
        ),
        pytest.param(
            {"prompt_text": "x", "schedule": DAILY, "cwd": "/etc"}, "cwd", id="cwd-escape"
        ),
        pytest.param(
            {"prompt_text": "x", "schedule": DAILY, "enabled": "yes"},
            "enabled",
            id="enabled-string",
        ),
        pytest.param(
            [{"prompt_text": "x", "schedule": DAILY}, {"prompt_text": "", "schedule": DAILY}],
            "triggers[1].prompt_text",
            id="batch-item",
        ),
    ],
)
async def test_validation_errors_are_400_naming_the_field(
    api: tuple[RunningGateway, httpx.AsyncClient], body: Any, field: str
) -> None:
    gw, client = api
    response = await client.post("/triggers", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert not gw.gateway.config.triggers.default_file.exists()


async def test_patch_is_validated_too(api: tuple[RunningGateway, httpx.AsyncClient]) -> None:
    _, client = api
    await client.post("/triggers", json={"id": "p", "prompt_text": "x", "schedule": DAILY})
    bad = await client.patch("/triggers/p", json={"prompt_text": "  "})
    assert bad.status_code == 400 and bad.json()["field"] == "prompt_text"
    bad = await client.patch("/triggers/p", json={"schedule": {"mode": "daily", "time": "7pm"}})
    assert bad.status_code == 400 and bad.json()["field"] == "schedule.time"
    assert (await client.patch("/triggers/missing", json={"enabled": False})).status_code == 404


async def test_trigger_file_outside_the_roots_is_refused_and_nothing_is_created(
    api: tuple[RunningGateway, httpx.AsyncClient], tmp_path: Path
) -> None:
    _, client = api
    target = tmp_path / "elsewhere" / "evil.json"
    for method, path, kwargs in (
        ("GET", "/triggers", {}),
        ("POST", "/triggers", {"json": {"prompt_text": "x", "schedule": DAILY}}),
        ("DELETE", "/triggers/x", {}),
    ):
        for raw in (str(target), "../elsewhere/evil.json", "/etc/passwd"):
            response = await client.request(method, path, params={"trigger_file": raw}, **kwargs)
            assert response.status_code == 400, (method, raw, response.text)
            assert response.json()["field"] == "trigger_file"
    assert not target.parent.exists()
    inside = await client.post(
        "/triggers",
        params={"trigger_file": "other.json"},
        json={"prompt_text": "x", "schedule": DAILY},
    )
    assert inside.status_code == 200


async def test_grpc_create_takes_a_struct_or_a_list(trigger_config: Config) -> None:
    async with running_gateway(trigger_config) as gw:
        value = struct_pb2.Value()
        json_format.ParseDict({"id": "g", "prompt_text": "x", "schedule": DAILY}, value)
        created = await gw.stub.CreateTriggers(triggers_pb2.CreateTriggersRequest(triggers=value))
        assert created.trigger.id == "g" and created.trigger.HasField("next_fire")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.CreateTriggers(triggers_pb2.CreateTriggersRequest())
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


class SteppedClock:
    """The scheduler's injectable clock, stepped by the test: no real waiting."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def test_an_interval_trigger_fires_on_its_grid_and_continues_its_session(
    trigger_config: Config,
) -> None:
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    entry = {
        "id": "every5",
        "prompt_text": "tick",
        "schedule": {"mode": "interval", "interval_minutes": 5},
        "created_at": start.isoformat(),
    }
    trigger_config.triggers.default_file.write_text(json.dumps({"triggers": [entry]}))
    clock = SteppedClock(start + timedelta(minutes=4))
    async with running_gateway(trigger_config, clock=clock) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        assert await scheduler.fire_due() == []
        clock.now = start + timedelta(minutes=5)
        await asyncio.gather(*await scheduler.fire_due())
        stored = file_triggers(trigger_config)[0]
        assert (
            stored["last_status"] == "success"
            and stored["last_fired"]
            and stored["gateway_session_id"]
        )
        first_session = stored["gateway_session_id"]
        assert await scheduler.fire_due() == []  # last_fired is the new anchor
        clock.now = datetime.fromisoformat(stored["last_fired"]) + timedelta(minutes=5)
        await asyncio.gather(*await scheduler.fire_due())
        stored = file_triggers(trigger_config)[0]
        assert stored["gateway_session_id"] == first_session
        session = gw.gateway.store.resolve(first_session)
        assert len(session.runs) == 2 and session.runs[0].source == "trigger"


async def test_a_once_trigger_fires_once_is_removed_and_survives_a_reload_mid_run(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    config = with_triggers(config_for(codex_bin=AGENTS_DIR / "slow_agent.py"), tmp_path)
    at = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
    entry = {
        "id": "one",
        "prompt_text": "once",
        "schedule": {"mode": "once", "at": at.isoformat()},
        "env": {"FAKE_AGENT_SECONDS": "1"},
    }
    config.triggers.default_file.write_text(json.dumps({"triggers": [entry]}))
    async with running_gateway(config, clock=SteppedClock(at)) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        tasks = await scheduler.fire_due()
        assert len(tasks) == 1
        await asyncio.sleep(0.3)
        await scheduler.reload()  # the file changes on disk while the run is going
        assert await scheduler.fire_due() == []
        await asyncio.gather(*tasks)
        assert file_triggers(config) == []
        await scheduler.reload()
        assert await scheduler.fire_due() == []


async def test_a_disabled_trigger_never_fires(trigger_config: Config) -> None:
    entry = {
        "id": "off",
        "enabled": False,
        "prompt_text": "x",
        "schedule": {"mode": "interval", "interval_minutes": 1},
        "created_at": "2020-01-01T00:00:00Z",
    }
    trigger_config.triggers.default_file.write_text(json.dumps({"triggers": [entry]}))
    async with running_gateway(
        trigger_config, clock=SteppedClock(datetime(2031, 1, 1, tzinfo=UTC))
    ) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        assert await scheduler.fire_due() == []


async def test_a_trigger_without_id_gets_one_written_back(trigger_config: Config) -> None:
    entry = {
        "prompt_text": "x",
        "schedule": {"mode": "once", "at": "2020-01-01T00:00:00Z"},
        "created_by": {"id": "u1"},
    }
    trigger_config.triggers.default_file.write_text(json.dumps({"version": 1, "triggers": [entry]}))
    async with running_gateway(
        trigger_config, clock=SteppedClock(datetime(2030, 1, 1, tzinfo=UTC))
    ) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        assert await scheduler.fire_due() == []  # not before its id is on disk
        await scheduler.settle()
        (stored,) = file_triggers(trigger_config)
        assert stored["id"] and stored["created_by"] == {"id": "u1"}  # unknown fields are kept
        await scheduler.reload()
        await scheduler.reload()
        assert file_triggers(trigger_config)[0]["id"] == stored["id"]  # stable across reloads
        tasks = await scheduler.fire_due()
        assert len(tasks) == 1
        await asyncio.gather(*tasks)
        assert file_triggers(trigger_config) == []  # the overdue one-shot ran and was removed


async def test_invalid_json_keeps_the_triggers_listed_but_disarmed_and_reports_it(
    trigger_config: Config,
) -> None:
    path = trigger_config.triggers.default_file
    good = json.dumps({"triggers": [{"id": "k", "prompt_text": "x", "schedule": DAILY}]})
    path.write_text(good)
    async with running_gateway(trigger_config) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        armed = [(when, t.id) for when, _, t in scheduler.next_fires()]
        path.write_text("{broken")
        await scheduler.reload(path)
        # A file that cannot be read cannot record a fire either: nothing of it is armed.
        assert scheduler.next_fires() == []
        from codex_gateway.v1 import status_pb2

        status = await gw.stub.GetStatus(status_pb2.GetStatusRequest())
        (file_status,) = [f for f in status.triggers.files if f.path == str(path)]
        assert file_status.triggers == 1 and "not valid JSON" in file_status.error
        path.write_text(good)
        await scheduler.reload(path)
        assert [(when, t.id) for when, _, t in scheduler.next_fires()] == armed  # back


async def test_api_and_scheduler_writes_do_not_lose_each_other(trigger_config: Config) -> None:
    async with running_gateway(trigger_config) as gw:
        scheduler = gw.gateway.scheduler
        path = trigger_config.triggers.default_file
        creates = [
            scheduler.create(path, {"id": f"t{i}", "prompt_text": "x", "schedule": DAILY})
            for i in range(30)
        ]
        patches = [scheduler.update(path, "t0", {"description": f"d{i}"}) for i in range(5)]
        await asyncio.gather(*creates)
        await asyncio.gather(*patches)
        stored = file_triggers(trigger_config)
        assert sorted(t["id"] for t in stored) == sorted(f"t{i}" for i in range(30))
        assert stored[0]["description"].startswith("d")


async def test_an_edit_on_disk_is_rescheduled_within_a_second(trigger_config: Config) -> None:
    path = trigger_config.triggers.default_file
    path.write_text(json.dumps({"triggers": []}))
    async with running_gateway(trigger_config) as gw:
        stop = asyncio.Event()
        loop_task = asyncio.create_task(gw.gateway.scheduler.run(stop))
        try:
            await asyncio.sleep(0.5)
            path.write_text(
                json.dumps({"triggers": [{"id": "disk", "prompt_text": "x", "schedule": DAILY}]})
            )
            for _ in range(20):
                if [t.id for _, _, t in gw.gateway.scheduler.next_fires()] == ["disk"]:
                    break
                await asyncio.sleep(0.05)
            assert [t.id for _, _, t in gw.gateway.scheduler.next_fires()] == ["disk"]
        finally:
            stop.set()
            await asyncio.wait_for(loop_task, 5)


async def test_one_real_fire_runs_the_real_codex_and_persists_its_result(
    config: Config, tmp_path: Path
) -> None:
    config = with_triggers(config, tmp_path)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    entry = {
        "id": "real",
        "prompt_text": "[[reply:fired for real]] go",
        "schedule": {"mode": "once", "at": soon.isoformat()},
        "tags": ["keep"],
    }
    path = config.triggers.default_file
    path.write_text(json.dumps({"triggers": [entry], "other": "kept"}))
    async with running_gateway(config) as gw:
        stop = asyncio.Event()
        loop_task = asyncio.create_task(gw.gateway.scheduler.run(stop))
        try:
            for _ in range(100):
                if json.loads(path.read_text())["triggers"] == []:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(loop_task, 10)
        assert json.loads(path.read_text())["other"] == "kept"
        (session,) = list(gw.gateway.store)
        assert session.runs[0].content_preview == "fired for real"
