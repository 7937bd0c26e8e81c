"""A live gateway process for the REST regression tests of the reference's defects: its
configuration, the sessions it starts with, and raw HTTP for requests no client would send."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx

from tests.faults.spawned import Spawned

API_TOKEN = "api-token-never-in-the-agent"
SECURE_TOKEN = "secure-token-never-in-the-agent"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
MAX_BODY_BYTES = 65_536
MAX_CONCURRENT = 2
SEEDED_SESSIONS = 230
CORRUPT_SESSION = "0badc0de-0000-4000-8000-000000000000"


def seed_sessions(root: Path) -> None:
    """Sessions written by an earlier gateway, and one whose meta.json is garbage."""
    for n in range(SEEDED_SESSIONS):
        session_id = str(uuid.UUID(int=n + 1, version=4))
        directory = root / f"session-{session_id}"
        directory.mkdir(parents=True)
        stamp = f"2020-01-01T00:{n // 60:02d}:{n % 60:02d}.000Z"
        meta = {"session_id": session_id, "status": "completed", "updated_at": stamp, "runs": []}
        (directory / "meta.json").write_text(json.dumps(meta))
    corrupt = root / f"session-{CORRUPT_SESSION}"
    corrupt.mkdir()
    (corrupt / "meta.json").write_text('{"session_id": "trunc')
    (corrupt / "stdout.log").write_text("precious log\n")


async def raw(gateway: Spawned, request: bytes) -> bytes:
    """Send bytes no HTTP client would, and read the first part of the answer ('' if none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.rest_port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def assert_serving(client: httpx.AsyncClient) -> None:
    """Healthy, no slot taken, and a valid run still completes."""
    assert (await client.get("/health")).json() == {"status": "ok"}
    concurrency = (await client.get("/status")).json()["concurrency"]
    assert concurrency["active"] == 0, concurrency
    ok = await client.post("/completion", json={"prompt": "still serving"})
    assert ok.status_code == 200, ok.text


async def completion_count(client: httpx.AsyncClient) -> int:
    """Sessions this module's runs created (the seeded ones are all older)."""
    listed = (await client.get("/sessions", params={"limit": "200"})).json()
    return sum(1 for s in listed if not s["updated_at"].startswith("2020-"))
