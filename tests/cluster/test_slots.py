"""Run slots across the cluster: at most CODEX_GATEWAY_CLUSTER_MAX_CONCURRENT runs at once over
every replica, on a real PostgreSQL; two replicas are two ClusterNodes (two replica ids, one
database) in this process, or two in-process gateways for the end-to-end cases."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from google.rpc import error_details_pb2, status_pb2

from codex_gateway.v1 import runs_pb2, sessions_pb2
from codex_gateway.v1 import status_pb2 as gw_status
from gateway.cluster.node import ClusterNode
from gateway.cluster.slots import ClusterSlots
from gateway.config import ClusterConfig
from gateway.errors import ConcurrencyLimitReached, StorageUnavailable
from gateway.runs.concurrency import RunSlots
from tests.fakes import AGENTS_DIR
from tests.harness import cluster_config, free_port, running_bridge, running_gateway
from tests.postgres import PostgresServer, running_postgres

WAIT_S = 30  # generous: the machine is shared


@dataclass
class Replica:
    node: ClusterNode
    slots: ClusterSlots
    local: RunSlots


@contextlib.asynccontextmanager
async def replica(
    dsn: str,
    replica_id: str,
    *,
    cluster_max: int,
    local_max: int = 100,
    listen: bool = True,
    poll_s: float = 0.3,
    lease_ms: int = 2000,
    loops: bool = True,
) -> AsyncIterator[Replica]:
    """A replica's node and slots, its heartbeat and release retries running (with `listen`,
    its control signals too)."""
    config = ClusterConfig(
        database_url=dsn,
        replica_id=replica_id,
        advertise_addr=f"127.0.0.1:{free_port()}",
        max_concurrent=cluster_max,
        lease_ms=lease_ms,
    )
    node = ClusterNode(config)
    local = RunSlots(local_max)
    slots = ClusterSlots(node, local, poll_s=poll_s)
    await node.open()
    stop = asyncio.Event()
    tasks = []
    if loops:
        tasks = [
            asyncio.create_task(node.replicas.run(stop)),
            asyncio.create_task(slots.run(stop)),
        ]
    if listen:
        tasks.append(asyncio.create_task(node.signals.run(stop)))
        await asyncio.wait_for(node.signals.connected.wait(), WAIT_S)
    try:
        yield Replica(node, slots, local)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        await node.close()


async def held(dsn: str) -> list[tuple[object, ...]]:
    """The claimed rows: (slot, run_id, replica_id)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT slot, run_id, replica_id FROM run_slots WHERE run_id IS NOT NULL ORDER BY slot"
        )
        return list(await cursor.fetchall())


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait (generously) until `check()` is true."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        if check():
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def hold_until(slots: ClusterSlots, run_id: str, release: asyncio.Event) -> None:
    async with slots.slot(run_id, wait=True):
        await release.wait()


async def test_the_table_is_sized_by_the_replica_that_starts_last(pg_dsn: str) -> None:
    async with replica(pg_dsn, "a", cluster_max=3) as a:
        assert await a.slots.report() == (0, 3)
        async with (
            a.slots.slot("run-1", wait=False),
            a.slots.slot("run-2", wait=False),
            replica(pg_dsn, "b", cluster_max=1) as b,
        ):
            # two held rows above the new size stay until they are freed
            assert await b.slots.report() == (2, 1)
            with pytest.raises(ConcurrencyLimitReached):
                async with b.slots.slot("run-3", wait=False):
                    pass
        assert await a.slots.report() == (0, 1)
        async with replica(pg_dsn, "c", cluster_max=0) as c:  # no limit: leaves the table alone
            assert await c.slots.report() == (0, 0)
            async with c.slots.slot("run-4", wait=False):
                assert await held(pg_dsn) == []
        assert await a.slots.report() == (0, 1)


