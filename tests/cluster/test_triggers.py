"""Triggers in cluster mode, on a real PostgreSQL: triggers defined through any replica, each
scheduled instant fired exactly once in the cluster (by the key of trigger_fires), file-defined
triggers too, and the fires of a replica that died interrupted, never run again."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.protobuf import json_format, struct_pb2

from codex_gateway.v1 import triggers_pb2
from gateway.automation.ledger import Fire, Outcome
from gateway.automation.triggers import normalise
from gateway.cluster import triggers as cluster_triggers
from gateway.cluster.node import ClusterNode
from gateway.cluster.triggers import DatabaseFireLedger, interrupt_fires
from gateway.config import ClusterConfig, Config, TriggerConfig
from tests.fakes import AGENTS_DIR
from tests.fakes.agents.build import build_tiny_agent
from tests.harness import (
    CLUSTER_TOKEN,
    RunningGateway,
    cluster_config,
    running_bridge,
    running_gateway,
    start_gateway_process,
)

EVERY_SECOND = {"mode": "interval", "interval_minutes": 1 / 60}
DAILY = {"mode": "daily", "time": "14:00", "timezone": "America/Chicago"}


@pytest.fixture(scope="session")
def tiny_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The near-zero-cost fake codex: the load test measures the ledger, not the agent."""
    return build_tiny_agent(tmp_path_factory.mktemp("tiny-agent"))


