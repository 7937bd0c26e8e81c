"""Traces (README, "Traces"): one trace from a client's `traceparent` through the bridge, the
gRPC server, the run and its webhook deliveries, with its id in the run record and the payload;
and nothing at all without the variables.

The in-process tests install this process's SDK provider once (it is global and set once), with
an in-memory exporter, through the same `install` the entrypoints call. The real-process test
exports from both processes to a local collector stand-in (bench/collector.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.collector import Collector
from bridge import tracing as otel
from codex_gateway.v1 import runs_pb2, sessions_pb2, status_pb2
from gateway.config import Config, WebhookConfig
from gateway.procfs import descendants
from tests.fakes import AGENTS_DIR, CODEX_BIN
from tests.fakes.webhook_receiver import Receiver, Reply
from tests.harness import running_bridge, running_gateway, start_gateway_process

# The endpoint is never reached in-process: spans go to the injected exporter.
SETTINGS = otel.TracingSettings(endpoint="http://127.0.0.1:9")
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
PROMPT = "[[reply:done]] the secret plan"
COLLECTOR_KEY = "collector-key-1c9e"  # a test's own secret

_exporter = InMemorySpanExporter()
_provider: list[TracerProvider] = []


def provider() -> TracerProvider:
    """This process's SDK provider (installed at the first call), its exporter emptied."""
    if not _provider:
        installed = otel.install(SETTINGS, exporter=_exporter)
        assert installed is not None
        _provider.append(installed)
    _exporter.clear()
    return _provider[0]


def finished(spans: TracerProvider, trace_id: str) -> list[ReadableSpan]:
    spans.force_flush()
    return [
        span
        for span in _exporter.get_finished_spans()
        if span.context is not None and trace.format_trace_id(span.context.trace_id) == trace_id
    ]


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return trace.format_span_id(span.context.span_id)


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else trace.format_span_id(span.parent.span_id)


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def until(check: Callable[[], bool], timeout_s: float = 15) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_one_trace_from_the_clients_traceparent_through_bridge_gateway_run_and_webhook(
    config_for: Callable[..., Config], receiver_for: Callable[..., Receiver]
) -> None:
    spans = provider()
    hook = receiver_for(Reply(500))  # one retry: two delivery attempts, two spans
    webhook = WebhookConfig(url=hook.url, retry_base_ms=20, retry_max_ms=100)
    config = config_for(tracing=SETTINGS, webhook=webhook)
    async with (
        running_gateway(config, background=True) as gw,
        running_bridge(gw.target, tracing=True) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as client,
    ):
        response = await client.post(
            "/completion",
            json={"prompt": PROMPT},
            headers={"traceparent": TRACEPARENT, "content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        detail = await client.get(f"/sessions/{body['session_id']}")
        await until(lambda: len(hook.accepted()) == 1)
    # The run record, over REST, names the client's trace.
    assert detail.json()["run_history"][-1]["trace_id"] == CLIENT_TRACE
    payload = json.loads(hook.accepted()[0].body)
    assert payload["trace_id"] == CLIENT_TRACE and payload["run_id"] == body["run_id"]

    in_trace = finished(spans, CLIENT_TRACE)
    (request,) = [s for s in in_trace if s.name == "POST Complete"]
    (rpc,) = [s for s in in_trace if s.name.endswith("/Complete")]
    (run,) = named(in_trace, "run")
    (slot,) = named(in_trace, "slot wait")
    (attempt,) = named(in_trace, "attempt")
    (spawn,) = named(in_trace, "agent spawn")
    deliveries = named(in_trace, "webhook delivery")
    # The bridge continues the client's span; each process's span is the next one's parent.
    assert parent_id(request) == CLIENT_SPAN and request.parent is not None
    assert request.parent.is_remote
    assert request.attributes is not None and request.kind is trace.SpanKind.SERVER
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["http.route"] == "Complete"
    assert parent_id(rpc) == span_id(request)
    assert parent_id(run) == span_id(rpc)
    assert parent_id(slot) == parent_id(attempt) == span_id(run)
    assert parent_id(spawn) == span_id(attempt)
    # A span per delivery attempt, under the run's; the receiver was told the attempt's context.
    assert len(deliveries) == 2 and {parent_id(d) for d in deliveries} == {span_id(run)}
    assert [d.attributes and d.attributes["codex_gateway.attempt"] for d in deliveries] == [1, 2]
    assert deliveries[0].status.status_code is trace.StatusCode.ERROR
    assert hook.accepted()[0].headers["traceparent"].split("-")[1] == CLIENT_TRACE
    assert run.attributes is not None
    assert run.attributes["codex_gateway.run_id"] == body["run_id"]
    assert run.attributes["codex_gateway.session_id"] == body["session_id"]
    # Bounded attributes: nothing of the prompt anywhere.
    for span in in_trace:
        for value in (span.attributes or {}).values():
            assert "secret plan" not in str(value), span.name


async def test_a_grpc_caller_trace_is_continued_and_recorded(
    config_for: Callable[..., Config],
) -> None:
    spans = provider()
    trace_hex = "0af7651916cd43dd8448eb211c80319c"
    async with running_gateway(config_for(tracing=SETTINGS)) as gw:
        result = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="[[reply:done]] go")),
                metadata=(("traceparent", f"00-{trace_hex}-b7ad6b7169203331-01"),),
            )
        ).result
        detail = await gw.stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=result.session_id)
        )
    assert detail.session.run_history[-1].trace_id == trace_hex
    names = {span.name for span in finished(spans, trace_hex)}
    assert {"run", "slot wait", "attempt", "agent spawn"} <= names


