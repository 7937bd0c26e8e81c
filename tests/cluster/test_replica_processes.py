"""Replicas as real processes on one PostgreSQL: they start together and migrate once, see each
other on both protocols, refuse a second process with a live replica's id, stop at startup on a
bad database (exit 2 naming the variable or the versions), reap a replica killed with SIGKILL
within two leases, take a restarted replica back, and ride out a database restart without
reaping anyone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from devcluster.postgres import free_port, running_postgres
from gateway.cluster.database import migrations
from tests.cluster.processes import LEASE_MS, ReplicaCluster, eventually, running_cluster
from tests.harness import agent_path

THREE = ("alpha", "beta", "gamma")
LEASE_S = LEASE_MS / 1000
# A killed replica is reaped once its lease has been expired for another lease length, by a
# replica that scans every lease/3: 2 x lease plus a few seconds of scanning and slack.
REAPED_WITHIN_S = 2 * LEASE_S + 5


def rows(dsn: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return list(cursor.fetchall()) if cursor.description else []


def replica_states(dsn: str) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in rows(dsn, "SELECT replica_id, state FROM replicas")}


async def test_three_replicas_start_together_migrate_once_and_see_each_other(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with running_cluster(tmp_path, pg_dsn, THREE) as cluster:
        for replica_id in THREE:
            status = await cluster[replica_id].status()
            assert status["mode"] == "cluster", status
            assert status["cluster"]["replica_id"] == replica_id
            listed = {r["replica_id"]: r["grpc_addr"] for r in status["cluster"]["replicas"]}
            assert listed == {r: cluster[r].target for r in THREE}, cluster.logs()
            answer = await cluster[replica_id].grpc_status()
            assert answer.mode == "cluster"
            assert answer.cluster.replica_id == replica_id
            assert [r.replica_id for r in answer.cluster.replicas] == list(THREE)
        applied = rows(pg_dsn, "SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in applied] == [m.version for m in migrations()]
        assert replica_states(pg_dsn) == dict.fromkeys(THREE, "alive")
    # A clean stop ends each lease: stopped, not reaped.
    assert replica_states(pg_dsn) == dict.fromkeys(THREE, "stopped")


async def test_a_second_process_with_a_live_replicas_id_exits_2_naming_it(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with running_cluster(tmp_path, pg_dsn, ["alpha"]) as cluster:
        twin = cluster.add("alpha-twin", CODEX_GATEWAY_REPLICA_ID="alpha")
        result = await asyncio.to_thread(run_to_exit, twin.env, twin.grpc_port, twin.rest_port)
        assert result.returncode == 2, result.stderr
        assert "CODEX_GATEWAY_REPLICA_ID" in result.stderr
        assert "'alpha' is already running" in result.stderr, result.stderr
        assert cluster["alpha"].target in result.stderr
        assert "Traceback" not in result.stderr
        # The first one is untouched.
        assert (await cluster["alpha"].status())["cluster"]["replica_id"] == "alpha"
        assert replica_states(pg_dsn) == {"alpha": "alive"}


def run_to_exit(
    env: dict[str, str], grpc_port: int | None = None, rest_port: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m gateway serve` run to its exit (it must not come up): stderr captured."""
    ports = {
        "CODEX_GATEWAY_GRPC_PORT": str(grpc_port or free_port()),
        "CODEX_GATEWAY_PORT": str(rest_port or free_port()),
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        env={
            "PATH": agent_path(),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            **env,
            **ports,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        pytest.param(
            "mysql://u@127.0.0.1/db",
            ["CODEX_GATEWAY_DATABASE_URL", "postgresql://"],
            id="bad-scheme",
        ),
        pytest.param(
            "postgresql://u:hunter2@127.0.0.1/db?nosuchoption=1",
            ["CODEX_GATEWAY_DATABASE_URL", "not a valid PostgreSQL connection URL"],
            id="invalid-url",
        ),
        pytest.param(
            "postgresql://postgres@127.0.0.1:{closed}/postgres?connect_timeout=2",
            ["CODEX_GATEWAY_DATABASE_URL", "cannot reach the database"],
            id="unreachable",
        ),
    ],
)
async def test_a_bad_database_stops_startup_with_exit_2_naming_the_variable(
    tmp_path: Path, url: str, needles: list[str]
) -> None:
    cluster = ReplicaCluster(tmp_path, url.format(closed=free_port()))
    replica = cluster.add("alpha")
    result = await asyncio.to_thread(run_to_exit, replica.env)
    assert result.returncode == 2, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "hunter2" not in result.stderr, result.stderr