@pytest.mark.timeout(180)
async def test_two_replicas_racing_for_the_last_slot_1000_times_never_exceed_it(
    pg_dsn: str,
) -> None:
    limit = 3
    holders = 0
    most = 0
    won = 0

    async def contend(replica_: Replica, run_id: str) -> bool:
        nonlocal holders, most
        try:
            async with replica_.slots.slot(run_id, wait=False):
                holders += 1
                most = max(most, holders)
                try:
                    in_table = len(await held(pg_dsn))
                    assert in_table <= limit
                    assert holders <= limit
                finally:
                    holders -= 1
        except ConcurrencyLimitReached as refused:
            assert refused.maximum == limit  # the count comes after the claim: may be lower
            return False
        return True

    async with (
        replica(pg_dsn, "a", cluster_max=limit) as a,
        replica(pg_dsn, "b", cluster_max=limit) as b,
    ):
        release = asyncio.Event()
        keepers = [
            asyncio.create_task(hold_until(a.slots, f"keep-{n}", release)) for n in range(limit - 1)
        ]
        await eventually(lambda: a.slots.active == limit - 1, "all but one slot to be held")
        holders = limit - 1
        for n in range(1000):
            wins = await asyncio.gather(contend(a, f"a-{n}"), contend(b, f"b-{n}"))
            assert any(wins), f"round {n}: the free slot went to nobody"
            won += sum(wins)
        release.set()
        await asyncio.gather(*keepers)
        assert await held(pg_dsn) == []
        assert a.slots.unreleased == b.slots.unreleased == set()
    assert most == limit
    assert won >= 1000


async def test_waiters_on_two_replicas_never_exceed_the_limit(pg_dsn: str) -> None:
    limit = 2
    holders = 0

    async def run(replica_: Replica, run_id: str) -> None:
        nonlocal holders
        async with replica_.slots.slot(run_id, wait=True):
            holders += 1
            try:
                assert holders <= limit
                assert len(await held(pg_dsn)) <= limit
                await asyncio.sleep(random.random() / 100)  # jitter
            finally:
                holders -= 1

    async with (
        replica(pg_dsn, "a", cluster_max=limit) as a,
        replica(pg_dsn, "b", cluster_max=limit) as b,
    ):
        await asyncio.wait_for(
            asyncio.gather(*(run((a, b)[n % 2], f"run-{n}") for n in range(100))), 120
        )
        assert await held(pg_dsn) == []
        assert (a.slots.waiting, b.slots.waiting, a.local.active, b.local.active) == (0, 0, 0, 0)


async def test_a_try_with_no_slot_free_is_refused_with_the_clusters_numbers(pg_dsn: str) -> None:
    async with (
        replica(pg_dsn, "a", cluster_max=1) as a,
        replica(pg_dsn, "b", cluster_max=1, local_max=4) as b,
        a.slots.slot("run-a", wait=False),
    ):
        with pytest.raises(ConcurrencyLimitReached) as refused:
            async with b.slots.slot("run-b", wait=False):
                pytest.fail("a second cluster slot was handed out")
        assert refused.value.details() == {"retry_after": "5", "active": "1", "max": "1"}
        assert (b.local.active, b.slots.available) == (0, 4)  # the local slot went back
        assert await b.slots.report() == (1, 1)
        assert await held(pg_dsn) == [(1, "run-a", "a")]


async def test_a_waiter_gets_the_slot_freed_on_another_replica_through_the_signal(
    pg_dsn: str,
) -> None:
    async with (
        replica(pg_dsn, "a", cluster_max=1) as a,
        replica(pg_dsn, "b", cluster_max=1, poll_s=3600) as b,  # no poll: only the signal
    ):
        release = asyncio.Event()
        holder = asyncio.create_task(hold_until(a.slots, "run-a", release))
        await eventually(lambda: a.slots.active == 1, "A to hold the slot")
        got = asyncio.Event()

        async def waiter() -> None:
            async with b.slots.slot("run-b", wait=True):
                got.set()
                await asyncio.sleep(3600)

        waiting = asyncio.create_task(waiter())
        await eventually(lambda: b.slots.waiting == 1, "B's run to wait")
        assert (b.slots.active, b.local.active) == (0, 1)
        received = b.node.signals.received
        release.set()
        await holder
        await asyncio.wait_for(got.wait(), WAIT_S)
        assert b.node.signals.received > received
        assert await held(pg_dsn) == [(1, "run-b", "b")]
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert await held(pg_dsn) == []


