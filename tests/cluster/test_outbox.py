"""The cluster's webhook outbox on a real PostgreSQL, delivering to a real receiver on 127.0.0.1:
one delivery per run with one Idempotency-Key, whichever replica sends it, through retries,
races, a replica dying mid-attempt, the database going down, and a real codex run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from codex_gateway.v1 import runs_pb2
from gateway.automation.webhooks import WebhookSender
from gateway.cluster.database import Database
from gateway.cluster.node import ClusterNode
from gateway.cluster.outbox import DatabaseOutbox, delivery_id_for
from gateway.cluster.replicas import Connection
from gateway.cluster.signals import ControlSignals
from gateway.config import ClusterConfig, WebhookConfig
from gateway.errors import StorageUnavailable
from tests.fakes.model_server import ModelServer
from tests.fakes.webhook_receiver import Receiver, Reply
from tests.gateway.test_webhooks import eventually, run_payload, running, webhook_config
from tests.harness import cluster_config, running_gateway
from tests.postgres import PostgresServer, running_postgres

POLL_S = 0.1


@contextlib.asynccontextmanager
async def opened(dsn: str) -> AsyncIterator[Database]:
    database = Database(dsn)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def outbox(
    database: Database, config: WebhookConfig, spool: Path, replica_id: str, **options: Any
) -> DatabaseOutbox:
    return DatabaseOutbox(database, config, spool, replica_id=replica_id, poll_s=POLL_S, **options)


async def rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(query.encode())
        return list(await cursor.fetchall())


def spooled(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.json"))


# -- one delivery -------------------------------------------------------------------------------


async def test_a_runs_webhook_is_delivered_once_with_its_idempotency_key(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for()
    config = webhook_config(receiver.url)
    payload = run_payload(1)
    async with opened(pg_dsn) as database:
        box = outbox(database, config, tmp_path / "spool", "alpha")
        sender = WebhookSender(config, box)
        async with running(sender):
            sender.enqueue(payload)
            await eventually(lambda: sender.status()["delivered"] == 1)
            assert await sender.pending() == 0
    (request,) = receiver.requests
    key = delivery_id_for(payload)
    assert key == str(uuid.uuid5(uuid.UUID("5d0f3c1e-8a4b-4c47-9f0e-6b1f2a7c9d31"), "run-1"))
    assert request.headers["idempotency-key"] == key
    assert request.headers["x-codex-gateway-delivery"] == key
    assert request.headers["x-codex-gateway-attempt"] == "1"
    assert json.loads(request.body) == payload
    ((status, attempts, leased_by, delivered_at),) = await rows(
        pg_dsn, "SELECT status, attempts, leased_by, delivered_at FROM webhook_outbox"
    )
    assert (status, attempts, leased_by) == ("delivered", 1, None)
    assert delivered_at is not None
    assert spooled(tmp_path / "spool") == []  # in the database: the spool file is gone


async def test_a_run_queued_twice_is_one_delivery(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver]
) -> None:
    """Two replicas queueing the same run (its own, and the reaper's) name it alike."""
    receiver = receiver_for()
    config = webhook_config(receiver.url)
    async with opened(pg_dsn) as database:
        first = WebhookSender(config, outbox(database, config, tmp_path / "a", "alpha"))
        second = WebhookSender(config, outbox(database, config, tmp_path / "b", "beta"))
        async with running(first), running(second):
            first.enqueue(run_payload(7))
            second.enqueue(run_payload(7, status="interrupted"))
            await eventually(lambda: len(receiver.requests) >= 1)
            await eventually(lambda: first.status()["pending"] + second.status()["pending"] == 0)
            await asyncio.sleep(5 * POLL_S)
    assert len(receiver.requests) == 1
    assert await rows(pg_dsn, "SELECT count(*) FROM webhook_outbox") == [(1,)]


async def test_a_receiver_that_answers_500_then_200_gets_the_same_key_twice(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(Reply(500))
    config = webhook_config(receiver.url)
    async with opened(pg_dsn) as database:
        sender = WebhookSender(config, outbox(database, config, tmp_path / "spool", "alpha"))
        async with running(sender):
            sender.enqueue(run_payload(2))
            await eventually(lambda: sender.status()["delivered"] == 1)
    assert [r.status for r in receiver.requests] == [500, 200]
    assert len({r.headers["idempotency-key"] for r in receiver.requests}) == 1
    assert [r.headers["x-codex-gateway-attempt"] for r in receiver.requests] == ["1", "2"]
    ((status, attempts, last_error),) = await rows(
        pg_dsn, "SELECT status, attempts, last_error FROM webhook_outbox"
    )
    assert (status, attempts, last_error) == ("delivered", 2, "HTTP 500")


async def test_exhausted_attempts_leave_the_row_failed_with_its_error(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(*[Reply(503)] * 5)
    config = webhook_config(receiver.url, max_attempts=3)
    async with opened(pg_dsn) as database:
        sender = WebhookSender(config, outbox(database, config, tmp_path / "spool", "alpha"))
        async with running(sender):
            sender.enqueue(run_payload(3))
            await eventually(lambda: sender.status()["failed"] == 1)
            assert await sender.pending() == 0
    assert len(receiver.requests) == 3
    ((status, attempts, last_error),) = await rows(
        pg_dsn, "SELECT status, attempts, last_error FROM webhook_outbox"
    )
    assert (status, attempts, last_error) == ("failed", 3, "HTTP 503")


async def test_an_outcome_is_counted_once_the_outbox_has_recorded_it(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver]
) -> None:
    """status()'s counts follow the outbox: while another transaction holds the delivery's row,
    its failure (already answered by the receiver) is not counted; once it is, nothing is
    pending. The count came first once, and a test reading it saw the row still pending."""
    receiver = receiver_for(Reply(503, delay_s=0.5))
    config = webhook_config(receiver.url, max_attempts=1)
    async with opened(pg_dsn) as database:
        sender = WebhookSender(config, outbox(database, config, tmp_path / "spool", "alpha"))
        async with await psycopg.AsyncConnection.connect(pg_dsn) as holder, running(sender):
            sender.enqueue(run_payload(3))
            await eventually(lambda: len(receiver.requests) == 1)  # answered in 0.5 s
            await holder.execute(b"SELECT 1 FROM webhook_outbox FOR UPDATE")
            await asyncio.sleep(1.0)  # the 503 has come; recording it waits for the row
            assert sender.status()["failed"] == 0
            await holder.commit()
            await eventually(lambda: sender.status()["failed"] == 1)
            assert await sender.pending() == 0


# -- replicas racing ----------------------------------------------------------------------------


async def test_two_replicas_racing_over_200_deliveries_deliver_each_once(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver]
) -> None:
    # Each answer takes a moment, so that both replicas have attempts in flight at once.
    receiver = receiver_for(*[Reply(200, delay_s=0.01)] * 200)
    config = webhook_config(receiver.url)
    stop = asyncio.Event()
    async with opened(pg_dsn) as database:
        signals = ControlSignals(pg_dsn)
        listening = asyncio.create_task(signals.run(stop))
        try:
            replicas = [
                WebhookSender(
                    config,
                    # One listener per process: beta wakes on the signal, both poll as well.
                    outbox(database, config, tmp_path / name, name, signals=signals if n else None),
                )
                for n, name in enumerate(("alpha", "beta"))
            ]
            # Queued by a third replica, which does not deliver.
            producer = outbox(database, config, tmp_path / "producer", "gamma")
            for n in range(200):
                producer.queue(run_payload(n))
            async with running(replicas[0]), running(replicas[1]):
                await producer.run(stop_at_once())
                await eventually(
                    lambda: sum(r.status()["delivered"] for r in replicas) >= 200, timeout_s=40
                )
                await asyncio.sleep(5 * POLL_S)  # a duplicate would have come by now
        finally:
            stop.set()
            await listening
    keys = [r.headers["idempotency-key"] for r in receiver.requests]
    assert len(keys) == 200
    assert len(set(keys)) == 200
    assert sorted(json.loads(r.body)["run_id"] for r in receiver.requests) == sorted(
        f"run-{n}" for n in range(200)
    )
    counts = [r.status()["delivered"] for r in replicas]
    assert sum(counts) == 200
    assert all(count > 0 for count in counts), counts  # both took part in the race
    assert await rows(
        pg_dsn, "SELECT status, count(*), max(attempts) FROM webhook_outbox GROUP BY status"
    ) == [("delivered", 200, 1)]


def stop_at_once() -> asyncio.Event:
    """An outbox's loop told to stop: it inserts what it holds once, then returns."""
    stop = asyncio.Event()
    stop.set()
    return stop


async def test_a_replica_that_lost_its_lease_cannot_overwrite_the_outcome(
    tmp_path: Path, pg_dsn: str
) -> None:
    config = webhook_config("http://127.0.0.1:9/hook", timeout_ms=200)
    async with opened(pg_dsn) as database:
        paused = outbox(database, config, tmp_path / "a", "alpha", lease_margin_s=0.1)
        other = outbox(database, config, tmp_path / "b", "beta", lease_margin_s=0.1)
        paused.queue(run_payload(4))
        await paused.run(stop_at_once())
        (taken,) = await paused.take(4)
        assert await other.take(4) == []  # leased: nobody else gets it
        await asyncio.sleep(0.5)  # the lease (300 ms) runs out: the replica was paused past it
        (again,) = await other.take(4)
        assert again.id == taken.id
        await other.delivered(again)
        await paused.failed(taken, "too late")  # the paused replica wakes up with its outcome
        assert paused.lost_leases == 1
    assert await rows(pg_dsn, "SELECT status, attempts, last_error FROM webhook_outbox") == [
        ("delivered", 2, None)
    ]


async def test_the_replica_that_leased_a_delivery_dies_mid_attempt_another_delivers_it(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver]
) -> None:
    # The first attempt hangs; its replica dies during it (its loop stopped, nothing recorded).
    receiver = receiver_for(Reply(200, delay_s=30))
    config = webhook_config(receiver.url, timeout_ms=1000)
    async with opened(pg_dsn) as database:
        doomed = WebhookSender(
            config, outbox(database, config, tmp_path / "a", "alpha", lease_margin_s=0.5)
        )
        async with running(doomed):
            doomed.enqueue(run_payload(5))
            await eventually(lambda: len(receiver.requests) == 1)
        ((leased_by, attempts),) = await rows(
            pg_dsn, "SELECT leased_by, attempts FROM webhook_outbox WHERE status = 'pending'"
        )
        assert leased_by.startswith("alpha/") and attempts == 1
        survivor = WebhookSender(config, outbox(database, config, tmp_path / "b", "beta"))
        async with running(survivor):
            await eventually(lambda: survivor.status()["delivered"] == 1, timeout_s=15)
    first, second = receiver.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert second.headers["x-codex-gateway-attempt"] == "2"
    assert second.accepted
    assert await rows(pg_dsn, "SELECT status, attempts, leased_by FROM webhook_outbox") == [
        ("delivered", 2, None)
    ]


