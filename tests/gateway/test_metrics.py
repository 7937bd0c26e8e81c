"""Prometheus metrics: scraped over gRPC (GetMetrics) and REST (`GET /metrics`) with a real text
parser after a scripted sequence of real runs (codex against the scripted model server)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from codex_gateway.v1 import runs_pb2, sessions_pb2
from codex_gateway.v1 import status_pb2 as gw_status_pb2
from gateway.automation.scheduler import MAX_RETRY_AFTER
from gateway.config import Config, WebhookConfig
from tests.fakes import AGENTS_DIR
from tests.fakes.webhook_receiver import Receiver, Reply
from tests.gateway.test_triggers import SteppedClock, with_triggers
from tests.harness import (
    RunningGateway,
    free_port,
    running_bridge,
    running_gateway,
    start_gateway_process,
)

TOKEN = "metrics-test-token"  # a test's own secret
AUTH = (("authorization", f"Bearer {TOKEN}"),)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key)[label] for (sample, key) in samples if sample == name and label in dict(key)}


async def scrape(gw: RunningGateway, metadata: Any = AUTH) -> Samples:
    response = await gw.stub.GetMetrics(gw_status_pb2.GetMetricsRequest(), metadata=metadata)
    assert response.body.content_type.startswith("text/plain")
    return parse(response.body.data.decode())


async def eventually(check: Callable[[], Any], timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


async def test_a_scripted_sequence_of_runs_gives_exact_counter_deltas(
    config_for: Callable[..., Config], receiver_for: Callable[..., Receiver]
) -> None:
    receiver = receiver_for(Reply(500))  # the first delivery is retried, the rest accepted
    webhook = WebhookConfig(
        url=receiver.url, timeout_ms=2000, max_attempts=5, retry_base_ms=10, retry_max_ms=50
    )
    config = config_for(api_token=TOKEN, max_concurrent=1, webhook=webhook)
    async with running_gateway(config, background=True) as gw:
        before = await scrape(gw)
        ok = await gw.stub.Complete(
            runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="[[scenario:usage]] hi")),
            metadata=AUTH,
        )
        session_id = ok.result.session_id

        with pytest.raises(grpc.aio.AioRpcError):  # the model answers after 30 s: timeout
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="[[scenario:slow]] [[sleep:30]]", timeout_ms=1500)
                ),
                metadata=AUTH,
            )

        slow = asyncio.ensure_future(
            gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(
                        prompt="[[scenario:slow]] [[sleep:30]]", session_id=session_id
                    )
                ),
                metadata=AUTH,
            )
        )
        await eventually(lambda: _running(gw))
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # the one slot is taken
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi")), metadata=AUTH
            )
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.aio.AioRpcError) as busy:  # its session is running
            await gw.stub.PromptSession(
                runs_pb2.PromptSessionRequest(
                    session_id=session_id, run=runs_pb2.RunInput(prompt="hi")
                ),
                metadata=AUTH,
            )
        assert busy.value.code() == grpc.StatusCode.ABORTED
        await gw.stub.CancelSession(
            sessions_pb2.CancelSessionRequest(session_id=session_id), metadata=AUTH
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await slow

        async def delivered() -> bool:
            return value(await scrape(gw), "codex_gateway_webhooks_delivered_total") >= 3

        await eventually(delivered)
        after = await scrape(gw)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("codex_gateway_runs_started_total", source="api") == 3
    for status in ("completed", "timeout", "cancelled"):
        assert delta("codex_gateway_runs_finished_total", source="api", status=status) == 1
    assert delta("codex_gateway_run_duration_seconds_count", source="api") == 3
    assert value(after, "codex_gateway_runs_running") == 0
    assert delta("codex_gateway_runs_rejected_total", reason="concurrency_limit") == 1
    assert delta("codex_gateway_runs_rejected_total", reason="session_busy") == 1
    assert delta("codex_gateway_slot_wait_seconds_count") == 3
    usage = ok.result.usage
    model = ok.result.model or "default"
    assert delta("codex_gateway_tokens_total", model=model, kind="input") == usage.input_tokens
    assert delta("codex_gateway_tokens_total", model=model, kind="output") == usage.output_tokens
    assert usage.input_tokens > 0
    assert delta("codex_gateway_webhooks_delivered_total") == 3
    assert delta("codex_gateway_webhooks_retried_total") == 1
    assert delta("codex_gateway_webhooks_failed_total") == 0
    assert value(after, "codex_gateway_webhooks_pending") == 0
    assert delta("codex_gateway_grpc_requests_total", method="Complete", code="OK") == 1
    assert (
        delta("codex_gateway_grpc_requests_total", method="Complete", code="RESOURCE_EXHAUSTED")
        == 1
    )
    assert delta("codex_gateway_grpc_requests_total", method="CancelSession", code="OK") == 1
    assert value(after, "codex_gateway_process_resident_memory_bytes") > 0
    assert value(after, "codex_gateway_process_open_fds") > 0


async def _running(gw: RunningGateway) -> bool:
    return value(await scrape(gw), "codex_gateway_runs_running") == 1


async def test_rest_metrics_combine_the_gateway_and_the_bridge_and_follow_the_token(
    config_for: Callable[..., Config],
) -> None:
    async with (
        running_gateway(config_for(api_token=TOKEN)) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as rest,
    ):
        refused = await rest.get("/metrics")
        assert refused.status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for n in range(50):  # a storm of distinct session ids and paths
            await rest.get(f"/sessions/session-{n}", headers=headers)
            await rest.get(f"/no/such/path/{n}", headers=headers)
        answer = await rest.get("/metrics", headers=headers)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        samples = parse(answer.text)
        # The gateway's families and the bridge's own, in one exposition.
        assert ("codex_gateway_runs_running", ()) in samples
        assert (
            value(
                samples,
                "codex_gateway_http_requests_total",
                route="/sessions/{session_id}",
                method="GET",
                status="404",
            )
            == 50
        )
        assert (
            value(
                samples,
                "codex_gateway_http_requests_total",
                route="(unmatched)",
                method="GET",
                status="404",
            )
            == 50
        )
        assert (
            value(
                samples,
                "codex_gateway_http_requests_total",
                route="/metrics",
                method="GET",
                status="401",
            )
            == 1
        )
        assert label_values(samples, "codex_gateway_http_requests_total", "route") == {
            "/sessions/{session_id}",
            "(unmatched)",
            "/metrics",
        }
        assert (
            value(
                samples, "codex_gateway_grpc_requests_total", method="GetSession", code="NOT_FOUND"
            )
            == 50
        )
        assert value(samples, "codex_gateway_bridge_process_resident_memory_bytes") > 0


async def test_metrics_public_answers_without_the_token(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(api_token=TOKEN, metrics_public=True)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as rest,
    ):
        assert (await rest.get("/metrics")).status_code == 200
        assert (await rest.get("/status")).status_code == 401  # only the scrape is public
        samples = await scrape(gw, metadata=())
        assert ("codex_gateway_runs_running", ()) in samples


async def test_model_labels_stay_bounded_under_a_storm_of_model_names(tmp_path: Any) -> None:
    from gateway.agent.events import Usage
    from gateway.metrics.families import MAX_MODELS, GatewayMetrics

    metrics = GatewayMetrics()
    for n in range(500):
        metrics.count_tokens(f"model-{n}", Usage(input_tokens=1))
    samples = parse(metrics.exposition().decode())
    models = label_values(samples, "codex_gateway_tokens_total", "model")
    assert len(models) == MAX_MODELS + 1 and "other" in models
    assert value(samples, "codex_gateway_tokens_total", model="other", kind="input") == (
        500 - MAX_MODELS
    )


async def test_metrics_off_still_answers_an_empty_scrape(config_for: Callable[..., Config]) -> None:
    config = dataclasses.replace(config_for(), metrics_enabled=False)
    async with running_gateway(config) as gw:
        response = await gw.stub.GetMetrics(gw_status_pb2.GetMetricsRequest())
        assert response.body.data == b""


async def test_the_metrics_port_serves_the_scrape_alone_and_follows_the_token(
    tmp_path: Any,
) -> None:
    port = free_port()
    process = await start_gateway_process(
        {
            "CODEX_GATEWAY_API_TOKEN": TOKEN,
            "CODEX_GATEWAY_METRICS_PORT": str(port),
            "CODEX_GATEWAY_SESSION_DIRS": str(tmp_path / "sessions"),
        }
    )
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
            url = f"http://127.0.0.1:{port}"
            for _ in range(200):  # the bridge serves once the gateway has started it
                try:
                    refused = await client.get(f"{url}/metrics")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert refused.status_code == 401
            answer = await client.get(f"{url}/metrics", headers=headers)
            assert answer.status_code == 200
            samples = parse(answer.text)
            assert ("codex_gateway_runs_running", ()) in samples
            assert (
                value(
                    samples,
                    "codex_gateway_http_requests_total",
                    route="/metrics",
                    method="GET",
                    status="401",
                )
                == 1
            )
            # Nothing but the scrape on that port.
            assert (await client.get(f"{url}/status", headers=headers)).status_code == 404
            rest = f"http://127.0.0.1:{process.rest_port}"
            assert (await client.get(f"{rest}/metrics", headers=headers)).status_code == 200
    finally:
        process.process.terminate()
        await asyncio.wait_for(process.process.wait(), 30)


async def test_trigger_fires_and_misfires_are_counted_by_outcome_and_reason(
    config_for: Callable[..., Config], tmp_path: Any
) -> None:
    config = with_triggers(config_for(codex_bin=AGENTS_DIR / "echo_agent.py"), tmp_path)
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    every5 = {
        "id": "every5",
        "prompt_text": "tick",
        "schedule": {"mode": "interval", "interval_minutes": 5},
        "created_at": start.isoformat(),
    }
    path = config.triggers.default_file
    path.write_text(json.dumps({"triggers": [every5]}))
    clock = SteppedClock(start + timedelta(minutes=4))
    async with running_gateway(config, clock=clock) as gw:
        scheduler = gw.gateway.scheduler
        await scheduler.reload()
        clock.now = start + timedelta(minutes=5)  # due now, on time
        await asyncio.gather(*await scheduler.fire_due())
        on_time = await scrape(gw, ())
        assert value(on_time, "codex_gateway_trigger_fires_total", outcome="success") == 1
        assert label_values(on_time, "codex_gateway_trigger_misfires_total", "reason") == set()

        clock.now += timedelta(minutes=5)
        path.unlink()
        os.mkfifo(path)  # due, and its fire cannot be recorded: it does not run now
        await asyncio.gather(*await scheduler.fire_due(), return_exceptions=True)
        broken = await scrape(gw, ())
        assert value(broken, "codex_gateway_trigger_misfires_total", reason="unrecorded") == 1
        assert value(broken, "codex_gateway_trigger_fires_total", outcome="success") == 1

        path.unlink()
        path.write_text(json.dumps({"triggers": [file_entry(every5, on_time=clock.now)]}))
        await scheduler.reload()
        clock.now += MAX_RETRY_AFTER  # past the hold-back, and minutes past the instant
        await asyncio.gather(*await scheduler.fire_due())
        late = await scrape(gw, ())
    assert value(late, "codex_gateway_trigger_misfires_total", reason="late") == 1
    assert value(late, "codex_gateway_trigger_fires_total", outcome="success") == 2


def file_entry(entry: dict[str, Any], *, on_time: datetime) -> dict[str, Any]:
    """The trigger as its file holds it after a fire at `on_time` minus one interval."""
    return {**entry, "last_fired": (on_time - timedelta(minutes=5)).isoformat()}