async def test_a_schema_newer_than_the_code_stops_startup_naming_both_versions(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with running_cluster(tmp_path / "first", pg_dsn, ["alpha"]):
        pass  # migrated
    newest = migrations()[-1].version
    rows(pg_dsn, "INSERT INTO schema_migrations (version, name) VALUES (%s, 'future')", 9999)
    replica = ReplicaCluster(tmp_path, pg_dsn).add("beta")
    result = await asyncio.to_thread(run_to_exit, replica.env)
    assert result.returncode == 2, result.stderr
    assert "CODEX_GATEWAY_DATABASE_URL" in result.stderr
    assert "version 9999" in result.stderr and f"gateway's {newest}" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


async def test_a_killed_replica_is_reaped_within_two_leases_and_comes_back_when_restarted(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with running_cluster(tmp_path, pg_dsn, THREE) as cluster:
        await eventually(lambda: _all_listed(cluster, THREE), 10, "every replica listing all three")
        first_epoch = rows(pg_dsn, "SELECT epoch FROM replicas WHERE replica_id = 'alpha'")[0][0]
        killed_at = time.monotonic()
        cluster["alpha"].kill()

        async def gone_from_listings() -> bool:
            listings = [await cluster.alive_ids(through) for through in ("beta", "gamma")]
            return all("alpha" not in listed for listed in listings)

        await eventually(gone_from_listings, REAPED_WITHIN_S, "alpha gone from the listings")
        await eventually(
            lambda: _state_is(pg_dsn, "alpha", "reaped"), REAPED_WITHIN_S, "alpha reaped"
        )
        assert time.monotonic() - killed_at <= REAPED_WITHIN_S + 1, cluster.logs()
        reaped = [
            int((await cluster[through].status())["cluster"].get("reaped", 0))
            for through in ("beta", "gamma")
        ]
        assert sum(reaped) == 1, reaped  # one reaper, once
        assert replica_states(pg_dsn) == {"alpha": "reaped", "beta": "alive", "gamma": "alive"}

        # Back with the same id, folders and address: it takes its id over, a new epoch.
        await cluster["alpha"].start()
        await eventually(
            lambda: _all_listed(cluster, THREE), 10, "alpha listed again by every replica"
        )
        epoch = rows(pg_dsn, "SELECT epoch FROM replicas WHERE replica_id = 'alpha'")[0][0]
        assert int(str(epoch)) > int(str(first_epoch))
        assert replica_states(pg_dsn) == dict.fromkeys(THREE, "alive")


async def test_a_killed_replica_restarted_before_it_is_reaped_takes_its_id_back(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Its lease still current, at its own address: a predecessor's leftover, not a twin."""
    async with running_cluster(tmp_path, pg_dsn, ["alpha", "beta"]) as cluster:
        cluster["alpha"].kill()
        await cluster["alpha"].start()
        await eventually(lambda: _all_listed(cluster, ["alpha", "beta"]), 10, "alpha listed again")
        assert replica_states(pg_dsn) == {"alpha": "alive", "beta": "alive"}


async def _all_listed(cluster: ReplicaCluster, ids: tuple[str, ...] | list[str]) -> bool:
    for through in ids:
        if await cluster.alive_ids(through) != sorted(ids):
            return False
    return True


async def _state_is(dsn: str, replica_id: str, state: str) -> bool:
    return (await asyncio.to_thread(replica_states, dsn)).get(replica_id) == state


@pytest.mark.timeout(120)
async def test_replicas_ride_out_a_database_restart_and_nobody_is_reaped(
    tmp_path: Path,
) -> None:
    """The database stopped for longer than two leases under running replicas (every lease
    expires meanwhile): they keep answering /health, come back to `alive` when it returns, and
    none is reaped for the outage: a replica reaps only once its own lease has been renewing for
    a whole lease length, by which time the others have renewed theirs."""
    with running_postgres() as server:
        dsn = server.dsn()
        async with running_cluster(tmp_path, dsn, THREE) as cluster:
            await eventually(lambda: _all_listed(cluster, THREE), 10, "all three listed")
            epochs = rows(dsn, "SELECT replica_id, epoch FROM replicas ORDER BY replica_id")
            await asyncio.to_thread(server.stop)
            outage_ends = time.monotonic() + 3 * LEASE_S
            while time.monotonic() < outage_ends:
                for replica_id in THREE:
                    async with cluster[replica_id].client(timeout=5) as client:
                        health = await client.get("/health")
                    assert health.status_code == 200, (replica_id, health.text)
                    assert cluster[replica_id].running(), cluster.logs()
                await asyncio.sleep(0.25)
            await asyncio.to_thread(server.start)
            await eventually(
                lambda: _all_listed(cluster, THREE), 30, "all three alive again", interval_s=0.5
            )
            # Two more leases: a reaper that was going to strike has had its chance.
            await asyncio.sleep(2 * LEASE_S)
            assert replica_states(dsn) == dict.fromkeys(THREE, "alive"), cluster.logs()
            # The same registrations: nobody was reaped and registered again.
            assert rows(dsn, "SELECT replica_id, epoch FROM replicas ORDER BY replica_id") == epochs
            for replica_id in THREE:
                assert int((await cluster[replica_id].status())["cluster"].get("reaped", 0)) == 0
