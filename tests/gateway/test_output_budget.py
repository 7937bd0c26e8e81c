"""The output budget (gateway/agent/budget.py): agents' output is taken no faster than the
gateway-wide rate, shared among the agents printing, and nothing is lost or reordered by it.

Why it exists: 8 agents printing as fast as they can kept the gateway's loop and gRPC busy
enough that `GET /health` and cancels waited 450-700 ms (BENCHMARKS.md, issue 18).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from codex_gateway.v1 import runs_pb2, status_pb2
from gateway.agent.budget import ACTIVE_S, BURST_S, OutputBudget
from gateway.config import Config, ConfigError
from tests.fakes import AGENTS_DIR
from tests.harness import running_bridge, running_gateway


class _Clock:
    """A clock the test moves by hand (the budget takes its clock as a parameter)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("lines_per_s", "bytes_per_s", "spent", "waits"),
    [
        pytest.param(0, 0, [(10_000, 10_000_000)] * 3, [0.0, 0.0, 0.0], id="unlimited"),
        # The first BURST_S of the rate is free; then each batch costs lines / rate.
        pytest.param(1000, 0, [(100, 1), (100, 1), (50, 1)], [0.0, 0.1, 0.15], id="lines"),
        pytest.param(0, 1000, [(1, 100), (1, 100), (1, 300)], [0.0, 0.1, 0.4], id="bytes"),
        # Whichever of the two costs more.
        pytest.param(1000, 1000, [(100, 10), (10, 200)], [0.0, 0.2], id="the-dearer-wins"),
        # Nothing read costs nothing (a read that completed no line still counts its bytes).
        pytest.param(1000, 0, [(0, 5000), (0, 5000)], [0.0, 0.0], id="no-lines"),
    ],
)
def test_a_single_reader_waits_what_its_reads_cost(
    lines_per_s: int, bytes_per_s: int, spent: list[tuple[int, int]], waits: list[float]
) -> None:
    clock = _Clock()
    meter = OutputBudget(lines_per_s, bytes_per_s, clock=clock).meter()
    assert [round(meter.spend(lines, size), 6) for lines, size in spent] == waits


def test_readers_share_the_rate_and_a_quiet_one_leaves_its_share() -> None:
    clock = _Clock()
    budget = OutputBudget(1000, 0, clock=clock)
    first, second = budget.meter(), budget.meter()
    assert first.spend(100, 1) == 0.0  # within its burst, alone
    # Two readers: each pays for its lines at half the rate.
    assert round(second.spend(100, 1), 6) == pytest.approx(0.2 - BURST_S)
    assert budget.readers() == 2
    clock.now += 5.0  # `second` went quiet (its agent ended, or waits for the model)
    first.spend(0, 0)
    clock.now += ACTIVE_S
    assert budget.readers() == 1
    assert round(first.spend(200, 1), 6) == pytest.approx(0.2 - BURST_S)  # the whole rate again


def test_an_ended_reader_leaves_the_split_at_once() -> None:
    """Hundreds of short runs a second: each agent's share must not shrink by the ones that
    already ended (counted for ACTIVE_S after their last read, 250 runs a second made each
    new agent wait 25 ms for four lines, and halved the gateway's throughput)."""
    clock = _Clock()
    budget = OutputBudget(1000, 0, clock=clock)
    for _ in range(500):
        meter = budget.meter()
        assert meter.spend(4, 100) == 0.0
        meter.close()
        clock.now += 0.002
    assert budget.readers() == 0
    running = budget.meter()
    assert running.spend(100, 1) == 0.0  # alone: its whole burst
    assert round(running.spend(100, 1), 6) == pytest.approx(0.1)  # the whole rate, alone


def test_a_closed_meter_costs_nothing_and_is_not_counted() -> None:
    clock = _Clock()
    budget = OutputBudget(1000, 0, clock=clock)
    meter = budget.meter()
    meter.spend(100, 1)
    meter.close()
    meter.close()  # twice is harmless
    assert meter.spend(10_000, 1) == 0.0  # what is left after the end is read at once
    assert budget.readers() == 0


def test_a_quiet_reader_gets_its_burst_back() -> None:
    clock = _Clock()
    meter = OutputBudget(1000, 0, clock=clock).meter()
    assert meter.spend(100, 1) == 0.0
    assert meter.spend(100, 1) == pytest.approx(0.1)
    clock.now += 10.0
    assert meter.spend(100, 1) == 0.0