async def test_a_waiter_that_misses_the_signal_gets_the_slot_by_polling(pg_dsn: str) -> None:
    async with (
        replica(pg_dsn, "a", cluster_max=1) as a,
        replica(pg_dsn, "b", cluster_max=1, listen=False) as b,  # LISTEN never connected
    ):
        async with a.slots.slot("run-a", wait=False):
            waiting = asyncio.create_task(hold_until(b.slots, "run-b", asyncio.Event()))
            await eventually(lambda: b.slots.waiting == 1, "B's run to wait")
        await eventually(lambda: b.slots.active == 1, "B's run to get the slot by polling")
        assert b.node.signals.received == 0
        assert await held(pg_dsn) == [(1, "run-b", "b")]
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting


async def test_cancelled_waiters_leak_nothing(pg_dsn: str) -> None:
    async with (
        replica(pg_dsn, "a", cluster_max=1) as a,
        replica(pg_dsn, "b", cluster_max=1, poll_s=0.01) as b,
    ):
        # A takes and gives back the slot while B's waiters are cancelled at random moments,
        # some while their claim is on its way to the database.
        churn_stop = asyncio.Event()

        async def churn() -> None:
            n = 0
            while not churn_stop.is_set():
                n += 1
                async with a.slots.slot(f"a-{n}", wait=True):
                    await asyncio.sleep(0.002)

        churning = asyncio.create_task(churn())

        for n in range(60):
            waiter = asyncio.create_task(hold_until(b.slots, f"b-{n}", asyncio.Event()))
            await asyncio.sleep(random.random() / 50)  # jitter
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        churn_stop.set()
        await churning
        await eventually(lambda: not b.slots.unreleased, "uncertain claims to be released")
        assert await held(pg_dsn) == []
        assert (b.local.active, b.slots.waiting) == (0, 0)
        async with b.slots.slot("b-after", wait=False):  # the slot is still there to take
            assert await held(pg_dsn) == [(1, "b-after", "b")]


async def test_a_dead_replicas_slots_are_freed_by_the_reaper(pg_dsn: str) -> None:
    async with (
        replica(pg_dsn, "survivor", cluster_max=2, lease_ms=1000) as survivor,
        replica(pg_dsn, "doomed", cluster_max=2, lease_ms=1000, loops=False) as doomed,
    ):
        kept = [doomed.slots.slot(f"doomed-{n}", wait=False) for n in range(2)]
        for slot in kept:  # entered, never left (kept: a collected one would leave)
            await slot.__aenter__()
        assert len(await held(pg_dsn)) == 2
        await doomed.node.database.close()  # dies: no heartbeat, no release, no goodbye
        got = asyncio.create_task(hold_until(survivor.slots, "survivor-1", asyncio.Event()))
        await eventually(lambda: survivor.slots.active == 1, "the reaper to free a slot")
        assert survivor.node.replicas.reaped_total == 1
        assert await held(pg_dsn) == [(1, "survivor-1", "survivor")]
        got.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await got


async def test_a_restarted_replica_frees_what_its_earlier_incarnation_held(pg_dsn: str) -> None:
    config = ClusterConfig(
        database_url=pg_dsn,
        replica_id="r",
        advertise_addr=f"127.0.0.1:{free_port()}",
        max_concurrent=1,
    )
    first = ClusterNode(config)
    first_slots = ClusterSlots(first, RunSlots(1))
    await first.open()
    kept = first_slots.slot("old-run", wait=False)
    await kept.__aenter__()  # entered, never left
    await first.database.close()  # killed while it held the slot
    assert await held(pg_dsn) == [(1, "old-run", "r")]
    again = ClusterNode(config)
    again_slots = ClusterSlots(again, RunSlots(1))
    await again.open()
    try:
        assert await held(pg_dsn) == []
        async with again_slots.slot("new-run", wait=False):
            assert await held(pg_dsn) == [(1, "new-run", "r")]
    finally:
        await again.close()


def _stop(server: PostgresServer) -> None:
    server.stop("fast")