async def test_a_gateway_without_tracing_records_nothing_even_in_a_traced_process(
    config_for: Callable[..., Config], receiver_for: Callable[..., Receiver]
) -> None:
    spans = provider()  # this process has an SDK provider: the gateway must not use it
    hook = receiver_for()
    config = config_for(webhook=WebhookConfig(url=hook.url))
    async with (
        running_gateway(config, background=True) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as client,
    ):
        response = await client.post(
            "/completion",
            json={"prompt": "[[reply:done]] go"},
            headers={"traceparent": TRACEPARENT, "content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        detail = await client.get(f"/sessions/{response.json()['session_id']}")
        await until(lambda: len(hook.accepted()) == 1)
    assert detail.json()["run_history"][-1]["trace_id"] is None  # null: not traced
    payload = json.loads(hook.accepted()[0].body)
    assert "trace_id" not in payload and "traceparent" not in hook.accepted()[0].headers
    spans.force_flush()
    assert _exporter.get_finished_spans() == ()


async def test_the_agent_gets_the_attempts_traceparent_only_when_tracing_is_on(
    config_for: Callable[..., Config],
) -> None:
    """codex continues the trace in its own export (its `[otel]` config) from TRACEPARENT."""
    spans = provider()
    request = runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="env"))
    metadata = (("traceparent", TRACEPARENT),)
    agent = AGENTS_DIR / "env_agent.py"
    async with running_gateway(config_for(codex_bin=agent, tracing=SETTINGS)) as gw:
        traced = json.loads((await gw.stub.Complete(request, metadata=metadata)).result.output)
    async with running_gateway(config_for(codex_bin=agent)) as gw:
        plain = json.loads((await gw.stub.Complete(request, metadata=metadata)).result.output)
    (attempt,) = named(finished(spans, CLIENT_TRACE), "attempt")
    assert traced["TRACEPARENT"] == f"00-{CLIENT_TRACE}-{span_id(attempt)}-01"
    assert "TRACEPARENT" not in plain and "OTEL_EXPORTER_OTLP_ENDPOINT" not in traced


