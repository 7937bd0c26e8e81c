"""The session endpoints through REST: shapes, aliases, query parameters, secure tokens, tails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import running_bridge, running_gateway


@pytest.fixture
async def client(config_for: Callable[..., Config]) -> AsyncIterator[httpx.AsyncClient]:
    config = config_for(
        codex_bin=AGENTS_DIR / "counter_agent.py", secure_token="sek", max_concurrent=4
    )
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


async def complete(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/completion", json={"prompt": "p", "env": {"FAKE_AGENT_LINES": "5"}, **body}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_list_is_a_json_array_with_documented_keys(client: httpx.AsyncClient) -> None:
    first = await complete(client, metadata={"k": "v"})
    listed = (await client.get("/sessions")).json()
    assert isinstance(listed, list) and listed[0]["session_id"] == first["session_id"]
    for key in ("session_id", "dir", "modified", "metadata", "codex_session_id", "status", "runs"):
        assert key in listed[0]
    assert listed[0]["metadata"] == {"k": "v"} and listed[0]["runs"] == 1
    assert (await client.get("/sessions", params={"limit": "abc"})).status_code == 400
    assert (await client.get("/sessions", params={"since": "not-a-date"})).status_code == 400
    assert (await client.get("/sessions", params={"since": "2999-01-01T00:00:00Z"})).json() == []


async def test_detail_with_tail_alias_and_flags(client: httpx.AsyncClient) -> None:
    first = await complete(client)
    detail = (
        await client.get(
            f"/sessions/{first['codex_session_id']}", params={"tail": 2, "include_events": "1"}
        )
    ).json()
    assert detail["session_id"] == first["session_id"]
    assert detail["runs"] == 1 and detail["run_history"][0]["run_id"] == first["run_id"]
    assert detail["stdout"]["tail_lines"] == 2 and len(detail["stdout"]["tail"].splitlines()) == 2
    assert len(detail["events"]) == 2
    assert (
        await client.get(f"/sessions/{first['session_id']}", params={"tail_lines": "-1"})
    ).status_code == 400
    assert (await client.get("/sessions/unknown")).status_code == 404


async def test_search_with_query_parameters(client: httpx.AsyncClient) -> None:
    first = await complete(client)
    found = (
        await client.get(f"/sessions/{first['session_id']}/search", params={"q": "LINE 3"})
    ).json()
    assert found["query"] == "LINE 3" and found["session_id"] == first["session_id"]
    (signal,) = found["signals"]
    assert {"line", "score", "context", "match_id", "signal_type", "snippet"} <= set(signal)
    fuzzy = (
        await client.get(
            f"/sessions/{first['session_id']}/search",
            params={"q": "lin 4", "fuzzy": "true", "max_results": 2},
        )
    ).json()
    assert len(fuzzy["signals"]) == 2 and fuzzy["signals"][0]["signal_type"] == "fuzzy_text_hit"
    assert (await client.get(f"/sessions/{first['session_id']}/search")).status_code == 400
    bad = await client.get(
        f"/sessions/{first['session_id']}/search", params={"q": "x", "fuzzy": "perhaps"}
    )
    assert bad.status_code == 400 and "fuzzy" in bad.json()["error"]


async def test_prompt_nudge_and_busy(client: httpx.AsyncClient) -> None:
    first = await complete(client)
    sid = first["session_id"]
    prompted = await client.post(
        f"/sessions/{sid}/prompt", json={"prompt": "more", "env": {"FAKE_AGENT_LINES": "1"}}
    )
    assert prompted.status_code == 200 and prompted.json()["session_id"] == sid
    assert (await client.post(f"/sessions/{sid}/prompt", json={})).status_code == 400
    nudged = await client.post(f"/sessions/{sid}/nudge", json={"metadata": {"retry": True}})
    assert nudged.status_code == 200 and nudged.json()["metadata"] == {"retry": True}
    slow = {"prompt": "slow", "env": {"FAKE_AGENT_LINES": "20", "FAKE_AGENT_PAUSE_MS": "100"}}
    running = asyncio.ensure_future(client.post(f"/sessions/{sid}/prompt", json=slow))
    await asyncio.sleep(0.5)
    busy = await client.post(f"/sessions/{sid}/prompt", json={"prompt": "again"})
    assert busy.status_code == 409
    cancelled = await client.post(f"/sessions/{sid}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    assert (await running).status_code == 499
    detail = (await client.get(f"/sessions/{sid}")).json()
    assert detail["status"] == "cancelled"


async def test_secure_sessions_by_header_or_query(client: httpx.AsyncClient) -> None:
    denied = await client.post("/completion", json={"prompt": "p", "secure": True})
    assert denied.status_code == 403
    secure = await client.post(
        "/completion", json={"prompt": "p", "secure": True}, headers={"X-Codex-Secure-Token": "sek"}
    )
    assert secure.status_code == 200
    sid = secure.json()["session_id"]
    assert (await client.get(f"/sessions/{sid}")).status_code == 403
    assert (
        await client.get(f"/sessions/{sid}", headers={"X-Secure-Token": "sek"})
    ).status_code == 200
    assert (await client.get(f"/sessions/{sid}", params={"secure_token": "sek"})).status_code == 200
    # a wrong header does not hide a right query token
    both = await client.get(
        f"/sessions/{sid}", params={"secure_token": "sek"}, headers={"X-Secure-Token": "no"}
    )
    assert both.status_code == 200
    assert sid not in [s["session_id"] for s in (await client.get("/sessions")).json()]
    assert sid in [
        s["session_id"]
        for s in (await client.get("/sessions", params={"secure_token": "sek"})).json()
    ]


async def test_tail_as_ndjson_follow(client: httpx.AsyncClient) -> None:
    first = await complete(client)
    sid = first["session_id"]
    received: list[dict[str, Any]] = []

    async def follow() -> None:
        params = {"follow": "true", "tail_lines": 1}
        async with client.stream("GET", f"/sessions/{sid}/tail", params=params) as response:
            async for line in response.aiter_lines():
                if not line:
                    continue
                received.append(json.loads(line)["result"])
                notice = received[-1].get("notice")
                if notice and notice["kind"] == "run_finished":
                    return

    follower = asyncio.ensure_future(follow())
    await asyncio.sleep(0.3)
    await client.post(
        f"/sessions/{sid}/prompt", json={"prompt": "x", "env": {"FAKE_AGENT_LINES": "50"}}
    )
    await asyncio.wait_for(follower, 10)
    texts = [r["line"]["text"] for r in received if "line" in r]
    numbers = [
        json.loads(t)["item"]["text"] for t in texts if t.startswith('{"type": "item.completed"')
    ]
    assert numbers == [f"line {n}" for n in range(50)]