# -- the database down --------------------------------------------------------------------------


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, which it may stop and start."""
    with running_postgres() as server:
        yield server


def stop_postgres(server: PostgresServer) -> None:
    server.stop("fast")


def start_postgres(server: PostgresServer) -> None:
    server.start()


async def test_a_delivery_queued_while_the_database_is_down_is_delivered_once_it_is_back(
    tmp_path: Path, private_postgres: PostgresServer, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for()
    config = webhook_config(receiver.url)
    with psycopg.connect(private_postgres.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("outbox")))
    dsn = private_postgres.dsn("outbox")
    spool = tmp_path / "spool"
    async with opened(dsn) as database:
        sender = WebhookSender(config, outbox(database, config, spool, "alpha"))
        async with running(sender):
            stop_postgres(private_postgres)
            sender.enqueue(run_payload(6))
            assert len(spooled(spool)) == 1  # kept on this replica's disk meanwhile
            assert sender.status()["pending"] == 1
            with pytest.raises(StorageUnavailable):
                await sender.pending()
            await asyncio.sleep(1.5)  # several tries at inserting it, all failing
            assert receiver.requests == []
            start_postgres(private_postgres)
            await eventually(lambda: sender.status()["delivered"] == 1, timeout_s=30)
    (request,) = receiver.requests
    assert json.loads(request.body) == run_payload(6)
    assert request.headers["idempotency-key"] == delivery_id_for(run_payload(6))
    assert spooled(spool) == []
    assert await rows(dsn, "SELECT status FROM webhook_outbox") == [("delivered",)]


async def test_a_delivery_spooled_by_a_replica_that_stopped_is_queued_at_its_next_start(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for()
    config = webhook_config(receiver.url)
    spool = tmp_path / "spool"
    async with opened(pg_dsn) as database:
        # The replica queued it and died before its loop could insert it.
        outbox(database, config, spool, "alpha").queue(run_payload(8))
        assert len(spooled(spool)) == 1
        sender = WebhookSender(config, outbox(database, config, spool, "alpha"))
        async with running(sender):
            await eventually(lambda: sender.status()["delivered"] == 1)
    assert [json.loads(r.body)["run_id"] for r in receiver.requests] == ["run-8"]
    assert spooled(spool) == []


async def test_a_delivery_the_database_refuses_is_set_aside_and_holds_back_no_other(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for()
    config = webhook_config(receiver.url)
    spool = tmp_path / "spool"
    refused = run_payload(9)
    refused["metadata"] = {"score": float("nan")}  # JSON's NaN: no jsonb value
    nul = run_payload(10)
    nul["output"] = "a\x00b"  # jsonb has no NUL: sent as U+FFFD
    async with opened(pg_dsn) as database:
        sender = WebhookSender(config, outbox(database, config, spool, "alpha"))
        sender.enqueue(refused)
        sender.enqueue(nul)
        sender.enqueue(run_payload(11))
        async with running(sender):
            await eventually(lambda: sender.status()["delivered"] == 2)
            await eventually(lambda: sender.status()["pending"] == 0)
    bodies = sorted((json.loads(r.body) for r in receiver.requests), key=lambda b: b["run_id"])
    assert [body["run_id"] for body in bodies] == ["run-10", "run-11"]
    assert bodies[0]["output"] == "a\ufffdb"
    assert spooled(spool) == []
    (aside,) = sorted((spool / "failed").glob("*.json"))
    assert json.loads(aside.read_text().replace("NaN", "null"))["payload"]["run_id"] == "run-9"


# -- two in-process replicas and a real codex run -----------------------------------------------


async def test_a_codex_runs_webhook_arrives_once_with_two_replicas_delivering(
    tmp_path: Path,
    pg_dsn: str,
    model_server: ModelServer,
    receiver_for: Callable[..., Receiver],
) -> None:
    receiver = receiver_for()
    webhook = WebhookConfig(url=receiver.url, retry_base_ms=10, retry_max_ms=50)
    async with contextlib.AsyncExitStack() as stack:
        alpha = await stack.enter_async_context(
            running_gateway(
                cluster_config(
                    tmp_path, pg_dsn, "alpha", model_url=model_server.base_url, webhook=webhook
                ),
                background=True,
            )
        )
        await stack.enter_async_context(
            running_gateway(
                cluster_config(
                    tmp_path, pg_dsn, "beta", model_url=model_server.base_url, webhook=webhook
                ),
                background=True,
            )
        )
        response = await alpha.stub.Complete(
            runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="say hello"))
        )
        result = response.result
        assert result.status == "completed"
        await eventually(lambda: len(receiver.requests) == 1, timeout_s=20)
        # Both replicas keep polling the outbox: the delivery is not made again.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            pending = await alpha.gateway.webhooks.pending()
            if pending == 0:
                break
            await asyncio.sleep(0.05)
        assert pending == 0
        await asyncio.sleep(2.5)  # more than two polls of each replica
    (request,) = receiver.requests
    body = json.loads(request.body)
    assert body["run_id"]
    assert body["session_id"] == result.session_id
    assert body["status"] == "completed"
    assert body["output"] == result.output
    assert request.headers["idempotency-key"] == delivery_id_for(body)
    assert await rows(pg_dsn, "SELECT status, attempts FROM webhook_outbox") == [("delivered", 1)]


# -- the runs of a reaped replica ---------------------------------------------------------------


def _node(dsn: str, replica_id: str, port: int) -> ClusterNode:
    return ClusterNode(
        ClusterConfig(
            database_url=dsn,
            replica_id=replica_id,
            advertise_addr=f"127.0.0.1:{port}",
            lease_ms=1000,
        )
    )


async def _running_run(dsn: str, replica: str, epoch: int, n: int) -> None:
    """A session and its running run, as the store writes them for `replica` at `epoch`."""
    record = {
        "run_id": f"run-{n}",
        "status": "running",
        "started_at": "2026-01-01T00:00:00.000Z",
        "prompt_preview": "fix the bu",
        "model": "gpt-test",
        "source": "prompt",
        "metadata": {"team": "qa"},
        "first_seq": 3,
    }
    meta = {
        "session_id": f"gw-{n}",
        "workspace": "/workspace",
        "metadata": {"team": "qa"},
        "last_input": {"messages": [{"role": "user", "content": "fix the bug"}]},
        "runs": [record],
        **({"tenant": "team-a"} if n == 1 else {}),  # the other: from before tenants
    }
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO sessions (session_id, codex_session_id, home_replica, replica_epoch,"
            " secure, status, active_run_id, created_at, updated_at, meta)"
            " VALUES (%s, %s, %s, %s, false, 'running', %s, now(), now(), %s::jsonb)",
            (f"gw-{n}", f"codex-{n}", replica, epoch, f"run-{n}", json.dumps(meta)),
        )
        await conn.execute(
            "INSERT INTO runs (run_id, session_id, replica_id, replica_epoch, status, source,"
            " started_at, record) VALUES (%s, %s, %s, %s, 'running', 'prompt', now(), %s::jsonb)",
            (f"run-{n}", f"gw-{n}", replica, epoch, json.dumps(record)),
        )


async def _store_interrupts(conn: Connection, replica_id: str) -> None:
    """What the session store's reap hook does first (registered before the outbox's)."""
    await conn.execute(
        "UPDATE runs u SET status = 'interrupted', completed_at = now(),"
        " record = u.record || jsonb_build_object('status', 'interrupted',"
        " 'error', 'lost with its replica', 'completed_at', '2026-01-01T00:01:00.000Z')"
        " FROM replicas r WHERE r.replica_id = u.replica_id AND u.replica_id = %s"
        " AND u.status = 'running' AND u.replica_epoch < r.epoch",
        (replica_id,),
    )


@pytest.mark.parametrize("store_first", [False, True], ids=["alone", "after-the-store"])
async def test_the_runs_of_a_reaped_replica_get_their_interrupted_webhook(
    tmp_path: Path, pg_dsn: str, receiver_for: Callable[..., Receiver], store_first: bool
) -> None:
    receiver = receiver_for()
    config = webhook_config(receiver.url)
    survivor, doomed = _node(pg_dsn, "a", 50001), _node(pg_dsn, "b", 50002)
    if store_first:
        survivor.replicas.on_reap(_store_interrupts)
    box = DatabaseOutbox(
        survivor.database,
        config,
        tmp_path / "spool",
        replica_id="a",
        replicas=survivor.replicas,
        poll_s=POLL_S,
    )
    await survivor.open()
    await doomed.open()
    try:
        await _running_run(pg_dsn, "b", doomed.replicas.epoch, 1)
        await _running_run(pg_dsn, "a", survivor.replicas.epoch, 2)
        for _ in range(50):  # the doomed replica stops renewing: reaped after two leases
            if await survivor.replicas.reap():
                break
            await survivor.replicas.beat()
            await asyncio.sleep(0.1)
        # The survivor's own run, at its current epoch, is none of the reaper's business.
        assert await rows(pg_dsn, "SELECT payload->>'run_id' FROM webhook_outbox") == [("run-1",)]
        # The survivor restarts: its earlier incarnation's running run is a finished run too.
        await survivor.replicas.register()
        assert await rows(pg_dsn, "SELECT payload->>'run_id' FROM webhook_outbox ORDER BY 1") == [
            ("run-1",),
            ("run-2",),
        ]
        sender = WebhookSender(config, box)
        async with running(sender):
            await eventually(lambda: sender.status()["delivered"] == 2)
    finally:
        await doomed.close()
        await survivor.close()
    receiver.requests.sort(key=lambda r: json.loads(r.body)["run_id"])
    assert json.loads(receiver.requests[1].body)["status"] == "interrupted"
    assert json.loads(receiver.requests[1].body)["tenant"] == "default"
    request = receiver.requests[0]
    body = json.loads(request.body)
    assert request.headers["idempotency-key"] == delivery_id_for({"run_id": "run-1"})
    assert body["status"] == "interrupted"
    assert {key: body[key] for key in ("session_id", "codex_session_id", "run_id")} == {
        "session_id": "gw-1",
        "codex_session_id": "codex-1",
        "run_id": "run-1",
    }
    assert body["prompt"] == "fix the bug"
    assert body["tenant"] == "team-a"
    assert body["workspace"] == "/workspace"
    assert body["metadata"] == {"team": "qa"}
    assert body["output"] == ""
    assert body["model"] == "gpt-test" and body["source"] == "prompt"
    assert body["first_seq"] == 3
    assert body["error"] == (
        "lost with its replica" if store_first else "replica b stopped during this run"
    )
    assert body["failure"] == {
        "kind": "interrupted",
        "message": body["error"],
        "retry_after_ms": None,
    }
