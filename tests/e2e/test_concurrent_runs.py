"""Sixteen real codex runs at once, on one codex home and one scripted model server, all succeed
(CODEX_GATEWAY_MAX_CONCURRENT=16): half over gRPC, half over REST, each kind of turn (a message,
a shell command, a patch, a reasoning summary) in a workspace of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format

from codex_gateway.v1 import runs_pb2
from gateway.config import Config
from tests.fakes.model_server import ModelServer
from tests.fakes.scenarios import PATCH_REPLY, TOOL_REPLY
from tests.harness import running_bridge, running_gateway

RUNS = 16
TURNS = ("message", "tool", "patch", "reasoning")

pytestmark = pytest.mark.timeout(300)


async def test_sixteen_real_codex_runs_at_once_on_one_codex_home_all_succeed(
    config_for: Callable[..., Config], model_server: ModelServer, tmp_path: Path
) -> None:
    config = config_for(max_concurrent=RUNS, timeout_ms=240_000)
    workspaces = []
    for number in range(RUNS):
        workspace = config.default_workspace / f"run-{number}"
        workspace.mkdir()
        workspaces.append(workspace)

    def body(number: int) -> dict[str, Any]:
        turn = TURNS[number % len(TURNS)]
        return {
            "prompt": f"[[scenario:{turn}]] [[reply:answer {number}]] run {number}",
            "workspace": str(workspaces[number]),
        }

    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=280, trust_env=False) as http,
    ):

        async def over_rest(number: int) -> dict[str, Any]:
            response = await http.post("/completion", json=body(number))
            assert response.status_code == 200, response.text
            answer: dict[str, Any] = response.json()
            return answer

        async def over_grpc(number: int) -> dict[str, Any]:
            run = json_format.ParseDict(body(number), runs_pb2.RunInput())
            result = (await gw.stub.Complete(runs_pb2.CompleteRequest(run=run))).result
            return json_format.MessageToDict(result, preserving_proto_field_name=True)

        results = await asyncio.gather(
            *(over_grpc(n) if n % 2 else over_rest(n) for n in range(RUNS))
        )

    assert [r["status"] for r in results] == ["completed"] * RUNS
    assert all(r.get("failure") is None for r in results)
    for number, result in enumerate(results):
        turn = TURNS[number % len(TURNS)]
        expected = {
            "message": f"answer {number}",
            "reasoning": f"answer {number}",
            "tool": TOOL_REPLY,
            "patch": PATCH_REPLY,
        }[turn]
        assert result["output"].startswith(expected), (number, result["output"])
        if turn == "patch":
            assert (workspaces[number] / "hello.txt").read_text() == "hello\n"
    threads = {r["codex_session_id"] for r in results}
    assert len(threads) == RUNS and None not in threads
    rollouts = list((config.codex_home / "sessions").glob("*/*/*/rollout-*.jsonl"))
    assert len(rollouts) == RUNS  # one codex home, one rollout per run
    assert len({r["session_id"] for r in results}) == RUNS
    assert model_server.errors == []