@pytest.mark.parametrize(
    "name", ["CODEX_GATEWAY_OUTPUT_LINES_PER_S", "CODEX_GATEWAY_OUTPUT_BYTES_PER_S"]
)
@pytest.mark.parametrize("value", ["-1", "fast", "1.5"])
def test_a_bad_budget_names_its_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value}, cwd=tmp_path)


def test_zero_turns_the_budget_off(tmp_path: Path) -> None:
    config = Config.from_env(
        {"CODEX_GATEWAY_OUTPUT_LINES_PER_S": "0", "CODEX_GATEWAY_OUTPUT_BYTES_PER_S": "0"},
        cwd=tmp_path,
    )
    assert not OutputBudget(config.output_lines_per_s, config.output_bytes_per_s).limited


LINES = 1500
PACED = {"output_lines_per_s": 1000}  # 1,500 lines: well past the burst, about 1.4 s


def _texts(events: list[dict[str, object]]) -> list[str]:
    return [
        str(item["text"])
        for event in events
        if event.get("type") == "item.completed" and isinstance(item := event.get("item"), dict)
    ]


def _logged(logs_path: str) -> list[str]:
    lines = (Path(logs_path) / "events.jsonl").read_text().splitlines()
    return _texts([json.loads(line) for line in lines])


async def test_a_paced_grpc_stream_carries_every_line_in_order(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py", **PACED)
    async with running_gateway(config) as gw:
        request = runs_pb2.StreamCompletionRequest(
            run=runs_pb2.RunInput(prompt="count", env={"FAKE_AGENT_LINES": str(LINES)})
        )
        events: list[dict[str, object]] = []
        completed = None
        async for message in gw.stub.StreamCompletion(request):
            kind = message.WhichOneof("kind")
            if kind == "event":
                events.append(json_format.MessageToDict(message.event))
            elif kind == "completed":
                completed = message.completed
        assert completed is not None and completed.status == "completed"
        expected = [f"line {n}" for n in range(LINES)]
        assert _texts(events) == expected
        assert _logged(completed.logs_path) == expected
        assert gw.gateway.runner.output.waited_s > 0  # it was paced, not merely fast


async def test_a_paced_rest_stream_carries_every_line_in_order(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py", **PACED)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target, max_body_bytes=config.max_body_bytes) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
        client.stream(
            "POST",
            "/completion/stream",
            json={"prompt": "count", "env": {"FAKE_AGENT_LINES": str(LINES)}},
        ) as response,
    ):
        assert response.status_code == 200
        lines = [json.loads(line)["result"] async for line in response.aiter_lines() if line]
        events = [line["event"] for line in lines if "event" in line]
        assert "completed" in lines[-1] and lines[-1]["completed"]["status"] == "completed"
        expected = [f"line {n}" for n in range(LINES)]
        assert _texts(events) == expected
        assert _logged(lines[-1]["completed"]["logs_path"]) == expected
        assert gw.gateway.runner.output.waited_s > 0


async def test_a_paced_agent_is_stopped_at_its_deadline_without_waiting_out_its_pacing(
    config_for: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    """A budget so small that each read of the flooding agent's stderr buys a long wait: the
    stop must not wait for it (it would, for the 5 s the stop gives a pipe to close, and then
    close it by force, losing the rest of stderr)."""
    config = config_for(
        codex_bin=AGENTS_DIR / "endless_agent.py", output_lines_per_s=50, stop_grace_ms=2000
    )
    async with running_gateway(config) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="talk", timeout_ms=1000))
            )
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert gw.gateway.runner.output.waited_s > 0
    assert "a pipe stayed open" not in caplog.text


async def test_the_pacing_is_in_the_metrics(config_for: Callable[..., Config]) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py", **PACED)
    async with running_gateway(config) as gw:
        await gw.stub.Complete(
            runs_pb2.CompleteRequest(
                run=runs_pb2.RunInput(prompt="count", env={"FAKE_AGENT_LINES": str(LINES)})
            )
        )
        response = await gw.stub.GetMetrics(status_pb2.GetMetricsRequest())
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(response.body.data.decode())
            for sample in family.samples
        }
        paced = samples["codex_gateway_output_paced_seconds_total"]
        assert paced == pytest.approx(gw.gateway.runner.output.waited_s) and paced > 0
        assert samples["codex_gateway_output_readers"] == 0  # its stdout ended: it left the split
