"""Per-key quotas across the cluster (gateway/cluster/keyquotas.py): a key's max_concurrent and
runs_per_minute count its runs on every replica, on a real PostgreSQL. Two replicas are two
ClusterNodes (two replica ids, one database) in this process, or two in-process gateways with
one key file for the end-to-end cases (REST through beta's bridge), the slow fake agent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest

from codex_gateway.v1 import runs_pb2
from gateway.auth.keys import ApiKey, digest_of
from gateway.auth.quotas import Release
from gateway.cluster.keyquotas import ClusterKeyQuotas
from gateway.cluster.node import ClusterNode
from gateway.config import ClusterConfig
from gateway.errors import ConcurrencyLimitReached, RateLimited, StorageUnavailable
from tests.cluster.test_slots import WAIT_S, eventually
from tests.fakes import AGENTS_DIR
from tests.gateway.test_key_limits import facts
from tests.harness import (
    RunningGateway,
    cluster_config,
    free_port,
    running_bridge,
    running_gateway,
)
from tests.postgres import PostgresServer, running_postgres

ADMIN = "the-admin-token"  # a test's own secrets


def secret(name: str) -> str:
    return f"k-{name}"


def api_key(name: str, **limits: Any) -> ApiKey:
    return ApiKey(
        name=name,
        digest=digest_of(secret(name)),
        tenant="team-a",
        scopes=frozenset({"run", "read", "cancel"}),
        **limits,
    )


@dataclass
class Replica:
    node: ClusterNode
    quotas: ClusterKeyQuotas


@contextlib.asynccontextmanager
async def replica(
    dsn: str, replica_id: str, *, lease_ms: int = 2000, loops: bool = True
) -> AsyncIterator[Replica]:
    """A replica's node and key quotas, its heartbeat and release retries running."""
    config = ClusterConfig(
        database_url=dsn,
        replica_id=replica_id,
        advertise_addr=f"127.0.0.1:{free_port()}",
        lease_ms=lease_ms,
    )
    node = ClusterNode(config)
    quotas = ClusterKeyQuotas(node)
    await node.open()
    stop = asyncio.Event()
    tasks = []
    if loops:
        tasks = [
            asyncio.create_task(node.replicas.run(stop)),
            asyncio.create_task(quotas.run(stop)),
        ]
    try:
        yield Replica(node, quotas)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        await node.close()


