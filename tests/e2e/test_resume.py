"""Clients that lose their connection and catch up: through REST (NDJSON with `after_seq`, SSE
with `Last-Event-ID`) and gRPC (`after_seq`), each killed at random points of a long run and
reconnected with the last seq it saw, reconstruct the run's items exactly: nothing lost,
nothing repeated, in order. Plus the seq on every streamed message, the run's seq range in its
result and records, and the cursor's unhappy paths on both protocols.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.config import Config
from gateway.sessions.files import STDOUT
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_bridge, running_gateway

Item = tuple[int, str, Any]  # seq, kind (line | event | notice), content
LINES = 3000


@pytest.fixture
async def served(
    config_for: Callable[..., Config],
) -> AsyncIterator[tuple[RunningGateway, httpx.AsyncClient]]:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py", max_concurrent=4)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield gw, http


async def _complete(http: httpx.AsyncClient, *, lines: int) -> dict[str, Any]:
    """A run of the counter agent printing `lines` lines, in a new session: its result."""
    response = await http.post(
        "/completion", json={"prompt": "a", "env": {"FAKE_AGENT_LINES": str(lines)}}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _from_json(result: dict[str, Any]) -> Item | None:
    if result.get("seq") is None:
        return None  # the tail's own notices (following, lagged)
    if result.get("line") is not None:
        return result["seq"], "line", (result["line"]["stream"], result["line"]["text"])
    if result.get("event") is not None:
        return result["seq"], "event", result["event"]
    return result["seq"], "notice", (result["notice"]["kind"], result["notice"]["status"])


def _from_message(message: sessions_pb2.TailSessionResponse) -> Item | None:
    if not message.HasField("seq"):
        return None
    kind = message.WhichOneof("kind")
    if kind == "line":
        return message.seq, "line", (message.line.stream, message.line.text)
    if kind == "event":
        return message.seq, "event", json_format.MessageToDict(message.event)
    return message.seq, "notice", (message.notice.kind, message.notice.status)


def _finished(item: Item) -> bool:
    return item[1] == "notice" and item[2][0] == "run_finished"


CONNECTIONS: collections.Counter[str] = collections.Counter()
"""Connections each kind of client opened in the current test."""
TAIL = {"follow": "true", "include_events": "true", "include_stderr": "true"}


async def _ndjson_client(
    http: httpx.AsyncClient, session: str, after: int, cuts: random.Random
) -> list[Item]:
    received: list[Item] = []
    while True:
        CONNECTIONS["ndjson"] += 1
        params = {**TAIL, "after_seq": str(received[-1][0] if received else after)}
        cut = cuts.randint(1, 600)
        async with http.stream("GET", f"/sessions/{session}/tail", params=params) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                item = _from_json(json.loads(line)["result"])
                if item is None:
                    continue
                received.append(item)
                if _finished(item):
                    return received
                cut -= 1
                if cut == 0:
                    break  # leaving the block drops the connection mid-stream


async def _sse_client(
    http: httpx.AsyncClient, session: str, after: int, cuts: random.Random
) -> list[Item]:
    received: list[Item] = []
    last_id = str(after)
    while True:
        CONNECTIONS["sse"] += 1
        headers = {"accept": "text/event-stream", "last-event-id": last_id}
        cut = cuts.randint(1, 600)
        async with http.stream(
            "GET", f"/sessions/{session}/tail", params=TAIL, headers=headers
        ) as response:
            assert response.status_code == 200
            frame_id = None
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    frame_id = line[4:]
                if not line.startswith("data: "):
                    continue
                item = _from_json(json.loads(line[6:]))
                if item is None:
                    continue
                assert frame_id == str(item[0])  # the frame's id is the item's seq
                last_id = frame_id
                received.append(item)
                if _finished(item):
                    return received
                cut -= 1
                if cut == 0:
                    break


async def _grpc_client(
    gw: RunningGateway, session: str, after: int, cuts: random.Random
) -> list[Item]:
    received: list[Item] = []
    while True:
        CONNECTIONS["grpc"] += 1
        call = gw.stub.TailSession(
            sessions_pb2.TailSessionRequest(
                session_id=session,
                follow=True,
                include_events=True,
                include_stderr=True,
                after_seq=received[-1][0] if received else after,
            )
        )
        cut = cuts.randint(1, 600)
        async for message in call:
            item = _from_message(message)
            if item is None:
                continue
            received.append(item)
            if _finished(item):
                call.cancel()
                return received
            cut -= 1
            if cut == 0:
                call.cancel()
                break


async def _whole(gw: RunningGateway, session: str, after: int) -> list[Item]:
    call = gw.stub.TailSession(
        sessions_pb2.TailSessionRequest(
            session_id=session, include_events=True, include_stderr=True, after_seq=after
        )
    )
    return [item async for message in call if (item := _from_message(message)) is not None]


@pytest.mark.parametrize("seed", [1, 2])
async def test_clients_killed_at_random_points_reconstruct_the_run_exactly(
    served: tuple[RunningGateway, httpx.AsyncClient], seed: int
) -> None:
    gw, http = served
    first = await _complete(http, lines=3)
    session, after = first["session_id"], first["last_seq"]
    cuts = random.Random(seed)
    CONNECTIONS.clear()
    clients = [
        asyncio.ensure_future(_ndjson_client(http, session, after, random.Random(cuts.random()))),
        asyncio.ensure_future(_sse_client(http, session, after, random.Random(cuts.random()))),
        asyncio.ensure_future(_grpc_client(gw, session, after, random.Random(cuts.random()))),
    ]
    env = {"FAKE_AGENT_LINES": str(LINES), "FAKE_AGENT_PAUSE_MS": "1"}
    response = await http.post(
        f"/sessions/{session}/prompt", json={"prompt": "b", "env": env}, timeout=120
    )
    assert response.status_code == 200, response.text
    second = response.json()
    received = await asyncio.wait_for(asyncio.gather(*clients), 120)
    whole = await _whole(gw, session, after)
    assert (whole[0][0], whole[-1][0]) == (second["first_seq"], second["last_seq"])
    assert whole[0][2] == ("run_started", "running") and whole[-1][2] == (
        "run_finished",
        "completed",
    )
    texts = [content[1] for _, kind, content in whole if kind == "line"]
    numbers = [json.loads(t)["item"]["text"] for t in texts if '"agent_message"' in t]
    assert numbers == [f"line {n}" for n in range(LINES)]
    for name, items in zip(("ndjson", "sse", "grpc"), received, strict=True):
        seqs = [seq for seq, _, _ in items]
        assert len(seqs) == len(set(seqs)), f"{name}: an item twice"
        assert items == whole, f"{name}: not the run's items, in order"
        assert CONNECTIONS[name] > 2, f"{name}: it never had to resume"
    # The items are the files': the run's stdout lines, between its markers.
    stdout = (Path(second["logs_path"]) / STDOUT).read_text()
    run_part = stdout[stdout.index(f"RUN {second['run_id']} START") :].splitlines()[1:-2]
    assert texts == run_part


async def test_every_streamed_message_carries_the_seq_the_tail_gives_it(
    served: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    gw, http = served
    call = gw.stub.StreamCompletion(
        runs_pb2.StreamCompletionRequest(
            run=runs_pb2.RunInput(prompt="a", env={"FAKE_AGENT_LINES": "20"})
        )
    )
    messages = [message async for message in call]
    started, *events, completed = messages
    assert started.HasField("seq") and not completed.HasField("seq")
    result = completed.completed
    assert started.seq == result.first_seq == 1
    seqs = [m.seq for m in events]
    assert seqs == sorted(set(seqs)) and result.last_seq > seqs[-1]
    whole = await _whole(gw, result.session_id, 0)
    tailed = {seq: content for seq, kind, content in whole if kind == "event"}
    for message in events:
        streamed = json_format.MessageToDict(message.event)
        assert tailed[message.seq] == {**streamed, "run_id": result.run_id}
    # REST: the same seqs, and the run's range on its result and in its record.
    response = await http.post(
        "/completion/stream",
        json={"prompt": "b", "session_id": result.session_id, "env": {"FAKE_AGENT_LINES": "2"}},
    )
    lines = [json.loads(line)["result"] for line in response.text.splitlines()]
    assert lines[0]["seq"] == result.last_seq + 1 and lines[0]["started"]
    assert lines[-1]["seq"] is None and lines[-1]["completed"]["first_seq"] == lines[0]["seq"]
    detail = (await http.get(f"/sessions/{result.session_id}")).json()
    ranges = [(r["first_seq"], r["last_seq"]) for r in detail["run_history"]]
    assert ranges == [
        (result.first_seq, result.last_seq),
        (lines[0]["seq"], lines[-1]["completed"]["last_seq"]),
    ]


async def test_tail_lines_zero_with_follow_is_only_what_comes_next(
    served: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    gw, http = served
    first = await _complete(http, lines=3)
    session = first["session_id"]
    assert (
        await http.get(f"/sessions/{session}/tail", params={"tail_lines": "0"})
    ).status_code == 400
    call = gw.stub.TailSession(
        sessions_pb2.TailSessionRequest(session_id=session, tail_lines=0, follow=True)
    )
    following = await call.read()
    assert following.notice.kind == "following" and not following.HasField("seq")
    run = asyncio.ensure_future(
        http.post(
            f"/sessions/{session}/prompt", json={"prompt": "b", "env": {"FAKE_AGENT_LINES": "1"}}
        )
    )
    nxt = await asyncio.wait_for(call.read(), 10)
    assert nxt.notice.kind == "run_started" and nxt.seq == first["last_seq"] + 1
    call.cancel()
    assert (await run).status_code == 200


@pytest.mark.parametrize(
    ("params", "headers", "message"),
    [
        pytest.param({"after_seq": "-1"}, {}, "after_seq must be at least 0", id="negative"),
        pytest.param({"after_seq": "999999"}, {}, "after_seq 999999 is past", id="future"),
        pytest.param({"after_seq": "x"}, {}, "after_seq", id="not-a-number"),
        pytest.param({"after_seq": str(2**63 - 1)}, {}, "is past", id="int64-max"),
        pytest.param({"after_seq": str(2**63)}, {}, "after_seq", id="past-int64"),
        pytest.param({"after_seq": str(-(2**63))}, {}, "at least 0", id="int64-min"),
        pytest.param({}, {"last-event-id": "abc"}, "Last-Event-ID must be", id="bad-last-event-id"),
        pytest.param({}, {"last-event-id": "99999999999999999999"}, "Last-Event-ID", id="huge-id"),
        pytest.param({}, {"last-event-id": "999999"}, "after_seq 999999 is past", id="future-id"),
    ],
)
async def test_a_bad_cursor_is_a_400_on_rest(
    served: tuple[RunningGateway, httpx.AsyncClient],
    params: dict[str, str],
    headers: dict[str, str],
    message: str,
) -> None:
    _, http = served
    first = await _complete(http, lines=1)
    response = await http.get(
        f"/sessions/{first['session_id']}/tail",
        params={"follow": "true", **params},
        headers=headers,
    )
    assert response.status_code == 400 and message in response.json()["error"]


async def test_the_query_wins_over_last_event_id(
    served: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    _, http = served
    first = await _complete(http, lines=1)
    response = await http.get(
        f"/sessions/{first['session_id']}/tail",
        params={"after_seq": str(first["last_seq"] - 1)},
        headers={"last-event-id": "0"},
    )
    (only,) = [json.loads(line)["result"] for line in response.text.splitlines()]
    assert only["seq"] == first["last_seq"] and only["notice"]["kind"] == "run_finished"


@pytest.mark.parametrize(
    ("after_seq", "code"),
    [
        (-1, grpc.StatusCode.INVALID_ARGUMENT),
        (10**6, grpc.StatusCode.INVALID_ARGUMENT),
        (2**63 - 1, grpc.StatusCode.INVALID_ARGUMENT),
        (-(2**63), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_a_bad_cursor_is_invalid_argument_on_grpc(
    served: tuple[RunningGateway, httpx.AsyncClient], after_seq: int, code: grpc.StatusCode
) -> None:
    gw, http = served
    first = await _complete(http, lines=1)
    call = gw.stub.TailSession(
        sessions_pb2.TailSessionRequest(session_id=first["session_id"], after_seq=after_seq)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == code