def _start(server: PostgresServer) -> None:
    server.start()


@pytest.mark.timeout(120)
async def test_the_database_down_at_a_claim_is_503_and_at_a_release_frees_it_once_back() -> None:
    with running_postgres() as server:
        dsn = server.dsn()
        async with replica(dsn, "a", cluster_max=2, local_max=2, lease_ms=30_000) as a:
            holding = a.slots.slot("held-run", wait=False)
            await holding.__aenter__()
            await asyncio.to_thread(_stop, server)
            try:
                for wait in (False, True):
                    with pytest.raises(StorageUnavailable):
                        async with asyncio.timeout(WAIT_S):  # never a hang
                            async with a.slots.slot(f"refused-{wait}", wait=wait):
                                pytest.fail("a slot without the database")
                    assert (a.local.active, a.slots.waiting) == (1, 0)
                await holding.__aexit__(None, None, None)  # the run ends: nowhere to release
                assert a.local.active == 0
                assert "held-run" in a.slots.unreleased
            finally:
                await asyncio.to_thread(_start, server)
            await eventually(lambda: not a.slots.unreleased, "the release to land")
            assert await held(dsn) == []
            async with a.slots.slot("after", wait=False), a.slots.slot("after-2", wait=False):
                assert len(await held(dsn)) == 2


def _error_info(error: grpc.aio.AioRpcError) -> dict[str, str]:
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    for detail in status_pb2.Status.FromString(raw).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return dict(info.metadata)
    raise AssertionError("no ErrorInfo")


@pytest.mark.timeout(120)
async def test_a_run_on_another_replica_while_the_only_slot_is_held_is_429_on_both_protocols(
    tmp_path: Path, pg_dsn: str
) -> None:
    slow = {"codex_bin": AGENTS_DIR / "slow_agent.py"}
    async with contextlib.AsyncExitStack() as stack:
        alpha = await stack.enter_async_context(
            running_gateway(cluster_config(tmp_path, pg_dsn, "alpha", max_concurrent=1, **slow))
        )
        beta = await stack.enter_async_context(
            running_gateway(cluster_config(tmp_path, pg_dsn, "beta", max_concurrent=1, **slow))
        )
        url = await stack.enter_async_context(running_bridge(beta.target))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60))
        stream = alpha.stub.StreamCompletion(
            runs_pb2.StreamCompletionRequest(
                run=runs_pb2.RunInput(prompt="hold", env={"FAKE_AGENT_SECONDS": "60"})
            )
        )
        started = await stream.read()
        assert started is not grpc.aio.EOF
        status = await beta.stub.GetStatus(gw_status.GetStatusRequest())
        assert (status.cluster.slots_in_use, status.cluster.slots_max) == (1, 1)

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await beta.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="x")))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        facts = _error_info(refused.value)
        assert facts.pop("request_id")  # every error names its request
        assert facts == {"retry_after": "5", "active": "1", "max": "1"}

        response = await client.post("/completion", json={"prompt": "x"})
        assert response.status_code == 429
        body = response.json()
        assert {key: body[key] for key in ("retry_after", "active", "max")} == {
            "retry_after": 5,
            "active": 1,
            "max": 1,
        }
        assert response.headers["retry-after"] == "5"
        beta_status = (await client.get("/status")).json()
        assert beta_status["concurrency"]["active"] == 0  # beta's own slot went back
        assert beta_status["cluster"]["slots_in_use"] == 1

        await alpha.stub.CancelSession(
            sessions_pb2.CancelSessionRequest(session_id=started.started.session_id)
        )
        with pytest.raises(grpc.aio.AioRpcError) as cancelled:
            while await stream.read() is not grpc.aio.EOF:
                pass
        assert cancelled.value.code() == grpc.StatusCode.CANCELLED
        assert await held(pg_dsn) == []  # released as the run ended, before its answer
        ok = await beta.stub.Complete(
            runs_pb2.CompleteRequest(
                run=runs_pb2.RunInput(prompt="x", env={"FAKE_AGENT_SECONDS": "0"})
            )
        )
        assert ok.result.status == "completed"
