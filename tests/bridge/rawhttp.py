"""Raw HTTP/1.1 over a loopback socket, for requests no HTTP client would send."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


async def exchange(base_url: str, request: bytes) -> tuple[int, bytes]:
    """Send `request` as is and read until the server closes; (status, raw response)."""
    port = urlsplit(base_url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            response = await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line = response.split(b"\r\n", 1)[0]
    return int(status_line.split(b" ")[1]), response


def body_of(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1]
