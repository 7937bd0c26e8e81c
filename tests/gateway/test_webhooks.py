"""Webhook delivery against a real HTTP receiver on 127.0.0.1: retries, signatures, the outbox
surviving a restart, permanent failures and the counters."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.automation.webhooks import WebhookSender, retry_after_seconds
from gateway.config import WebhookConfig
from tests.fakes.webhook_receiver import Receiver, Reply

SECRET = "webhook-secret"


def test_receiver_scripts_replies_then_accepts(receiver_for: Callable[..., Receiver]) -> None:
    receiver = receiver_for(Reply(500), Reply(429, {"Retry-After": "3"}))
    with httpx.Client(trust_env=False) as client:
        statuses = [client.post(receiver.url, content=b"x").status_code for _ in range(3)]
    assert statuses == [500, 429, 200]
    assert [r.body for r in receiver.requests] == [b"x"] * 3


def free_port() -> int:
    """A loopback port nothing listens on (until a receiver is started on it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- helpers --------------------------------------------------------------------------------------


def webhook_config(url: str, **overrides: Any) -> WebhookConfig:
    values: dict[str, Any] = {
        "url": url,
        "timeout_ms": 2000,
        "auth_bearer": "bearer-token",
        "headers": {"X-Team": "qa"},
        "secret": SECRET,
        "max_attempts": 5,
        "retry_base_ms": 10,
        "retry_max_ms": 50,
    }
    values.update(overrides)
    return WebhookConfig(**values)


def run_payload(n: int = 0, status: str = "completed") -> dict[str, Any]:
    return {
        "session_id": f"gw-{n}",
        "gateway_session_id": f"gw-{n}",
        "codex_session_id": f"codex-{n}",
        "run_id": f"run-{n}",
        "status": status,
        "workspace": "/workspace",
        "prompt": "say hi",
        "output": "hi ✓",
        "usage": {"input_tokens": 3, "output_tokens": 1},
        "metadata": {"source": "test"},
        "error": None,
        "completed_at": "2025-01-01T00:00:00.000Z",
        "model": "gpt-test",
        "source": "prompt",
    }


@contextlib.asynccontextmanager
async def running(sender: WebhookSender) -> AsyncIterator[asyncio.Event]:
    """The delivery loop in the background; on exit it must stop within a second."""
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        async with asyncio.timeout(1):
            await task


async def eventually(check: Callable[[], bool], timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def outbox_files(outbox: Path) -> list[Path]:
    return sorted(outbox.glob("*.json"))


def failed_files(outbox: Path) -> list[Path]:
    return sorted((outbox / "failed").glob("*.json"))


# -- delivery -------------------------------------------------------------------------------------


async def test_retried_webhook_arrives_once_with_one_key_and_a_valid_signature(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(Reply(500), Reply(502))
    sender = WebhookSender(webhook_config(receiver.url), tmp_path / "outbox")
    payload = run_payload(1)

    async with running(sender):
        sender.enqueue(payload)
        await eventually(lambda: sender.status()["delivered"] == 1)

    assert len(receiver.requests) == 3
    assert len(receiver.accepted()) == 1
    keys = {r.headers["idempotency-key"] for r in receiver.requests}
    deliveries = {r.headers["x-codex-gateway-delivery"] for r in receiver.requests}
    assert len(keys) == 1
    assert keys == deliveries
    assert [r.headers["x-codex-gateway-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    for request in receiver.requests:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["authorization"] == "Bearer bearer-token"
        assert request.headers["x-team"] == "qa"
        assert json.loads(request.body) == payload
        # What a receiver does to verify the signature, as gateway/automation/webhooks.py says.
        timestamp = request.headers["x-codex-gateway-timestamp"]
        expected = hmac.new(
            SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
        ).hexdigest()
        assert hmac.compare_digest(
            request.headers["x-codex-gateway-signature"], f"sha256={expected}"
        )
        assert abs(time.time() - int(timestamp)) < 60
    assert outbox_files(tmp_path / "outbox") == []
    assert failed_files(tmp_path / "outbox") == []
    assert sender.status() == {"delivered": 1, "failed": 0, "pending": 0}


async def test_unsigned_when_no_secret_and_no_bearer(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for()
    config = webhook_config(receiver.url, secret=None, auth_bearer=None, headers={})
    sender = WebhookSender(config, tmp_path / "outbox")
    async with running(sender):
        sender.enqueue(run_payload())
        await eventually(lambda: sender.status()["delivered"] == 1)
    headers = receiver.requests[0].headers
    assert "x-codex-gateway-signature" not in headers
    assert "x-codex-gateway-timestamp" not in headers
    assert "authorization" not in headers


async def test_undelivered_webhook_survives_a_restart(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    outbox = tmp_path / "outbox"
    port = free_port()  # the receiver is down: nothing listens here yet
    config = webhook_config(f"http://127.0.0.1:{port}/hook", max_attempts=100)
    first = WebhookSender(config, outbox)
    async with running(first):
        first.enqueue(run_payload(7))
        await eventually(lambda: _attempts(outbox) >= 2)
    # The gateway went down: the delivery is still on disk, with its attempts counted.
    (left,) = outbox_files(outbox)
    record = json.loads(left.read_bytes())
    tried = record["attempts"]
    assert first.status() == {"delivered": 0, "failed": 0, "pending": 1}

    receiver = receiver_for(port=port)
    second = WebhookSender(config, outbox)
    async with running(second):
        await eventually(lambda: second.status()["delivered"] == 1)

    assert len(receiver.requests) == 1
    (request,) = receiver.requests
    assert request.headers["idempotency-key"] == record["id"]
    assert request.headers["x-codex-gateway-attempt"] == str(tried + 1)
    assert json.loads(request.body) == run_payload(7)
    assert outbox_files(outbox) == []


def _attempts(outbox: Path) -> int:
    for path in outbox_files(outbox):
        with contextlib.suppress(OSError, ValueError):
            return int(json.loads(path.read_bytes())["attempts"])
    return 0


async def test_attempt_count_continues_after_a_restart(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    outbox = tmp_path / "outbox"
    port = free_port()
    config = webhook_config(f"http://127.0.0.1:{port}/hook", max_attempts=5, retry_max_ms=20)
    first = WebhookSender(config, outbox)
    async with running(first):
        first.enqueue(run_payload())
        await eventually(lambda: _attempts(outbox) >= 2)
    tried = _attempts(outbox)

    receiver = receiver_for(*[Reply(500)] * 10, port=port)
    second = WebhookSender(config, outbox)
    async with running(second):
        await eventually(lambda: second.status()["failed"] == 1)
    assert len(receiver.requests) == 5 - tried
    (failed,) = failed_files(outbox)
    assert json.loads(failed.read_bytes())["attempts"] == 5


async def test_permanent_refusal_fails_at_once_and_keeps_the_file(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(Reply(400), Reply(400))
    outbox = tmp_path / "outbox"
    sender = WebhookSender(webhook_config(receiver.url), outbox)
    async with running(sender):
        sender.enqueue(run_payload(3))
        await eventually(lambda: sender.status()["failed"] == 1)
        await asyncio.sleep(0.2)  # many backoff windows: a retry would have come by now
    assert len(receiver.requests) == 1
    assert outbox_files(outbox) == []
    (failed,) = failed_files(outbox)
    record = json.loads(failed.read_bytes())
    assert record["payload"] == run_payload(3)
    assert record["attempts"] == 1
    assert record["last_error"].startswith("HTTP 400")
    assert sender.status() == {"delivered": 0, "failed": 1, "pending": 0}


async def test_exhausted_attempts_fail_and_keep_the_file(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(*[Reply(503)] * 10)
    outbox = tmp_path / "outbox"
    sender = WebhookSender(webhook_config(receiver.url, max_attempts=3), outbox)
    async with running(sender):
        sender.enqueue(run_payload())
        await eventually(lambda: sender.status()["failed"] == 1)
        await asyncio.sleep(0.2)
    assert [r.headers["x-codex-gateway-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    (failed,) = failed_files(outbox)
    record = json.loads(failed.read_bytes())
    assert record["attempts"] == 3
    assert record["last_error"].startswith("HTTP 503")
    assert outbox_files(outbox) == []


async def test_timeouts_and_connection_errors_are_retried(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(Reply(200, delay_s=2))
    sender = WebhookSender(webhook_config(receiver.url, timeout_ms=200), tmp_path / "outbox")
    async with running(sender):
        sender.enqueue(run_payload())
        await eventually(lambda: sender.status()["delivered"] == 1)
    assert len(receiver.requests) == 2
    assert (
        receiver.requests[0].headers["idempotency-key"]
        == receiver.requests[1].headers["idempotency-key"]
    )


async def test_retry_after_is_honoured_and_capped(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    honoured = receiver_for(Reply(429, {"Retry-After": "1"}))
    capped = receiver_for(Reply(503, {"Retry-After": "30"}))
    outbox = tmp_path / "outbox"
    senders = [
        WebhookSender(webhook_config(honoured.url, retry_max_ms=5000), outbox / "a"),
        WebhookSender(webhook_config(capped.url, retry_max_ms=300), outbox / "b"),
    ]
    async with running(senders[0]), running(senders[1]):
        for sender in senders:
            sender.enqueue(run_payload())
        await eventually(lambda: all(s.status()["delivered"] == 1 for s in senders))
    gap = honoured.requests[1].at - honoured.requests[0].at
    assert 0.9 <= gap < 3  # without Retry-After the backoff window is 10 ms
    gap = capped.requests[1].at - capped.requests[0].at
    assert gap < 1.5  # 30 s asked, retry_max_ms = 300 allowed


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("7", 7.0, id="delta-seconds"),
        pytest.param(" 0 ", 0.0, id="zero"),
        pytest.param("Wed, 01 Jan 2025 00:00:30 GMT", 30.0, id="http-date"),
        pytest.param("Tue, 31 Dec 2024 23:00:00 GMT", 0.0, id="http-date-past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative"),
    ],
)
def test_retry_after_header_parsing(header: str | None, seconds: float | None) -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert retry_after_seconds(header, now) == seconds


# -- never blocking, never raising ---------------------------------------------------------------


async def test_enqueue_with_an_unwritable_outbox_neither_blocks_nor_raises(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for()
    # Tests run as root, which a read-only directory does not stop; a path under a regular
    # file fails for everyone (NotADirectoryError).
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    sender = WebhookSender(webhook_config(receiver.url), blocker / "outbox")

    started = time.monotonic()
    sender.enqueue(run_payload(5))
    assert time.monotonic() - started < 0.1
    assert sender.write_errors == 1
    assert sender.status()["pending"] == 1

    async with running(sender):  # kept in memory: still delivered while the process lives
        await eventually(lambda: sender.status()["delivered"] == 1)
    assert json.loads(receiver.requests[0].body) == run_payload(5)


async def test_enqueue_never_raises_on_a_payload_it_cannot_encode(tmp_path: Path) -> None:
    sender = WebhookSender(webhook_config("http://127.0.0.1:9/hook"), tmp_path / "outbox")
    circular: dict[str, Any] = run_payload()
    circular["metadata"] = {"self": circular}
    sender.enqueue(circular)
    assert sender.status() == {"delivered": 0, "failed": 1, "pending": 0}


async def test_enqueue_does_not_wait_for_a_slow_receiver(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(*[Reply(200, delay_s=0.3)] * 5)
    sender = WebhookSender(webhook_config(receiver.url), tmp_path / "outbox")
    async with running(sender):
        sender.enqueue(run_payload(0))
        await eventually(lambda: len(receiver.requests) == 1)
        started = time.monotonic()
        for n in range(1, 5):
            sender.enqueue(run_payload(n))
        assert time.monotonic() - started < 0.1
        await eventually(lambda: sender.status()["delivered"] == 5)


async def test_stop_is_prompt_with_a_hanging_receiver_and_keeps_the_delivery(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(Reply(200, delay_s=10))
    outbox = tmp_path / "outbox"
    sender = WebhookSender(webhook_config(receiver.url, timeout_ms=30_000), outbox)
    async with running(sender):  # fails the test if run() takes more than 1 s to stop
        sender.enqueue(run_payload())
        await eventually(lambda: len(receiver.requests) == 1)
    assert len(outbox_files(outbox)) == 1
    assert sender.status() == {"delivered": 0, "failed": 0, "pending": 1}


async def test_unconfigured_sender_ignores_enqueue(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    sender = WebhookSender(WebhookConfig(), outbox)
    assert not sender.configured
    sender.enqueue(run_payload())
    async with running(sender):
        await asyncio.sleep(0.05)
    assert not outbox.exists()
    assert sender.status() == {"delivered": 0, "failed": 0, "pending": 0}


# -- many deliveries ------------------------------------------------------------------------------


async def test_twenty_webhooks_each_delivered_exactly_once(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(*[Reply(200, delay_s=0.05)] * 20)
    outbox = tmp_path / "outbox"
    sender = WebhookSender(webhook_config(receiver.url), outbox)
    async with running(sender):
        for n in range(20):
            sender.enqueue(run_payload(n))
        await eventually(lambda: sender.status()["delivered"] == 20)
    run_ids = sorted(json.loads(r.body)["run_id"] for r in receiver.requests)
    assert run_ids == sorted(f"run-{n}" for n in range(20))
    assert len({r.headers["idempotency-key"] for r in receiver.requests}) == 20
    assert 2 <= receiver.max_concurrent <= 4
    assert outbox_files(outbox) == []


async def test_deliveries_go_out_in_creation_order_restarted_ones_first(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    outbox = tmp_path / "outbox"
    receiver = receiver_for()
    # Left by an earlier process that never ran its loop.
    earlier = WebhookSender(webhook_config(receiver.url), outbox)
    for n in range(3):
        earlier.enqueue(run_payload(n))
    sender = WebhookSender(webhook_config(receiver.url), outbox, concurrency=1)
    sender.enqueue(run_payload(3))
    async with running(sender):
        for n in range(4, 6):
            sender.enqueue(run_payload(n))
        await eventually(lambda: sender.status()["delivered"] == 6)
    assert [json.loads(r.body)["run_id"] for r in receiver.requests] == [
        f"run-{n}" for n in range(6)
    ]


async def test_status_counts_delivered_failed_and_pending(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(Reply(200), Reply(400), Reply(200))
    sender = WebhookSender(webhook_config(receiver.url), tmp_path / "outbox", concurrency=1)
    assert sender.status() == {"delivered": 0, "failed": 0, "pending": 0}
    for n in range(3):
        sender.enqueue(run_payload(n, status=["completed", "error", "timeout"][n]))
    assert sender.status() == {"delivered": 0, "failed": 0, "pending": 3}
    async with running(sender):
        await eventually(lambda: sender.status()["pending"] == 0)
    assert sender.status() == {"delivered": 2, "failed": 1, "pending": 0}
    assert [json.loads(r.body)["status"] for r in receiver.requests] == [
        "completed",
        "error",
        "timeout",
    ]
