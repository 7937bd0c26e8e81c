"""A real gateway whose gRPC server a test can stop at an exact point: the server runs on an
event loop of its own thread, which the test can hold (a blocking callback) while calls reach
grpc's core, then stop the server before the loop takes them up.

This is the race `test_upstream_restart.py` met by chance under load: a server that stops
cancels (CANCELLED, with no status of ours) every call its core received but its loop had not
yet taken up. grpc's core takes up one call of each method for the loop in advance; while the
loop is held, a second call of the same method stays pending in the core, and a stop scheduled
before the loop is released is the first thing the loop does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

from grpc._cython import cygrpc  # channelz: how many calls the core has received

from gateway.config import Config
from tests.harness import RunningGateway, running_gateway

WAIT_S = 20.0


def _server_ids() -> set[int]:
    servers = json.loads(cygrpc.channelz_get_servers(0)).get("server", [])
    return {int(server["ref"]["serverId"]) for server in servers}


def _calls_started(server_id: int) -> int:
    server = json.loads(cygrpc.channelz_get_server(server_id))["server"]
    return int(server["data"].get("callsStarted", 0))


class HeldGateway:
    """`running_gateway(config)` on a thread of its own; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._ready = threading.Event()
        self._release: threading.Event | None = None
        self._closed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: RunningGateway | None = None
        self._failure: BaseException | None = None
        self._server_id = 0
        self._thread = threading.Thread(target=self._main, name="held-gateway", daemon=True)

    @property
    def target(self) -> str:
        assert self._running is not None
        return self._running.target

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        before = _server_ids()
        async with running_gateway(self._config) as running:
            (self._server_id,) = _server_ids() - before
            self._running = running
            self._ready.set()
            await self._closed.wait()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(WAIT_S) or self._failure is not None:
            raise RuntimeError("the held gateway did not start") from self._failure

    def close(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._loop is not None and self._closed is not None:
            with contextlib.suppress(RuntimeError):  # its loop is gone already
                self._loop.call_soon_threadsafe(self._closed.set)
        self._thread.join(WAIT_S)

    def calls_started(self) -> int:
        """Calls the server's core has received (taken up or not)."""
        return _calls_started(self._server_id)

    def hold(self) -> None:
        """Block the server's event loop until `stop_and_release`; returns once it is blocked."""
        assert self._loop is not None
        held, release = threading.Event(), threading.Event()
        self._release = release

        def block() -> None:
            held.set()
            release.wait(WAIT_S)

        self._loop.call_soon_threadsafe(block)
        assert held.wait(WAIT_S), "the gateway's loop was not held"

    async def until_calls_started(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.calls_started() < count:
            assert time.monotonic() < deadline, f"{self.calls_started()} calls, not {count}"
            await asyncio.sleep(0.005)

    def stop_and_release(self, grace_s: float = 1.0) -> Future[None]:
        """Schedule the server's stop on its held loop, then release the loop: the stop runs
        before the loop takes up any call the core holds for it."""
        assert self._loop is not None and self._running is not None and self._release
        stopped = asyncio.run_coroutine_threadsafe(
            self._running.grpc_server.server.stop(grace_s), self._loop
        )
        self._release.set()
        return stopped


@contextlib.contextmanager
def held_gateway(config: Config) -> Iterator[HeldGateway]:
    gateway = HeldGateway(config)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.close()
