"""Webhooks from the real gateway: one per finished run, signed, retried, and kept across a
restart while the receiver is down."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import signal
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from codex_gateway.v1 import runs_pb2, status_pb2
from gateway.config import Config, WebhookConfig
from tests.fakes import AGENTS_DIR
from tests.fakes.webhook_receiver import Receiver, Reply
from tests.harness import free_port, running_gateway, start_gateway_process

SECRET = "hook-secret"


async def until(check: Callable[[], bool], timeout_s: float = 10) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def verify(headers: dict[str, str], body: bytes) -> None:
    stamp = headers["x-codex-gateway-timestamp"]
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["x-codex-gateway-signature"] == f"sha256={expected}"


async def test_every_finished_run_is_reported_once_signed_after_retries(
    config: Config, receiver_for: Callable[..., Receiver]
) -> None:
    hook = receiver_for(Reply(500), Reply(503))
    webhook = WebhookConfig(url=hook.url, secret=SECRET, retry_base_ms=20, retry_max_ms=100)
    async with running_gateway(dataclasses.replace(config, webhook=webhook), background=True) as gw:
        request = runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="[[reply:done]] go"))
        request.run.metadata.update({"source": "e2e"})
        result = (await gw.stub.Complete(request)).result
        await until(lambda: len(hook.accepted()) == 1)
        (delivered,) = hook.accepted()
        payload = json.loads(delivered.body)
        assert {
            k: payload[k] for k in ("session_id", "run_id", "status", "output", "metadata")
        } == {
            "session_id": result.session_id,
            "run_id": result.run_id,
            "status": "completed",
            "output": "done",
            "metadata": {"source": "e2e"},
        }
        assert payload["prompt"] == "[[reply:done]] go" and payload["workspace"]
        assert payload["usage"]["input_tokens"] == 100 and payload["codex_session_id"]
        # The run's items in the session's log: what a receiver tails to read its output.
        assert (payload["first_seq"], payload["last_seq"]) == (result.first_seq, result.last_seq)
        assert 1 == result.first_seq < result.last_seq
        verify(delivered.headers, delivered.body)
        keys = {r.headers["idempotency-key"] for r in hook.requests}
        assert len(hook.requests) == 3 and len(keys) == 1
        with pytest.raises(grpc.aio.AioRpcError):
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="[[scenario:http500]] x"))
            )
        await until(lambda: len(hook.accepted()) == 2)
        failed = json.loads(hook.accepted()[1].body)
        assert failed["status"] == "error" and failed["error"]
        status = (await gw.stub.GetStatus(status_pb2.GetStatusRequest())).webhook
        assert status.configured and status.signed and status.delivered == 2 and status.pending == 0


async def test_a_webhook_survives_a_gateway_restart_while_the_receiver_is_down(
    tmp_path: Path, receiver_for: Callable[..., Receiver]
) -> None:
    port = free_port()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    env = {
        "CODEX_GATEWAY_CODEX_BIN": str(AGENTS_DIR / "echo_agent.py"),
        "CODEX_GATEWAY_SESSION_DIRS": str(tmp_path / "sessions"),
        "CODEX_GATEWAY_DEFAULT_WORKSPACE": str(workspace),
        "CODEX_GATEWAY_TRIGGER_FILE": str(tmp_path / "triggers" / "triggers.json"),
        "SESSION_WEBHOOK_URL": f"http://127.0.0.1:{port}/hook",
        "SESSION_WEBHOOK_RETRY_BASE_MS": "50",
        "SESSION_WEBHOOK_RETRY_MAX_MS": "200",
        "SESSION_WEBHOOK_MAX_ATTEMPTS": "100",
    }
    first = await start_gateway_process(env)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{first.rest_port}", trust_env=False
        ) as client:
            response = await client.post("/completion", json={"prompt": "remember me"})
            assert response.status_code == 200
            run_id = response.json()["run_id"]
            await asyncio.sleep(0.5)  # a few failed attempts against the closed port
    finally:
        first.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(first.process.wait(), 20)
    assert first.process.returncode == 0
    hook = receiver_for(port=port)
    second = await start_gateway_process(env)
    try:
        await until(lambda: len(hook.accepted()) == 1, timeout_s=15)
        assert json.loads(hook.accepted()[0].body)["run_id"] == run_id
        await asyncio.sleep(0.5)
        assert len(hook.accepted()) == 1
    finally:
        second.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.process.wait(), 20)