async def _rows(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(query.encode(), params or None)
        return list(await cursor.fetchall())


async def _db_now(dsn: str) -> datetime:
    rows = await _rows(dsn, "SELECT now()")
    moment = rows[0][0]
    assert isinstance(moment, datetime)
    return moment


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _value(payload: object) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(payload, value)
    return value


def _struct(payload: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(payload, struct)
    return struct


def _instants(anchor: datetime, start: datetime, end: datetime) -> set[datetime]:
    """Every whole second after `anchor` (an interval's grid) within [start, end]."""
    first = anchor + timedelta(seconds=max(1, int((start - anchor).total_seconds())))
    while first - timedelta(seconds=1) >= start:
        first -= timedelta(seconds=1)
    while first < start:
        first += timedelta(seconds=1)
    found = set()
    while first <= end:
        found.add(first)
        first += timedelta(seconds=1)
    return found


# -- the ledger ----------------------------------------------------------------------------------


async def test_each_instant_is_claimed_once_by_concurrent_claimers(pg_dsn: str) -> None:
    nodes = [
        ClusterNode(
            ClusterConfig(
                database_url=pg_dsn,
                replica_id=f"r{i}",
                advertise_addr=f"127.0.0.1:{51000 + i}",
                lease_ms=5000,
            )
        )
        for i in range(4)
    ]
    for node in nodes:
        await node.open()
    try:
        ledgers = [DatabaseFireLedger(node) for node in nodes]
        trigger = normalise({"id": "tick", "prompt_text": "x", "schedule": EVERY_SECOND})
        base = datetime(2026, 1, 1, tzinfo=UTC)
        source = Path("/triggers/triggers.json")
        for second in range(25):
            fire = Fire(source, trigger, "armed", base + timedelta(seconds=second))
            claims = await asyncio.gather(*(ledger.claim(fire) for ledger in ledgers))
            winners = [i for i, claimed in enumerate(claims) if claimed is not None]
            assert len(winners) == 1, (second, claims)
            winner = winners[0]
            await ledgers[winner].finish(
                fire, claims[winner] or pytest.fail(), Outcome("success", run_id=f"run-{second}")
            )
            # A loser finishing (it never would) changes nothing: the fire is the winner's.
            loser = (winner + 1) % len(ledgers)
            await ledgers[loser].finish(fire, claims[winner] or pytest.fail(), Outcome("error"))
        rows = await _rows(
            pg_dsn,
            "SELECT scheduled_for, status, run_id, count(*) OVER (PARTITION BY scheduled_for)"
            " FROM trigger_fires WHERE trigger_id = 'tick' ORDER BY scheduled_for",
        )
        assert len(rows) == 25
        assert {row[1] for row in rows} == {"completed"}
        assert [row[2] for row in rows] == [f"run-{second}" for second in range(25)]
        assert {row[3] for row in rows} == {1}
    finally:
        for node in nodes:
            await node.close()


async def test_a_reaped_replicas_running_fires_are_interrupted_but_not_its_new_ones(
    pg_dsn: str,
) -> None:
    """The reap hook also runs when a replica registers again: only an older epoch's fires."""
    config = ClusterConfig(
        database_url=pg_dsn, replica_id="r1", advertise_addr="127.0.0.1:51100", lease_ms=5000
    )
    first = ClusterNode(config)
    node = ClusterNode(config)
    node.replicas.on_reap(interrupt_fires)
    await first.open()
    trigger = normalise({"id": "t", "prompt_text": "x", "schedule": EVERY_SECOND})
    at = datetime(2026, 1, 1, tzinfo=UTC)
    old = Fire(Path("/f.json"), trigger, "armed", at)
    assert await DatabaseFireLedger(first).claim(old) is not None
    await first.database.close()  # died without a word: its lease still runs
    await node.open()  # the same id at the same address: takes over, frees the old epoch's
    try:
        new = Fire(Path("/f.json"), trigger, "armed", at + timedelta(seconds=1))
        assert await DatabaseFireLedger(node).claim(new) is not None
        rows = await _rows(
            pg_dsn, "SELECT status FROM trigger_fires WHERE trigger_id = 't' ORDER BY scheduled_for"
        )
        assert rows == [("interrupted",), ("running",)]
    finally:
        await node.close()


# -- definitions through any replica --------------------------------------------------------------


async def test_a_trigger_defined_through_one_replica_is_edited_through_another(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        alpha = await stack.enter_async_context(
            running_gateway(cluster_config(tmp_path, pg_dsn, "alpha"))
        )
        beta = await stack.enter_async_context(
            running_gateway(cluster_config(tmp_path, pg_dsn, "beta"))
        )
        urls = [
            await stack.enter_async_context(running_bridge(gateway.target))
            for gateway in (alpha, beta)
        ]
        rest_a, rest_b = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=30, trust_env=False)
            )
            for url in urls
        ]
        created = await rest_a.post(
            "/triggers",
            json={"id": "report", "title": "Daily", "prompt_text": "Run it", "schedule": DAILY},
        )
        assert created.status_code == 200, created.text
        # REST through beta: listed (in beta's own file name), read, updated.
        listed = (await rest_b.get("/triggers")).json()
        assert listed["trigger_file"] == str(beta.gateway.config.triggers.default_file)
        assert [t["id"] for t in listed["triggers"]] == ["report"]
        got = (await rest_b.get("/triggers/report")).json()["trigger"]
        assert got["title"] == "Daily" and got["next_fire"]
        patched = await rest_b.patch("/triggers/report", json={"enabled": False})
        assert patched.status_code == 200, patched.text
        assert patched.json()["trigger"]["enabled"] is False
        # gRPC through alpha sees beta's edit, and edits it again.
        shown = await alpha.stub.GetTrigger(triggers_pb2.GetTriggerRequest(trigger_id="report"))
        assert shown.trigger.enabled is False
        updated = await alpha.stub.UpdateTrigger(
            triggers_pb2.UpdateTriggerRequest(
                trigger_id="report", patch=_struct({"title": "Weekly"})
            )
        )
        assert updated.trigger.title == "Weekly" and updated.trigger.enabled is False
        # Another trigger file (scope) through gRPC on beta, listed through REST on alpha.
        await beta.stub.CreateTriggers(
            triggers_pb2.CreateTriggersRequest(
                trigger_file="team.json",
                triggers=_value([{"id": "team", "prompt_text": "x", "schedule": DAILY}]),
            )
        )
        team = (await rest_a.get("/triggers", params={"trigger_file": "team.json"})).json()
        assert [t["id"] for t in team["triggers"]] == ["team"]
        assert [t["id"] for t in (await rest_a.get("/triggers")).json()["triggers"]] == ["report"]
        # An id is the cluster's: another file cannot take it (409), nothing is lost.
        taken = await rest_a.post(
            "/triggers",
            params={"trigger_file": "team.json"},
            json={"id": "report", "prompt_text": "x", "schedule": DAILY},
        )
        assert taken.status_code == 409, taken.text
        # Deleted through beta over gRPC: gone through alpha on both protocols.
        await beta.stub.DeleteTrigger(triggers_pb2.DeleteTriggerRequest(trigger_id="report"))
        assert (await rest_a.get("/triggers/report")).status_code == 404
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await alpha.stub.GetTrigger(triggers_pb2.GetTriggerRequest(trigger_id="report"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert (await rest_b.delete("/triggers/report")).status_code == 404
        # Nothing of it was written to either replica's trigger file.
        for gateway in (alpha, beta):
            assert not gateway.gateway.config.triggers.default_file.exists()


async def test_a_trigger_defined_in_a_replicas_file_is_listed_and_edited_in_that_file(
    tmp_path: Path, pg_dsn: str
) -> None:
    config = cluster_config(tmp_path, pg_dsn, "alpha")
    trigger_file = config.triggers.default_file
    trigger_file.parent.mkdir(parents=True, exist_ok=True)
    trigger_file.write_text(
        json.dumps(
            {"triggers": [{"id": "on-disk", "prompt_text": "x", "schedule": DAILY, "x-kept": 1}]}
        )
    )
    async with running_gateway(config) as alpha:
        await alpha.stub.CreateTriggers(
            triggers_pb2.CreateTriggersRequest(
                triggers=_value({"id": "api", "prompt_text": "x", "schedule": DAILY})
            )
        )
        listed = await alpha.stub.ListTriggers(triggers_pb2.ListTriggersRequest())
        assert [t.id for t in listed.triggers] == ["on-disk", "api"]
        updated = await alpha.stub.UpdateTrigger(
            triggers_pb2.UpdateTriggerRequest(
                trigger_id="on-disk", patch=_struct({"enabled": False})
            )
        )
        assert updated.trigger.enabled is False
        stored = json.loads(trigger_file.read_text())["triggers"]
        assert [(t["id"], t["enabled"], t["x-kept"]) for t in stored] == [("on-disk", False, 1)]
        await alpha.stub.DeleteTrigger(triggers_pb2.DeleteTriggerRequest(trigger_id="on-disk"))
        assert json.loads(trigger_file.read_text())["triggers"] == []
        listed = await alpha.stub.ListTriggers(triggers_pb2.ListTriggersRequest())
        assert [t.id for t in listed.triggers] == ["api"]
    assert await _rows(pg_dsn, "SELECT trigger_id FROM triggers") == [("api",)]


async def test_concurrent_edits_through_two_replicas_do_not_lose_each_other(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        alpha = await stack.enter_async_context(
            running_gateway(cluster_config(tmp_path, pg_dsn, "alpha"))
        )
        beta = await stack.enter_async_context(
            running_gateway(cluster_config(tmp_path, pg_dsn, "beta"))
        )
        await alpha.stub.CreateTriggers(
            triggers_pb2.CreateTriggersRequest(
                triggers=_value({"id": "t", "prompt_text": "x", "schedule": DAILY, "tags": []})
            )
        )

        async def edit(stub: RunningGateway, field: str, n: int) -> None:
            await stub.stub.UpdateTrigger(
                triggers_pb2.UpdateTriggerRequest(trigger_id="t", patch=_struct({field: str(n)}))
            )

        for n in range(10):
            await asyncio.gather(edit(alpha, "title", n), edit(beta, "description", n))
            shown = await beta.stub.GetTrigger(triggers_pb2.GetTriggerRequest(trigger_id="t"))
            assert (shown.trigger.title, shown.trigger.description) == (str(n), str(n))
        versions = await _rows(pg_dsn, "SELECT version FROM triggers WHERE trigger_id = 't'")
        assert versions == [(21,)]


async def test_an_edit_through_one_replica_reschedules_another_by_its_signal(
    tmp_path: Path, pg_dsn: str, tiny_agent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With polling out of the picture, beta learns of a trigger created through alpha (whose
    scheduler does not run) from the trigger_changed signal alone, and fires it."""
    monkeypatch.setattr(cluster_triggers, "POLL_S", 3600.0)
    alpha_config = cluster_config(tmp_path, pg_dsn, "alpha")
    beta_config = cluster_config(tmp_path, pg_dsn, "beta", codex_bin=tiny_agent)
    async with (
        running_gateway(alpha_config) as alpha,
        running_gateway(beta_config, background=True) as beta,
    ):
        await _eventually(_connected(beta), 30, "beta's control signals to listen")
        await alpha.stub.CreateTriggers(
            triggers_pb2.CreateTriggersRequest(
                triggers=_value({"id": "t", "prompt_text": "tick", "schedule": EVERY_SECOND})
            )
        )

        async def fired_by_beta() -> bool:
            rows = await _rows(
                pg_dsn,
                "SELECT 1 FROM trigger_fires WHERE trigger_id = 't' AND replica_id = 'beta'"
                " AND status = 'completed'",
            )
            return bool(rows)

        await _eventually(fired_by_beta, 60, "beta to fire the trigger created through alpha")
        await alpha.stub.DeleteTrigger(triggers_pb2.DeleteTriggerRequest(trigger_id="t"))
        deleted_at = await _db_now(pg_dsn)
        await asyncio.sleep(2)
        later = await _rows(
            pg_dsn,
            "SELECT scheduled_for FROM trigger_fires WHERE trigger_id = 't' AND scheduled_for > %s",
            deleted_at + timedelta(seconds=1),
        )
        assert later == []


@pytest.mark.timeout(150)
async def test_a_triggers_fires_wait_for_its_first_one_and_share_its_session(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A trigger whose first fire takes longer than its interval, with two replicas scheduling
    it: the instants that come due meanwhile wait for that fire (which makes the trigger's
    session, and so its home) instead of starting sessions of their own on the other replica;
    no two of its fires overlap. (Under load the first fire of the fifty-trigger test outlasted
    its second, and a trigger's fires ended up in two sessions.)"""
    configs = [
        cluster_config(tmp_path, pg_dsn, name, codex_bin=AGENTS_DIR / "counter_agent.py")
        for name in ("alpha", "beta")
    ]
    async with (
        running_gateway(configs[0], background=True) as alpha,
        running_gateway(configs[1], background=True),
    ):
        await alpha.stub.CreateTriggers(
            triggers_pb2.CreateTriggersRequest(
                triggers=_value(
                    {
                        "id": "slow",
                        "prompt_text": "tick",
                        "schedule": EVERY_SECOND,
                        # About 2.4 s a fire: each outlasts the interval.
                        "env": {"FAKE_AGENT_LINES": "4", "FAKE_AGENT_PAUSE_MS": "600"},
                    }
                )
            )
        )

        async def three_completed() -> bool:
            rows = await _rows(
                pg_dsn,
                "SELECT count(*) FROM trigger_fires WHERE trigger_id = 'slow'"
                " AND status = 'completed'",
            )
            return int(rows[0][0]) >= 3

        await _eventually(three_completed, 90, "three fires of the slow trigger")
        await alpha.stub.DeleteTrigger(triggers_pb2.DeleteTriggerRequest(trigger_id="slow"))
    rows = await _rows(
        pg_dsn,
        "SELECT replica_id, session_id, fired_at, finished_at FROM trigger_fires"
        " WHERE trigger_id = 'slow' AND status = 'completed' ORDER BY fired_at",
    )
    assert len({(row[0], row[1]) for row in rows}) == 1, rows  # one session, on its home
    for earlier, later in itertools.pairwise(rows):
        assert later[2] >= earlier[3], (earlier, later)  # never two at once


def _connected(replica: RunningGateway) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        node = replica.gateway.node
        return node is not None and node.signals.connected.is_set()

    return check


# -- fires ----------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_three_replicas_fire_fifty_triggers_every_second_exactly_once(
    tmp_path: Path, pg_dsn: str, tiny_agent: Path
) -> None:
    """The issue's load test: 3 replicas x 50 triggers every second for 20 s, 0 duplicates and
    0 misses. Every instant of the window is checked, once every replica had armed them."""
    configs = [
        cluster_config(
            tmp_path, pg_dsn, name, codex_bin=tiny_agent, max_concurrent=64, lease_ms=15_000
        )
        for name in ("alpha", "beta", "gamma")
    ]
    async with contextlib.AsyncExitStack() as stack:
        replicas = [
            await stack.enter_async_context(running_gateway(config, background=True))
            for config in configs
        ]
        await replicas[0].stub.CreateTriggers(
            triggers_pb2.CreateTriggersRequest(
                triggers=_value(
                    [
                        {"id": f"t{i:02d}", "prompt_text": "tick", "schedule": EVERY_SECOND}
                        for i in range(50)
                    ]
                )
            )
        )
        start = await _db_now(pg_dsn) + timedelta(seconds=3)
        end = start + timedelta(seconds=20)
        anchors = {
            str(row[0]): datetime.fromisoformat(str(row[1]).replace("Z", "+00:00"))
            for row in await _rows(pg_dsn, "SELECT trigger_id, entry->>'created_at' FROM triggers")
        }
        expected = {
            (trigger_id, instant)
            for trigger_id, anchor in anchors.items()
            for instant in _instants(anchor, start, end)
        }
        assert len(expected) >= 50 * 20

        async def window_fired() -> bool:
            if await _db_now(pg_dsn) <= end:
                return False
            rows = await _rows(
                pg_dsn,
                "SELECT count(*) FROM trigger_fires WHERE scheduled_for BETWEEN %s AND %s"
                " AND status <> 'running'",
                start,
                end,
            )
            return int(rows[0][0]) >= len(expected)

        await _eventually(window_fired, 240, "every instant of the window to fire")
    rows = await _rows(
        pg_dsn,
        "SELECT trigger_id, scheduled_for, status, replica_id, run_id, session_id"
        " FROM trigger_fires"
        " WHERE scheduled_for BETWEEN %s AND %s",
        start,
        end,
    )
    fired = [(str(row[0]), row[1]) for row in rows]
    assert len(fired) == len(set(fired)), "an instant fired twice"
    assert set(fired) == expected, (
        f"missed {len(expected - set(fired))}, unexpected {len(set(fired) - expected)}"
    )
    assert {row[2] for row in rows} == {"completed"}
    # Each trigger continues its session, on that session's home replica.
    homes: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        homes.setdefault(str(row[0]), set()).add((str(row[3]), str(row[5])))
    assert all(len(home) == 1 for home in homes.values()), homes
    run_ids = [row[4] for row in rows]
    assert None not in run_ids and len(set(run_ids)) == len(run_ids)


async def test_file_triggers_fire_once_per_instant_with_two_replicas_reading_one_file(
    tmp_path: Path, pg_dsn: str, tiny_agent: Path
) -> None:
    shared = tmp_path / "shared" / "triggers.json"
    shared.parent.mkdir()
    entries = [
        {
            "id": "anchored",
            "prompt_text": "tick",
            "schedule": EVERY_SECOND,
            "created_at": "2026-01-01T00:00:00.250Z",
        },
        # No created_at: every replica anchors it on the same grid (the Unix epoch's).
        {
            "id": "unanchored",
            "prompt_text": "tick",
            "schedule": {"mode": "interval", "minutes": 1 / 30},
        },
    ]
    text = json.dumps({"version": 1, "triggers": entries}, indent=2)
    shared.write_text(text)

    def reading_the_file(config: Config) -> Config:
        return dataclasses.replace(
            config,
            triggers=TriggerConfig(
                default_file=shared,
                roots=(shared.parent,),
                discovery_dir=tmp_path / "nowhere",
            ),
        )

    configs = [
        reading_the_file(cluster_config(tmp_path, pg_dsn, name, codex_bin=tiny_agent))
        for name in ("alpha", "beta")
    ]
    async with contextlib.AsyncExitStack() as stack:
        for config in configs:
            await stack.enter_async_context(running_gateway(config, background=True))
        start = await _db_now(pg_dsn) + timedelta(seconds=2)
        end = start + timedelta(seconds=6)
        expected = {
            ("anchored", instant)
            for instant in _instants(datetime(2026, 1, 1, 0, 0, 0, 250_000, UTC), start, end)
        } | {
            ("unanchored", instant)
            for instant in _instants(datetime(1970, 1, 1, tzinfo=UTC), start, end)
            if int(instant.timestamp()) % 2 == 0
        }

        async def window_fired() -> bool:
            if await _db_now(pg_dsn) <= end:
                return False
            rows = await _rows(
                pg_dsn,
                "SELECT count(*) FROM trigger_fires WHERE scheduled_for BETWEEN %s AND %s"
                " AND status <> 'running'",
                start,
                end,
            )
            return int(rows[0][0]) >= len(expected)

        await _eventually(window_fired, 60, "the file's instants to fire")
    rows = await _rows(
        pg_dsn,
        "SELECT trigger_id, scheduled_for, status FROM trigger_fires"
        " WHERE scheduled_for BETWEEN %s AND %s",
        start,
        end,
    )
    assert {(str(row[0]), row[1]) for row in rows} == expected
    assert len(rows) == len(expected)
    assert {row[2] for row in rows} == {"completed"}
    # The file is the user's: its fires are in the ledger, not written into it.
    assert shared.read_text() == text


async def test_a_killed_replicas_fire_is_interrupted_and_never_run_again(
    tmp_path: Path, pg_dsn: str
) -> None:
    home = tmp_path / "doomed"
    (home / "workspace").mkdir(parents=True)
    doomed = await start_gateway_process(
        {
            "CODEX_GATEWAY_DATABASE_URL": pg_dsn,
            "CODEX_GATEWAY_REPLICA_ID": "doomed",
            "CODEX_GATEWAY_REPLICA_LEASE_MS": "1000",
            "CODEX_GATEWAY_CLUSTER_TOKEN": CLUSTER_TOKEN,
            "CODEX_GATEWAY_CODEX_BIN": str(AGENTS_DIR / "slow_agent.py"),
            "CODEX_GATEWAY_SESSION_DIRS": str(home / "sessions"),
            "CODEX_GATEWAY_DEFAULT_WORKSPACE": str(home / "workspace"),
            "CODEX_HOME": str(home / "codex-home"),
        }
    )
    try:
        async with grpc.aio.insecure_channel(doomed.target) as channel:
            from codex_gateway.v1 import gateway_pb2_grpc

            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            at = await _db_now(pg_dsn) + timedelta(seconds=1)
            await stub.CreateTriggers(
                triggers_pb2.CreateTriggersRequest(
                    triggers=_value(
                        {
                            "id": "long",
                            "prompt_text": "work",
                            "schedule": {"mode": "once", "at": at.isoformat()},
                            "env": {"FAKE_AGENT_SECONDS": "30"},
                        }
                    )
                )
            )

        async def running() -> bool:
            rows = await _rows(
                pg_dsn,
                "SELECT 1 FROM trigger_fires WHERE trigger_id = 'long' AND status = 'running'"
                " AND replica_id = 'doomed'",
            )
            return bool(rows)

        await _eventually(running, 30, "the doomed replica to fire the trigger")
        survivor = cluster_config(tmp_path, pg_dsn, "alpha", lease_ms=1000)
        async with running_gateway(survivor, background=True):
            os.killpg(doomed.process.pid, signal.SIGKILL)
            await doomed.process.wait()

            async def interrupted() -> bool:
                rows = await _rows(
                    pg_dsn, "SELECT status FROM trigger_fires WHERE trigger_id = 'long'"
                )
                return rows == [("interrupted",)]

            await _eventually(interrupted, 30, "the dead replica's fire to be interrupted")
            # Never re-run: the instant is taken, the survivor's scheduler moved past it.
            await asyncio.sleep(2)
            rows = await _rows(
                pg_dsn, "SELECT replica_id, status FROM trigger_fires WHERE trigger_id = 'long'"
            )
            assert rows == [("doomed", "interrupted")]
    finally:
        if doomed.process.returncode is None:
            os.killpg(doomed.process.pid, signal.SIGKILL)
            await doomed.process.wait()
