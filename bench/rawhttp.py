"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for request-rate benchmarks.

httpx spends about 1.5 ms of CPU per request; on a 2-CPU machine shared with the gateway that
caps a load generator at a few hundred requests per second and steals the gateway's CPU. This
client writes the request line by hand and reads `Content-Length` bytes back: some tens of
microseconds per request. It handles exactly what the REST bridge answers to a GET or a JSON
POST (a status line, headers with Content-Length, a body), and fails loudly on anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from types import TracebackType


class RawClient:
    """One keep-alive connection; `get` is sequential on it."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawClient:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    async def get(self, target: str) -> tuple[int, bytes]:
        """The status and body of `GET target`."""
        return await self.request(b"GET", target)

    async def post_json(self, target: str, body: bytes) -> tuple[int, bytes]:
        """The status and body of `POST target` with a JSON body."""
        return await self.request(b"POST", target, body)

    async def request(
        self, method: bytes, target: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise RuntimeError("not connected")
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (
            method,
            target.encode(),
            self._host.encode(),
        )
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        writer.write(head + b"\r\n" + (body or b""))
        answer = await reader.readuntil(b"\r\n\r\n")
        status_line, _, headers = answer.partition(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = -1
        for header in headers.split(b"\r\n"):
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError(f"{method.decode()} {target}: chunked answers are unsupported")
        if length < 0:
            raise RuntimeError(f"{method.decode()} {target}: no Content-Length")
        return status, await reader.readexactly(length)


async def rate(
    host: str, port: int, targets: Sequence[str], total: int, concurrency: int
) -> tuple[float, list[int]]:
    """Requests per second of `concurrency` connections sharing `total` GETs, cycling through
    `targets`, and each latency (ns). Any status but 200 breaks the measurement."""
    remaining = total
    latencies: list[int] = []

    async def client(offset: int) -> None:
        nonlocal remaining
        index = offset
        async with RawClient(host, port) as http:
            while remaining > 0:
                remaining -= 1
                target = targets[index % len(targets)]
                index += concurrency
                start = time.perf_counter_ns()
                status, body = await http.get(target)
                latencies.append(time.perf_counter_ns() - start)
                if status != 200:
                    raise RuntimeError(f"GET {target}: {status} {body[:200]!r}")

    start = time.perf_counter_ns()
    async with asyncio.TaskGroup() as group:
        for offset in range(concurrency):
            group.create_task(client(offset))
    return total / ((time.perf_counter_ns() - start) / 1e9), latencies
