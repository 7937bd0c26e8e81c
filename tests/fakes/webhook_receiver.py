"""A real webhook receiver on 127.0.0.1 for tests: scripted replies, recorded requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int
    at: float  # time.monotonic()

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class Receiver:
    """A webhook receiver: answers each request from a script, then 200; records every request.

    It can be started late on a chosen port, to play a receiver that was down.
    """

    def __init__(self, script: Sequence[Reply] = (), port: int = 0) -> None:
        self.requests: list[Received] = []
        self.max_concurrent = 0
        self._script = list(script)
        self._port = port
        self._lock = threading.Lock()
        self._active = 0
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                reply = receiver._take(dict(self.headers.items()), body)
                try:
                    if reply.delay_s:
                        receiver._closing.wait(reply.delay_s)
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    with receiver._lock:
                        receiver._active -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and hung up is part of the script

        self._server = Server(("127.0.0.1", self._port), Handler)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def _take(self, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            reply = self._script.pop(0) if self._script else Reply()
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)
            self.requests.append(
                Received(
                    {k.lower(): v for k, v in headers.items()}, body, reply.status, time.monotonic()
                )
            )
            return reply

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.accepted]
