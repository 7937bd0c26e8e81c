"""Webhook deliveries against receivers that answer slowly or never finish answering: each
attempt has one deadline, and a stuck delivery never holds up the others.

The receiver is real (tests/fakes/webhook_receiver.py on 127.0.0.1); its "drip" replies send
the status line and then header bytes one at a time, forever: every read succeeds within any
per-read timeout, which is how one receiver held an attempt for ~1,000 s."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.automation.webhooks import WebhookSender
from tests.fakes.webhook_receiver import Receiver, Reply
from tests.gateway.test_webhooks import (
    eventually,
    failed_files,
    run_payload,
    running,
    webhook_config,
)


@pytest.fixture
def receiver_choosing() -> Iterator[Callable[..., Receiver]]:
    """Receivers that pick a reply by request body (`choose`) before their script."""
    started: list[Receiver] = []

    def start(choose: Callable[[bytes], Reply | None], *script: Reply) -> Receiver:
        receiver = Receiver(script, choose=choose).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def drip_for(marker: bytes, interval_s: float) -> Callable[[bytes], Reply | None]:
    return lambda body: Reply(drip_s=interval_s) if marker in body else None


# -- the fake -------------------------------------------------------------------------------------


def test_dripping_receiver_sends_byte_after_byte_until_the_client_hangs_up(
    receiver_choosing: Callable[..., Receiver],
) -> None:
    receiver = receiver_choosing(drip_for(b"slow", 0.05))
    port = int(receiver.url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        body = b"slow"
        client.sendall(
            b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        reads = 0
        while len(received) < 20:
            chunk = client.recv(1024)
            assert chunk, "the receiver closed a dripping answer"
            received += chunk
            reads += 1
    # Byte after byte (a read may find two, if the test was slow to read): never a whole answer.
    assert received.startswith(b"HTTP/1.1 200 OK\r\nX-Drip: 1\r\n"[: len(received)])
    assert reads >= 10
    eventually_sync(lambda: len(receiver.hang_ups) == 1 and receiver.dripping == 0)
    assert len(receiver.requests) == 1
    assert receiver.accepted() == []  # an answer that never completes accepted nothing


def test_dripping_receiver_can_drip_the_body_after_whole_headers(
    receiver_choosing: Callable[..., Receiver],
) -> None:
    receiver = receiver_choosing(lambda body: Reply(500, drip_s=0.05, drip_body=True))
    with (
        httpx.Client(trust_env=False, timeout=5) as client,
        client.stream("POST", receiver.url, content=b"x") as response,
    ):
        assert response.status_code == 500
        read = b""
        for chunk in response.iter_bytes():
            read += chunk
            if len(read) >= 3:
                break
    assert read.startswith(b"xxx")
    eventually_sync(lambda: len(receiver.hang_ups) == 1 and receiver.dripping == 0)


def test_receiver_chooses_by_body_then_follows_its_script(
    receiver_choosing: Callable[..., Receiver],
) -> None:
    receiver = receiver_choosing(lambda body: Reply(418) if body == b"tea" else None, Reply(500))
    with httpx.Client(trust_env=False) as client:
        statuses = [
            client.post(receiver.url, content=body).status_code for body in (b"tea", b"x", b"x")
        ]
    assert statuses == [418, 500, 200]


def eventually_sync(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# -- the sender -----------------------------------------------------------------------------------


async def test_an_attempt_against_a_dripping_receiver_ends_at_its_deadline(
    tmp_path: Path, receiver_choosing: Callable[..., Receiver]
) -> None:
    # A byte every 0.2 s: each read well within the 1 s timeout, the answer never complete.
    receiver = receiver_choosing(drip_for(b"run-", 0.2))
    outbox = tmp_path / "outbox"
    sender = WebhookSender(webhook_config(receiver.url, timeout_ms=1000, max_attempts=1), outbox)
    started = time.monotonic()
    async with running(sender):
        sender.enqueue(run_payload(1))
        # 20x the deadline: generous for a loaded machine, and far short of "forever".
        await eventually(lambda: sender.status()["failed"] == 1, timeout_s=20)
    assert time.monotonic() - started < 20
    (failed,) = failed_files(outbox)
    record = json.loads(failed.read_bytes())
    assert record["attempts"] == 1
    assert record["last_error"] == "no complete answer within 1000 ms"
    # The gateway hung up on the receiver: it was not left holding a connection either.
    await eventually(lambda: len(receiver.hang_ups) == 1, timeout_s=10)


async def test_a_refusal_dripping_its_body_ends_at_the_deadline(
    tmp_path: Path, receiver_choosing: Callable[..., Receiver]
) -> None:
    # A 503's body is read for the log, at most a few hundred bytes and within the deadline:
    # the headers came at once, and then a byte every 0.2 s, forever.
    receiver = receiver_choosing(lambda body: Reply(503, drip_s=0.2, drip_body=True))
    outbox = tmp_path / "outbox"
    sender = WebhookSender(webhook_config(receiver.url, timeout_ms=1000, max_attempts=1), outbox)
    async with running(sender):
        sender.enqueue(run_payload(2))
        await eventually(lambda: sender.status()["failed"] == 1, timeout_s=20)
    (failed,) = failed_files(outbox)
    assert json.loads(failed.read_bytes())["last_error"] == "no complete answer within 1000 ms"
    await eventually(lambda: len(receiver.hang_ups) == 1, timeout_s=10)


async def test_a_delivery_reaches_the_receiver_while_four_others_drip(
    tmp_path: Path, receiver_choosing: Callable[..., Receiver]
) -> None:
    receiver = receiver_choosing(drip_for(b'"run_id":"run-drip', 0.2))
    # A 30 s deadline: the four dripping attempts stay stuck for the whole test.
    config = webhook_config(receiver.url, timeout_ms=30_000)
    sender = WebhookSender(config, tmp_path / "outbox")
    assert sender.status()["pending"] == 0
    async with running(sender):
        for n in range(4):
            payload = run_payload(n)
            payload["run_id"] = f"run-drip-{n}"
            sender.enqueue(payload)
        await eventually(lambda: receiver.dripping == 4)
        sender.enqueue(run_payload(99))
        await eventually(lambda: sender.status()["delivered"] == 1, timeout_s=15)
        assert receiver.dripping == 4  # still stuck, and yet the other run's webhook went out
    (accepted,) = receiver.accepted()
    assert json.loads(accepted.body)["run_id"] == "run-99"
    assert sender.status() == {"delivered": 1, "failed": 0, "pending": 4}


async def test_a_delivery_waiting_for_its_retry_holds_no_slot(
    tmp_path: Path, receiver_choosing: Callable[..., Receiver]
) -> None:
    # One slot: the first delivery is told to come back in a second; the second delivery goes
    # out in that second instead of waiting behind it.
    receiver = receiver_choosing(lambda body: None, Reply(503, {"Retry-After": "1"}))
    config = webhook_config(receiver.url, retry_max_ms=5000)
    sender = WebhookSender(config, tmp_path / "outbox", concurrency=1)
    async with running(sender):
        sender.enqueue(run_payload(0))
        await eventually(lambda: len(receiver.requests) == 1)
        sender.enqueue(run_payload(1))
        await eventually(lambda: sender.status()["delivered"] == 2)
    assert [json.loads(r.body)["run_id"] for r in receiver.requests] == ["run-0", "run-1", "run-0"]
