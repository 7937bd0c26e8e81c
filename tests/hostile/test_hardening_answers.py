"""Answers bounded in bytes (issue 12, #11): a finished run is never answered 429.

A run printing 70 events of 1 MB made a result over gRPC's 64 MiB message limit, and a session
of huge lines made GET /sessions/:id one: both failed RESOURCE_EXHAUSTED -> 429, so clients ran
the finished work again. Now the result and the session detail keep under
CODEX_GATEWAY_MAX_ANSWER_BYTES, with markers for what was left out, on both protocols.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, sessions_pb2
from tests.faults.spawned import Spawned, gateway_env, spawn, until_serving_sync

MIB = 1024 * 1024
ANSWER_BYTES = 2 * MIB  # a small budget, so a 1 MB output is cut too
SEVENTY_EVENTS = "count=70 bytes=1000000"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawned]:
    root = tmp_path_factory.mktemp("answers")
    env = gateway_env(root, "bigevents_agent.py", CODEX_GATEWAY_MAX_ANSWER_BYTES=str(ANSWER_BYTES))
    spawned = spawn(env, root / "gateway.log")
    try:
        until_serving_sync(spawned)
        yield spawned
        assert spawned.running(), spawned.log_tail()
    finally:
        assert spawned.stop() == 0, spawned.log_tail()


async def _rest(gateway: Spawned, method: str, path: str, **kw: Any) -> Any:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=120, trust_env=False) as client:
        answer = await client.request(method, path, **kw)
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()


async def _grpc(gateway: Spawned, rpc: str, request: Any) -> dict[str, Any]:
    options = [("grpc.max_receive_message_length", 64 * MIB)]
    async with grpc.aio.insecure_channel(gateway.target, options=options) as channel:
        answer = await getattr(gateway_pb2_grpc.GatewayServiceStub(channel), rpc)(request)
    assert answer.ByteSize() <= ANSWER_BYTES + 64 * 1024
    return json_format.MessageToDict(answer, preserving_proto_field_name=True)


async def complete(gateway: Spawned, protocol: str, prompt: str) -> dict[str, Any]:
    if protocol == "rest":
        return await _rest(gateway, "POST", "/completion", json={"prompt": prompt})
    request = runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=prompt))
    return (await _grpc(gateway, "Complete", request))["result"]


async def session_detail(gateway: Spawned, protocol: str, session_id: str) -> dict[str, Any]:
    if protocol == "rest":
        params = {"include_events": "true", "include_stderr": "true", "tail_lines": "2000"}
        return await _rest(gateway, "GET", f"/sessions/{session_id}", params=params)
    request = sessions_pb2.GetSessionRequest(
        session_id=session_id, include_events=True, include_stderr=True, tail_lines=2000
    )
    return (await _grpc(gateway, "GetSession", request))["session"]


PROTOCOLS = [pytest.param("rest", id="rest"), pytest.param("grpc", id="grpc")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_run_of_seventy_1_mb_events_is_answered_with_a_bounded_result(
    gateway: Spawned, protocol: str
) -> None:
    result = await complete(gateway, protocol, SEVENTY_EVENTS)

    assert result["status"] == "completed"
    assert result["output"].startswith("z" * 1000)
    assert "[gateway: " in result["output"][-300:] and "bytes omitted" in result["output"]
    assert result["content"] == result["output"]
    assert result["messages"][-1]["content"] == result["output"]
    marker = result["events"][-1]
    assert marker["type"] == "gateway.events_omitted"
    assert marker["omitted"] + len(result["events"]) - 1 == 73  # 70 + thread, turn start and end
    assert f"/sessions/{result['session_id']}" in marker["message"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_session_of_huge_lines_is_answered_with_its_newest_lines(
    gateway: Spawned, protocol: str
) -> None:
    session_id = (await complete(gateway, "rest", SEVENTY_EVENTS + " last=done"))["session_id"]

    detail = await session_detail(gateway, protocol, session_id)

    stdout = detail["stdout"]["tail"]
    assert stdout.startswith("[gateway: older lines omitted")
    assert stdout.rstrip().endswith("[completed] =====")
    events = detail["events"]
    assert events[0]["type"] == "gateway.events_omitted" and events[0]["omitted"] > 0
    assert events[-1]["type"] == "turn.completed"
    assert events[-2]["item"]["text"] == "done"


async def test_small_answers_are_untouched(gateway: Spawned) -> None:
    result = await complete(gateway, "grpc", "count=2 bytes=10 last=done")

    assert result["output"] == "done"
    assert [e["type"] for e in result["events"]][-1] == "turn.completed"
    assert len(result["events"]) == 6


def test_the_answer_budget_cannot_exceed_what_grpc_sends(tmp_path: Path) -> None:
    from gateway.config import Config, ConfigError

    with pytest.raises(ConfigError, match="CODEX_GATEWAY_MAX_ANSWER_BYTES"):
        Config.from_env({"CODEX_GATEWAY_MAX_ANSWER_BYTES": str(64 * MIB)}, cwd=tmp_path)


def test_by_default_an_answer_and_the_request_it_echoes_fit_a_default_grpc_client() -> None:
    """grpcio, grpc-go and grpcurl receive at most 4 MiB unless told otherwise. A run's result
    spends seven eighths of the budget on what the run made (result_message) and echoes the
    request (its messages and metadata: at most the body limit); a session's detail or list
    spends the budget alone."""
    from gateway.config import Config

    config = Config()
    assert config.max_answer_bytes * 7 // 8 + config.max_body_bytes + 64 * 1024 <= 4 * MIB
    assert config.max_answer_bytes + 64 * 1024 <= 4 * MIB


BLOB = "m" * 300_000  # under the body limit; a few of them exceed the 2 MiB budget


async def _list(gateway: Spawned, protocol: str) -> list[dict[str, Any]]:
    if protocol == "rest":  # the bare list (the binding's response_body)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60, trust_env=False) as client:
            answer = await client.get("/sessions", params={"limit": "200"})
        assert answer.status_code == 200, answer.text[:300]
        listed: list[dict[str, Any]] = answer.json()
        return listed
    answer = await _grpc(gateway, "ListSessions", sessions_pb2.ListSessionsRequest(limit=200))
    sessions: list[dict[str, Any]] = answer["sessions"]
    return sessions


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_sessions_with_large_metadata_are_listed_and_read_within_the_budget(
    gateway: Spawned, protocol: str
) -> None:
    body = {"prompt": "count=1 bytes=10", "metadata": {"blob": BLOB}}
    for _ in range(8):  # 2.4 MB of metadata in the newest sessions alone
        await _rest(gateway, "POST", "/completion", json=body)
    first = await _rest(gateway, "POST", "/completion", json=body)
    for _ in range(4):
        await _rest(gateway, "POST", f"/sessions/{first['session_id']}/prompt", json=body)

    listed = await _list(gateway, protocol)
    detail = await session_detail(gateway, protocol, first["session_id"])

    assert 1 <= len(listed) < 9  # the newest that fit
    assert listed[0]["session_id"] == first["session_id"]
    assert detail["runs"] == 5
    assert 1 <= len(detail["run_history"]) < 5
    assert detail["run_history"][-1]["metadata"] == {"blob": BLOB}