def test_without_the_variables_no_provider_is_installed(tmp_path: Path) -> None:
    """In a fresh interpreter, as the entrypoint does it: no SDK loaded, the no-op provider."""
    script = """
import sys
from pathlib import Path
from opentelemetry import trace
from bridge import tracing as otel
from gateway import tracing
from gateway.config import Config
config = Config.from_env({"HOME": sys.argv[1]}, cwd=Path(sys.argv[1]))
assert config.tracing is None
assert otel.install(config.tracing) is None
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
assert isinstance(tracing.tracer(config), trace.NoOpTracer)
assert not [name for name in sys.modules if name.startswith("opentelemetry.sdk")]
print("ok")
"""
    done = subprocess.run(  # this interpreter, our script
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_a_bad_endpoint_stops_startup_naming_the_variable(tmp_path: Path) -> None:
    from gateway.config import ConfigError

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        try:
            Config.from_env({"HOME": str(tmp_path), name: "collector:4318"}, cwd=tmp_path)
        except ConfigError as exc:
            assert name in str(exc)
        else:
            raise AssertionError(f"{name} accepted a URL without a scheme")
    config = Config.from_env(
        {"HOME": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"},
        cwd=tmp_path,
    )
    assert config.tracing is not None
    assert config.tracing.traces_url == "http://127.0.0.1:4318/v1/traces"
    assert config.tracing.service_name == "codex-gateway"


async def test_both_real_processes_export_one_trace_to_a_collector(
    tmp_path: Path, codex_env: dict[str, str]
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with Collector() as collector:
        env = {
            **codex_env,
            "CODEX_GATEWAY_CODEX_BIN": str(CODEX_BIN),
            "CODEX_GATEWAY_CHILD_ENV": "FAKE_API_KEY",
            "CODEX_GATEWAY_SESSION_DIRS": str(tmp_path / "sessions"),
            "CODEX_GATEWAY_DEFAULT_WORKSPACE": str(workspace),
            "CODEX_GATEWAY_TRIGGER_FILE": str(tmp_path / "triggers" / "triggers.json"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_SERVICE_NAME": "gw-under-test",
            # A collector's credentials: sent by both processes, in neither's argv nor the
            # bridge's environment (checked below); an agent's: test_limits.py.
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{COLLECTOR_KEY},x-team=core",
        }
        gateway = await start_gateway_process(env)
        try:
            for pid in descendants(gateway.process.pid):
                with contextlib.suppress(OSError):  # an agent may have gone
                    for part in ("environ", "cmdline"):
                        assert (
                            COLLECTOR_KEY.encode() not in Path(f"/proc/{pid}/{part}").read_bytes()
                        )
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{gateway.rest_port}", timeout=60, trust_env=False
            ) as client:
                response = await client.post(
                    "/completion",
                    json={"prompt": "[[reply:done]] go"},
                    headers={"traceparent": TRACEPARENT},
                )
                assert response.status_code == 200, response.text
        finally:
            gateway.process.send_signal(signal.SIGTERM)  # both flush at exit
            await asyncio.wait_for(gateway.process.wait(), 30)
        assert gateway.process.returncode == 0
        await until(lambda: any(s.service == "gw-under-test-bridge" for s in collector.spans()))
        in_trace = [s for s in collector.spans() if s.trace_id == CLIENT_TRACE]
    services = {s.service for s in in_trace}
    assert services == {"gw-under-test", "gw-under-test-bridge"}
    (request,) = [s for s in in_trace if s.service == "gw-under-test-bridge"]
    assert request.parent_span_id == CLIENT_SPAN
    (rpc,) = [s for s in in_trace if s.name.endswith("/Complete")]
    assert rpc.parent_span_id == request.span_id and rpc.service == "gw-under-test"
    assert {"run", "slot wait", "attempt", "agent spawn"} <= {s.name for s in in_trace}
    for span in in_trace:
        assert span.headers["authorization"] == f"Bearer {COLLECTOR_KEY}", span.service
        assert span.headers["x-team"] == "core"


def test_bad_exporter_headers_stop_startup_naming_the_variable(tmp_path: Path) -> None:
    from gateway.config import ConfigError

    base = {"HOME": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    for bad in ("no-equals-sign", "bad name=1", "x=a%0Ab"):
        try:
            Config.from_env({**base, "OTEL_EXPORTER_OTLP_HEADERS": bad}, cwd=tmp_path)
        except ConfigError as exc:
            assert "OTEL_EXPORTER_OTLP_HEADERS" in str(exc) and bad not in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
    config = Config.from_env(
        {**base, "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=s%3Dcret"}, cwd=tmp_path
    )
    assert config.tracing is not None
    assert config.tracing.exporter_headers() == {"api-key": "s=cret"}
    assert "cret" not in repr(config.tracing)
    from gateway.__main__ import _secrets

    assert "s=cret" in _secrets(config)  # never written to a log line


async def test_an_rpc_without_a_callers_context_starts_a_trace_of_its_own(
    config_for: Callable[..., Config],
) -> None:
    """An RPC without a caller's context starts a trace of its own (a root SERVER span)."""
    spans = provider()
    async with running_gateway(config_for(tracing=SETTINGS)) as gw:
        await gw.stub.GetInfo(status_pb2.GetInfoRequest())
    spans.force_flush()
    (info,) = [s for s in _exporter.get_finished_spans() if s.name.endswith("/GetInfo")]
    assert info.parent is None and info.kind is trace.SpanKind.SERVER


async def test_a_streamed_completion_is_one_trace_too(config_for: Callable[..., Config]) -> None:
    """Server streaming through the interceptor: the stream arrives whole, in the client's trace."""
    spans = provider()
    async with (
        running_gateway(config_for(tracing=SETTINGS)) as gw,
        running_bridge(gw.target, tracing=True) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as client,
        client.stream(
            "POST",
            "/completion/stream",
            json={"prompt": "[[reply:done]] go"},
            headers={"traceparent": TRACEPARENT, "content-type": "application/json"},
        ) as response,
    ):
        assert response.status_code == 200
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    assert next(iter(lines[-1]["result"])) == "completed"
    in_trace = finished(spans, CLIENT_TRACE)
    (request,) = named(in_trace, "POST StreamCompletion")
    (rpc,) = [s for s in in_trace if s.name.endswith("/StreamCompletion")]
    (run,) = named(in_trace, "run")
    assert parent_id(request) == CLIENT_SPAN
    assert parent_id(rpc) == span_id(request) and parent_id(run) == span_id(rpc)
