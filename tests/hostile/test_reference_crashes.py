"""The reference implementation's known crash, denial-of-service and data-loss defects (its
section 15), each sent through REST to a live gateway process and answered correctly. Tests are
named `ref<N>` after the defect's number there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.spawned import Spawned, agents_of, gateway_env, proc_status_kib, running
from tests.hostile.live import (
    API_TOKEN,
    CORRUPT_SESSION,
    MAX_BODY_BYTES,
    MAX_CONCURRENT,
    assert_serving,
    raw,
    status_of,
)

# --- crashes and denial of service ----------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        pytest.param(b"a b", id="space"),
        pytest.param(b"[::1", id="open-bracket"),
        pytest.param(b"\xff\xfe", id="binary"),
        pytest.param(b"x:99999999", id="port-out-of-range"),
        pytest.param(b"", id="empty"),
        pytest.param(b"http://evil/", id="a-url"),
        pytest.param(b"%zz", id="percent"),
    ],
)
async def test_ref01_a_malformed_host_header_does_not_kill_the_server(
    gateway: Spawned, client: httpx.AsyncClient, host: bytes
) -> None:
    for path in (b"/health", b"/sessions?limit=1", b"/completion"):
        method = b"POST" if path == b"/completion" else b"GET"
        body = b'{"prompt": "x"}' if method == b"POST" else b""
        answer = await raw(
            gateway,
            method
            + b" "
            + path
            + b" HTTP/1.1\r\nHost: "
            + host
            + b"\r\nAuthorization: Bearer "
            + API_TOKEN.encode()
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body,
        )
        if answer:
            assert status_of(answer) < 500, answer[:300]
    assert gateway.running()
    await assert_serving(client)


# A message without content is an empty one (proto3): it runs with an empty prompt today, which
# a blank `prompt` does not (400). Either answer is fine here; the slot must not leak.
EMPTY_CONTENT_OK = frozenset({200, 400})


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        pytest.param([None], {400}, id="null"),
        pytest.param([None, None], {400}, id="nulls"),
        pytest.param([42], {400}, id="number"),
        pytest.param(["hello"], {400}, id="string"),
        pytest.param([{"role": "user", "content": {"text": "x"}}], {400}, id="object-content"),
        pytest.param([[]], {400}, id="nested-array"),
        pytest.param({"role": "user"}, {400}, id="object-not-array"),
        pytest.param([{"role": "user"}], EMPTY_CONTENT_OK, id="no-content"),
        pytest.param([{"role": "user", "content": None}], EMPTY_CONTENT_OK, id="null-content"),
    ],
)
async def test_ref02_malformed_messages_never_leak_a_slot(
    client: httpx.AsyncClient, messages: Any, expected: set[int]
) -> None:
    """The reference leaked its slot on `messages: [null]`: two made /completion 429 forever."""
    for _ in range(MAX_CONCURRENT + 2):
        response = await client.post("/completion", json={"messages": messages})
        assert response.status_code in expected, response.text
        if response.status_code == 400:
            assert "messages" in response.json()["error"]
    await assert_serving(client)


async def test_ref03_a_huge_chunked_body_is_refused_promptly_without_being_buffered(
    gateway: Spawned, client: httpx.AsyncClient
) -> None:
    peak_before = proc_status_kib(gateway.pid, "VmHWM")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.rest_port)
    writer.write(
        b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + API_TOKEN.encode()
        + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b'5\r\n{"a":\r\n'
    )
    piece = b"7" * 65536
    framed = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
    sent = 0
    try:
        # Up to 256 MiB, for at most 15 s: the server must answer long before either.
        while not answer.done() and sent < 256 * 2**20 and loop.time() - started < 15:
            writer.write(framed)
            try:
                await asyncio.wait_for(writer.drain(), 0.2)
            except TimeoutError:
                continue  # the server stopped reading: its answer is on the way
            except ConnectionError:
                break
            sent += len(piece)
        head = await asyncio.wait_for(answer, 10)
    finally:
        answer.cancel()
        writer.close()
    elapsed = loop.time() - started
    assert head.startswith(b"HTTP/1.1 413"), head
    assert elapsed < 5, f"answered after {elapsed:.1f}s and {sent >> 20} MiB"
    grown_mib = (proc_status_kib(gateway.pid, "VmHWM") - peak_before) / 1024
    assert grown_mib < 16, f"peak RSS grew {grown_mib:.1f} MiB while {sent >> 20} MiB were sent"
    await assert_serving(client)


async def test_ref03_the_body_limit_counts_bytes_not_characters(
    client: httpx.AsyncClient,
) -> None:
    text = "\u00e9" * (MAX_BODY_BYTES // 2 + 100)  # under the limit in characters, over in bytes
    assert len(text) < MAX_BODY_BYTES < len(text.encode())
    response = await client.post("/completion", json={"prompt": text})
    assert response.status_code == 413, response.text
    assert str(MAX_BODY_BYTES) in response.json()["error"]


async def test_ref03_a_character_split_across_chunks_arrives_whole(
    client: httpx.AsyncClient,
) -> None:
    text = "caf\u00e9 \u2713 \U0001f600 na\u00efve"
    body = json.dumps({"prompt": text}, ensure_ascii=False).encode()

    async def one_byte_chunks() -> AsyncIterator[bytes]:
        for i in range(len(body)):
            yield body[i : i + 1]  # every multi-byte sequence is cut

    response = await client.post(
        "/completion", content=one_byte_chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert text in json.loads(response.json()["output"])["prompt"]


async def test_ref06_the_session_list_has_a_default_and_a_maximum_limit(
    client: httpx.AsyncClient,
) -> None:
    assert len((await client.get("/sessions")).json()) == 50
    assert len((await client.get("/sessions", params={"limit": "100000"})).json()) == 200


async def test_ref07_prompt_and_nudge_wait_their_turn_under_the_limit(tmp_path: Path) -> None:
    """The reference let /prompt, /nudge, triggers and the watcher bypass its limiter."""
    env = gateway_env(tmp_path, "slow_agent.py", CODEX_GATEWAY_MAX_CONCURRENT="1")
    async with (
        running(env, tmp_path) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30, trust_env=False) as http,
    ):
        quick = {"prompt": "x", "env": {"FAKE_AGENT_SECONDS": "0"}}
        first = await http.post("/completion", json=quick)
        assert first.status_code == 200, first.text
        sid = first.json()["session_id"]
        slow = asyncio.ensure_future(
            http.post("/completion", json={"prompt": "x", "env": {"FAKE_AGENT_SECONDS": "20"}})
        )
        try:
            for _ in range(100):
                if (await http.get("/status")).json()["concurrency"]["active"] == 1:
                    break
                await asyncio.sleep(0.05)
            for path in (f"/sessions/{sid}/prompt", f"/sessions/{sid}/nudge"):
                refused = await http.post(path, json=quick)
                assert refused.status_code == 429, (path, refused.text)
                body = refused.json()
                assert (body["error"], body["active"], body["max"]) == (
                    "Too many concurrent requests",
                    1,
                    1,
                )
                assert refused.headers["retry-after"] == "5"
            assert len(agents_of(gw.pid, "slow_agent")) == 1
        finally:
            for listed in (await http.get("/sessions")).json():
                if listed["status"] == "running":
                    await http.post(f"/sessions/{listed['session_id']}/cancel")
            assert (await slow).status_code == 499


# --- data loss and routing ------------------------------------------------------------------------


async def test_ref33_a_session_with_corrupt_meta_is_kept_not_deleted(
    gateway: Spawned, client: httpx.AsyncClient
) -> None:
    directory = gateway.log_path.parent / "sessions" / f"session-{CORRUPT_SESSION}"
    assert (directory / "stdout.log").read_text() == "precious log\n"
    assert (directory / "meta.json").read_text() == '{"session_id": "trunc'
    listed = (await client.get("/sessions", params={"limit": "200"})).json()
    assert [s["status"] for s in listed if s["session_id"] == CORRUPT_SESSION] == ["unreadable"]
    assert (await client.get(f"/sessions/{CORRUPT_SESSION}")).status_code == 404


@pytest.mark.parametrize(
    "path",
    [b"/sessions/%zz", b"/sessions/%E0%A4%A", b"/sessions/%ff", b"/sessions?limit=%zz", b"/%"],
)
async def test_ref37_malformed_percent_encoding_is_400(gateway: Spawned, path: bytes) -> None:
    answer = await raw(
        gateway,
        b"GET "
        + path
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + API_TOKEN.encode()
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert answer and status_of(answer) in (400, 404), answer[:300]


@pytest.mark.parametrize("path", [b"//sessions", b"//status", b"///health", b"//completion"])
async def test_ref37_a_double_slash_path_is_not_routed_to_the_root(
    gateway: Spawned, path: bytes
) -> None:
    method = b"POST" if path.endswith(b"completion") else b"GET"
    answer = await raw(
        gateway,
        method
        + b" "
        + path
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + API_TOKEN.encode()
        + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status_of(answer) == 404, answer[:300]
    assert b'"endpoints"' not in answer  # not GET /'s body


# --- found by this suite --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/triggers", "trigger_file"),
        ("POST", "/triggers", "trigger_file"),
        ("POST", "/completion", "workspace"),
        ("POST", "/completion", "cwd"),
    ],
)
@pytest.mark.parametrize("name", ["n" * 256, "a/" + "n" * 300, "loop/x"])
async def test_an_unusable_path_name_is_a_client_error_not_a_500(
    gateway: Spawned, client: httpx.AsyncClient, method: str, path: str, field: str, name: str
) -> None:
    """A component over NAME_MAX made Path.is_dir() raise, and a symlink loop made resolve()
    raise: 500s naming the absolute path, until fixed (52931cc)."""
    root = gateway.log_path.parent
    for directory in (root / "workspace", root / "triggers"):
        (directory / "a").mkdir(parents=True, exist_ok=True)
        if not (directory / "loop").is_symlink():
            (directory / "loop").symlink_to(directory / "loop")
    trigger = {"prompt_text": "x", "schedule": {"mode": "once", "at": "2099-01-01"}}
    if field == "trigger_file":
        response = await client.request(
            method, path, params={field: name}, json=trigger if method == "POST" else None
        )
    else:
        response = await client.post(path, json={"prompt": "x", field: name})
    assert response.status_code < 500, response.text
    if response.status_code != 200:  # a listing of a file that cannot exist may be empty
        assert response.status_code == 400, response.text
        assert response.json()["field"] in (field, "workspace")
        assert str(root) not in response.text
