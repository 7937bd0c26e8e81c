"""Limits and validation over gRPC: every client mistake is a clear status, nothing leaks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from bridge.requestid import is_sane
from codex_gateway.v1 import runs_pb2
from codex_gateway.v1 import status_pb2 as gw_status
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, agent_path, running_gateway
from tests.processes import running_below


def completion(prompt: str = "hi", **fields: Any) -> runs_pb2.CompleteRequest:
    return runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=prompt, **fields))


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def error_info(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[Any]]:
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    infos, others = [], []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
        else:
            others.append(detail)
    return infos[0], others


async def test_concurrency_limit_is_resource_exhausted_with_the_documented_facts(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "slow_agent.py", max_concurrent=1)
    async with running_gateway(config) as gw:
        slow = asyncio.ensure_future(gw.stub.Complete(completion(env={"FAKE_AGENT_SECONDS": "1"})))
        await asyncio.sleep(0.3)
        error = await rpc_error(gw.stub.Complete(completion()))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == "Too many concurrent requests"
        info, others = error_info(error)
        facts = dict(info.metadata)
        assert is_sane(facts.pop("request_id"))  # every error names its request
        assert facts == {"retry_after": "5", "active": "1", "max": "1"}
        retry = error_details_pb2.RetryInfo()
        assert any(detail.Unpack(retry) for detail in others)
        assert retry.retry_delay.seconds == 5
        await slow


async def test_a_storm_of_requests_gets_clean_answers_and_every_slot_back(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", max_concurrent=3)
    async with running_gateway(config) as gw:
        results = await asyncio.gather(
            *(gw.stub.Complete(completion()) for _ in range(40)), return_exceptions=True
        )
        codes = {
            r.code() if isinstance(r, grpc.aio.AioRpcError) else grpc.StatusCode.OK for r in results
        }
        assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert grpc.StatusCode.OK in codes
        status = await gw.stub.GetStatus(gw_status.GetStatusRequest())
        assert (status.concurrency.active, status.concurrency.available) == (0, 3)
        assert running_below() == {}


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        pytest.param({}, "messages or prompt is required", id="no-input"),
        pytest.param({"prompt": "   "}, "messages or prompt is required", id="blank-prompt"),
        pytest.param({"env": {"PATH": "/evil"}}, "PATH", id="env-path"),
        pytest.param({"env": {"LD_PRELOAD": "x.so"}}, "LD_PRELOAD", id="env-ld-preload"),
        pytest.param({"env": {"NODE_OPTIONS": "-r x"}}, "NODE_OPTIONS", id="env-node-options"),
        pytest.param({"env": {"https_proxy": "h"}}, "https_proxy", id="env-proxy"),
        pytest.param({"env": {"CODEX_HOME": "/"}}, "CODEX_HOME", id="env-codex-home"),
        pytest.param({"env": {"bad-name": "x"}}, "bad-name", id="env-bad-name"),
        pytest.param({"workspace": "../.."}, "outside the allowed roots", id="workspace-dotdot"),
        pytest.param({"workspace": "/"}, "outside the allowed roots", id="workspace-root"),
        pytest.param({"cwd": "/etc"}, "outside the allowed roots", id="cwd-alias"),
        pytest.param(
            {"workspace": "missing-dir"}, "not an existing directory", id="workspace-missing"
        ),
        pytest.param({"model": "--dangerous"}, "model", id="model-option-injection"),
        pytest.param(
            {"resume_session_id": "--last"}, "resume_session_id", id="resume-option-injection"
        ),
        pytest.param({"secure": True}, "CODEX_GATEWAY_SECURE_TOKEN", id="secure-unconfigured"),
    ],
)
async def test_invalid_input_is_invalid_argument_naming_the_problem(
    gateway: RunningGateway, fields: dict[str, Any], needle: str
) -> None:
    prompt = fields.pop("prompt", "hi")
    request = runs_pb2.CompleteRequest(run=runs_pb2.RunInput(**fields))
    if prompt is not None:
        request.run.prompt = prompt
    if "messages or prompt" in needle and prompt == "hi":
        request.run.ClearField("prompt")
    error = await rpc_error(gateway.stub.Complete(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (error.details() or "")
    assert not list(gateway.gateway.config.session_dirs[0].glob("session-*"))


async def test_symlink_out_of_the_workspace_is_refused(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (gateway.gateway.config.default_workspace / "escape").symlink_to(outside)
    error = await rpc_error(gateway.stub.Complete(completion(workspace="escape")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "outside the allowed roots" in (error.details() or "")


async def test_a_subdirectory_of_the_workspace_is_accepted(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py")
    (config.default_workspace / "sub").mkdir()
    async with running_gateway(config) as gw:
        result = (await gw.stub.Complete(completion(workspace="sub"))).result
        assert json.loads(result.output)["cwd"] == str(config.default_workspace / "sub")


async def test_api_token_is_required_except_for_health(config_for: Callable[..., Config]) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "echo_agent.py", api_token="s3cret")
    async with running_gateway(config) as gw:
        assert (await gw.stub.Health(gw_status.HealthRequest())).status == "ok"
        for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
            error = await rpc_error(gw.stub.Complete(completion(), metadata=metadata))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        error = await rpc_error(gw.stub.GetStatus(gw_status.GetStatusRequest()))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = await gw.stub.Complete(completion(), metadata=(("authorization", "Bearer s3cret"),))
        assert ok.result.status == "completed"


async def test_the_agent_environment_holds_no_gateway_secret(
    config_for: Callable[..., Config],
) -> None:
    import os

    from gateway.config import Config as RealConfig

    environ = {
        **os.environ,
        "PATH": agent_path(),  # the env agent's python3: this interpreter
        "CODEX_GATEWAY_SECURE_TOKEN": "secure-secret",
        "CODEX_GATEWAY_API_TOKEN": "api-secret",
        "SESSION_WEBHOOK_AUTH_BEARER": "bearer-secret",
        "SESSION_WEBHOOK_SECRET": "hmac-secret",
        "SOME_OTHER_SERVICE_PASSWORD": "unrelated-secret",
        # The trace exporter's credentials (issue 16): the gateway's, never codex's.
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20otlp-secret",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=traces-secret",
        "CODEX_GATEWAY_CHILD_ENV": "FAKE_API_KEY",
        "FAKE_API_KEY": "dummy",
    }
    real = RealConfig.from_env(environ)
    config = config_for(codex_bin=AGENTS_DIR / "env_agent.py", child_env=real.child_env)
    async with running_gateway(config) as gw:
        result = (await gw.stub.Complete(completion(env={"TASK_VAR": "mine"}))).result
    agent_env = json.loads(result.output)
    assert agent_env["TASK_VAR"] == "mine" and agent_env["FAKE_API_KEY"] == "dummy"
    dumped = json.dumps(agent_env)
    for secret in (
        "secure-secret",
        "api-secret",
        "bearer-secret",
        "hmac-secret",
        "unrelated-secret",
        "otlp-secret",
        "traces-secret",
    ):
        assert secret not in dumped
    assert not any(name.startswith(("CODEX_GATEWAY_", "SESSION_WEBHOOK_")) for name in agent_env)


async def test_stalled_model_times_out_with_nothing_left_running(
    config_for: Callable[..., Config], model_server: Any
) -> None:
    async with running_gateway(config_for()) as gw:
        error = await rpc_error(
            gw.stub.Complete(completion("[[scenario:stall]] hi", timeout_ms=2500))
        )
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "timed out after 2500ms" in (error.details() or "")
        assert running_below() == {}
        status = await gw.stub.GetStatus(gw_status.GetStatusRequest())
        assert status.concurrency.active == 0