async def places(dsn: str) -> list[tuple[str, str]]:
    """The places held: (key name, replica id)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT key_name, replica_id FROM key_runs ORDER BY key_name, replica_id"
        )
        return [(str(row[0]), str(row[1])) for row in await cursor.fetchall()]


async def take(quotas: ClusterKeyQuotas, key: ApiKey) -> Release:
    release = await quotas.take(key)
    assert release is not None
    return release


# -- the quotas on two replicas ----------------------------------------------------------------


async def test_max_concurrent_counts_the_keys_places_on_every_replica(pg_dsn: str) -> None:
    key = api_key("limited", max_concurrent=2)
    other = api_key("other", max_concurrent=1)
    async with replica(pg_dsn, "a") as a, replica(pg_dsn, "b") as b:
        for _ in range(5):  # racing takes through both replicas, again and again
            outcomes = await asyncio.gather(
                *(take((a, b)[n % 2].quotas, key) for n in range(10)), return_exceptions=True
            )
            taken = [o for o in outcomes if not isinstance(o, BaseException)]
            refused = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(taken) == 2, outcomes
            for error in refused:
                assert isinstance(error, ConcurrencyLimitReached)
                assert error.details() == {"retry_after": "5", "active": "2", "max": "2"}
            assert len(await places(pg_dsn)) == 2
            assert await a.quotas.running(key) == await b.quotas.running(key) == 2
            # Another key's places are its own.
            release_other = await take(b.quotas, other)
            await asyncio.gather(*(release() for release in taken))
            await release_other()
            assert await places(pg_dsn) == []
        # A place given back on one replica can be taken on the other; a release is idempotent.
        first = await take(a.quotas, key)
        second = await take(a.quotas, key)
        with pytest.raises(ConcurrencyLimitReached):
            await b.quotas.take(key)
        await first()
        await first()
        third = await take(b.quotas, key)
        assert await places(pg_dsn) == [("limited", "a"), ("limited", "b")]
        await second()
        await third()
        assert await places(pg_dsn) == []
        # A key without quotas takes nothing and costs nothing.
        assert await a.quotas.take(api_key("free")) is None


async def test_runs_per_minute_is_one_bucket_for_the_whole_cluster(pg_dsn: str) -> None:
    key = api_key("metered", runs_per_minute=3, max_concurrent=1)
    async with replica(pg_dsn, "a") as a, replica(pg_dsn, "b") as b:
        for quotas in (a.quotas, b.quotas, a.quotas):
            await (await take(quotas, key))()
        for quotas in (b.quotas, a.quotas):
            with pytest.raises(RateLimited) as limited:
                await quotas.take(key)
            # 3 a minute: a token every 20 s, the next one nearly a whole interval away.
            assert 15 <= limited.value.retry_after_s <= 20
            assert "metered" in str(limited.value)
        assert await places(pg_dsn) == []  # a refusal for the rate holds no place
    # A refusal for concurrency spends no token: the second key's bucket still has its 2.
    pair = api_key("pair", runs_per_minute=2, max_concurrent=1)
    async with replica(pg_dsn, "a") as a, replica(pg_dsn, "b") as b:
        held = await take(a.quotas, pair)
        for _ in range(3):
            with pytest.raises(ConcurrencyLimitReached):
                await b.quotas.take(pair)
        await held()
        await (await take(b.quotas, pair))()
        with pytest.raises(RateLimited):
            await a.quotas.take(pair)


async def test_a_dead_replicas_places_are_given_back_by_the_reaper(pg_dsn: str) -> None:
    key = api_key("limited", max_concurrent=2)
    async with (
        replica(pg_dsn, "survivor", lease_ms=1000) as survivor,
        replica(pg_dsn, "doomed", lease_ms=1000, loops=False) as doomed,
    ):
        await take(doomed.quotas, key)
        await take(doomed.quotas, key)
        with pytest.raises(ConcurrencyLimitReached):
            await survivor.quotas.take(key)
        await doomed.node.database.close()  # dies: no heartbeat, no release, no goodbye
        await eventually(lambda: survivor.node.replicas.reaped_total == 1, "the reaper")
        assert await places(pg_dsn) == []
        release = await take(survivor.quotas, key)
        await take(survivor.quotas, key)
        assert await places(pg_dsn) == [("limited", "survivor")] * 2
        await release()


async def test_a_restarted_replica_gives_back_what_its_earlier_incarnation_held(
    pg_dsn: str,
) -> None:
    key = api_key("limited", max_concurrent=1)
    config = ClusterConfig(
        database_url=pg_dsn, replica_id="r", advertise_addr=f"127.0.0.1:{free_port()}"
    )
    first = ClusterNode(config)
    await first.open()
    await take(ClusterKeyQuotas(first), key)
    await first.database.close()  # killed while its run held the place
    assert await places(pg_dsn) == [("limited", "r")]
    again = ClusterNode(config)
    quotas = ClusterKeyQuotas(again)
    await again.open()
    try:
        assert await places(pg_dsn) == []
        await (await take(quotas, key))()
    finally:
        await again.close()


def _stop(server: PostgresServer) -> None:
    server.stop("fast")


def _start(server: PostgresServer) -> None:
    server.start()


@pytest.mark.timeout(120)
async def test_the_database_down_at_admission_is_503_and_a_release_lands_once_back() -> None:
    key = api_key("limited", max_concurrent=2, runs_per_minute=100)
    with running_postgres() as server:
        dsn = server.dsn()
        async with replica(dsn, "a", lease_ms=30_000) as a:
            held = await take(a.quotas, key)
            await asyncio.to_thread(_stop, server)
            try:
                with pytest.raises(StorageUnavailable):
                    async with asyncio.timeout(WAIT_S):  # never a hang
                        await a.quotas.take(key)
                async with asyncio.timeout(WAIT_S):
                    await held()  # the run ends: nowhere to give the place back to
                assert a.quotas.unreleased
            finally:
                await asyncio.to_thread(_start, server)
            await eventually(lambda: not a.quotas.unreleased, "the release to land")
            assert await places(dsn) == []
            await take(a.quotas, key)
            await take(a.quotas, key)  # both places there: nothing leaked, nothing taken
            assert len(await places(dsn)) == 2


async def test_admissions_cancelled_midway_leak_no_place(pg_dsn: str) -> None:
    key = api_key("limited", max_concurrent=1)
    async with replica(pg_dsn, "a") as a:
        for _ in range(40):
            attempt = asyncio.create_task(a.quotas.take(key))
            await asyncio.sleep(random.random() / 500)  # jitter: some on their way to the database
            attempt.cancel()
            # refused: an earlier cancelled one's place may be there until it is given back
            with contextlib.suppress(asyncio.CancelledError, ConcurrencyLimitReached):
                release = await attempt
                if release is not None:  # it finished before the cancel: the run's end
                    await release()
        await eventually(lambda: not a.quotas.unreleased, "uncertain places to be given back")
        assert await places(pg_dsn) == []
        await take(a.quotas, key)  # the one place is still there to take


async def test_a_fenced_replica_takes_no_place(pg_dsn: str) -> None:
    key = api_key("limited", max_concurrent=1)
    async with replica(pg_dsn, "a", loops=False) as a:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await conn.execute("UPDATE replicas SET epoch = epoch + 1000 WHERE replica_id = 'a'")
        with pytest.raises(StorageUnavailable):
            await a.quotas.take(key)
        assert await places(pg_dsn) == []


# -- two gateways, both protocols --------------------------------------------------------------


@dataclass
class Pair:
    alpha: RunningGateway
    beta: RunningGateway
    rest: httpx.AsyncClient  # beta's bridge
    dsn: str


def slow(seconds: float) -> dict[str, str]:
    return {"FAKE_AGENT_SECONDS": str(seconds)}


def bearer(name: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret(name)}"),)


def header(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(name)}"}


def completion(**fields: Any) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi", **fields))


@contextlib.asynccontextmanager
async def pair_of(
    tmp_path: Path, dsn: str, *, local_max: int = 10, **limits: dict[str, Any]
) -> AsyncIterator[Pair]:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "name": name,
                        "sha256": digest_of(secret(name)).hex(),
                        "tenant": "team-a",
                        "scopes": ["run", "read", "cancel"],
                        **fields,
                    }
                    for name, fields in limits.items()
                ]
            }
        )
    )

    def config(replica_id: str) -> Any:
        made = cluster_config(
            tmp_path,
            dsn,
            replica_id,
            codex_bin=AGENTS_DIR / "slow_agent.py",
            api_token=ADMIN,
            api_keys_file=keys_file,
        )
        return dataclasses.replace(made, max_concurrent=local_max)

    async with (
        running_gateway(config("alpha"), background=True) as alpha,
        running_gateway(config("beta"), background=True) as beta,
        running_bridge(beta.target) as url,
        httpx.AsyncClient(base_url=url, timeout=WAIT_S * 2, trust_env=False) as rest,
    ):
        yield Pair(alpha, beta, rest, dsn)


@pytest.mark.timeout(180)
async def test_a_keys_runs_through_both_replicas_and_protocols_are_limited_cluster_wide(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with pair_of(tmp_path, pg_dsn, limited={"max_concurrent": 2}) as pair:
        grpc_calls = [
            pair.alpha.stub.Complete(completion(env=slow(3)), metadata=bearer("limited"))
            for _ in range(3)
        ]
        rest_calls = [
            pair.rest.post(
                "/completion", json={"prompt": "hi", "env": slow(3)}, headers=header("limited")
            )
            for _ in range(3)
        ]
        results = await asyncio.gather(*grpc_calls, *rest_calls, return_exceptions=True)
        done = [r for r in results[:3] if isinstance(r, runs_pb2.CompleteResponse)]
        done += [r for r in results[3:] if isinstance(r, httpx.Response) and r.status_code == 200]
        assert len(done) == 2, results
        for result in results[:3]:
            if isinstance(result, grpc.aio.AioRpcError):
                assert result.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert facts(result) == (
                    "CONCURRENCY_LIMIT",
                    {"retry_after": "5", "active": "2", "max": "2"},
                    5,
                )
            else:
                assert isinstance(result, runs_pb2.CompleteResponse), result
        for result in results[3:]:
            assert isinstance(result, httpx.Response), result
            if result.status_code != 200:
                assert result.status_code == 429, result.text
                body = result.json()
                assert result.headers["retry-after"] == "5"
                assert (body["reason"], body["active"], body["max"]) == ("CONCURRENCY_LIMIT", 2, 2)
        assert await places(pair.dsn) == []
        # Sequential runs through either replica: each place is back before its caller hears.
        for n in range(4):
            gw = (pair.alpha, pair.beta)[n % 2]
            answer = await gw.stub.Complete(completion(env=slow(0)), metadata=bearer("limited"))
            assert answer.result.status == "completed"
            answer = await gw.stub.Complete(completion(env=slow(0)), metadata=bearer("limited"))
            assert answer.result.status == "completed"
        assert await places(pair.dsn) == []


async def _held(dsn: str, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while len(await places(dsn)) != count:
        assert asyncio.get_running_loop().time() < deadline, f"never {count} place(s) held"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(180)
async def test_the_place_comes_back_after_cancel_timeout_and_the_gateway_wide_refusal(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with pair_of(tmp_path, pg_dsn, local_max=1, limited={"max_concurrent": 1}) as pair:
        md = bearer("limited")
        # Cancelled (through the other replica, forwarded to the session's home).
        call = pair.alpha.stub.StreamCompletion(
            runs_pb2.StreamCompletionRequest(run=runs_pb2.RunInput(prompt="hi", env=slow(30))),
            metadata=md,
        )
        first = await call.read()
        assert first is not grpc.aio.EOF
        session_id = first.started.session_id
        assert await places(pair.dsn) == [("limited", "alpha")]
        refused = await pair.rest.post(
            "/completion", json={"prompt": "hi"}, headers=header("limited")
        )
        assert refused.status_code == 429 and refused.json()["reason"] == "CONCURRENCY_LIMIT"
        cancel = await pair.rest.post(f"/sessions/{session_id}/cancel", headers=header("limited"))
        assert cancel.status_code == 200, cancel.text
        with pytest.raises(grpc.aio.AioRpcError):
            while await call.read() is not grpc.aio.EOF:
                pass
        await _held(pair.dsn, 0)

        # Its deadline.
        with pytest.raises(grpc.aio.AioRpcError) as timed_out:
            await pair.beta.stub.Complete(completion(env=slow(30), timeout_ms=1000), metadata=md)
        assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await _held(pair.dsn, 0)

        # Refused by the gateway-wide limit (beta's one slot held by the admin, who has no
        # quota): the gateway's own numbers, and the key's place given back.
        admin = (("authorization", f"Bearer {ADMIN}"),)
        holder = asyncio.ensure_future(
            pair.beta.stub.Complete(completion(env=slow(3)), metadata=admin)
        )
        await eventually(lambda: pair.beta.gateway.slots.active == 1, "the admin's run")
        answer = await pair.rest.post(
            "/completion", json={"prompt": "hi"}, headers=header("limited")
        )
        assert answer.status_code == 429
        assert (answer.json()["active"], answer.json()["max"]) == (1, 1)
        assert await places(pair.dsn) == []
        done = await pair.alpha.stub.Complete(completion(env=slow(0)), metadata=md)
        assert done.result.status == "completed"
        assert (await holder).result.status == "completed"
        assert await places(pair.dsn) == []


@pytest.mark.timeout(180)
async def test_runs_per_minute_is_shared_by_the_replicas_on_both_protocols(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with pair_of(tmp_path, pg_dsn, metered={"runs_per_minute": 2}) as pair:
        ok = await pair.alpha.stub.Complete(completion(env=slow(0)), metadata=bearer("metered"))
        assert ok.result.status == "completed"
        answer = await pair.rest.post(
            "/completion", json={"prompt": "hi", "env": slow(0)}, headers=header("metered")
        )
        assert answer.status_code == 200, answer.text
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pair.alpha.stub.Complete(completion(env=slow(0)), metadata=bearer("metered"))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reason, metadata, retry = facts(caught.value)
        assert reason == "RATE_LIMITED"
        assert 20 <= int(metadata["retry_after"]) <= 30 and retry == int(metadata["retry_after"])
        answer = await pair.rest.post(
            "/completion", json={"prompt": "hi"}, headers=header("metered")
        )
        assert answer.status_code == 429
        body = answer.json()
        assert body["reason"] == "RATE_LIMITED"
        assert answer.headers["retry-after"] == str(body["retry_after"])
        assert await places(pair.dsn) == []
        # The admin (no quota) runs on.
        admin = await pair.beta.stub.Complete(
            completion(env=slow(0)), metadata=(("authorization", f"Bearer {ADMIN}"),)
        )
        assert admin.result.status == "completed"
