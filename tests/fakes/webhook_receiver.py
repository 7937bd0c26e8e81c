"""A real webhook receiver on 127.0.0.1 for tests: scripted replies, recorded requests."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    # When set, the answer never ends: its status line and then header after header, one byte
    # every `drip_s` seconds, until the client hangs up or the receiver stops (a receiver that
    # holds a client with a per-read timeout forever).
    drip_s: float = 0.0
    # With drip_s: the status line and headers at once (`status`, no Content-Length), then the
    # body one byte every `drip_s` seconds, forever.
    drip_body: bool = False


# What a dripping reply sends: a status line, then this header line again and again.
_DRIP_STATUS = b"HTTP/1.1 200 OK\r\n"
_DRIP_HEADER = b"X-Drip: 1\r\n"


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int  # 0 for a dripping answer, which never completes
    at: float  # time.monotonic()

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class Receiver:
    """A webhook receiver: answers each request from a script, then 200; records every request.

    It can be started late on a chosen port, to play a receiver that was down. `choose`, when
    given, picks the reply of a request from its body first (None: the script's turn), so a
    test can make some deliveries drip whatever order they arrive in.
    """

    def __init__(
        self,
        script: Sequence[Reply] = (),
        port: int = 0,
        choose: Callable[[bytes], Reply | None] | None = None,
    ) -> None:
        self.requests: list[Received] = []
        self.max_concurrent = 0
        # Dripping answers in progress, and the ones whose client hung up (monotonic times).
        self.dripping = 0
        self.hang_ups: list[float] = []
        self._script = list(script)
        self._choose = choose
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
                    if reply.drip_s:
                        receiver._drip(self.wfile, reply)
                        return
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

    def _drip(self, out: Any, reply: Reply) -> None:
        with self._lock:
            self.dripping += 1
        try:
            if reply.drip_body:
                out.write(b"HTTP/1.1 %d Dripping\r\nConnection: close\r\n\r\n" % reply.status)
                out.flush()
                dripped: Iterable[int] = itertools.cycle(b"x")
            else:
                dripped = itertools.chain(_DRIP_STATUS, itertools.cycle(_DRIP_HEADER))
            for byte in dripped:
                if self._closing.wait(reply.drip_s):
                    return
                out.write(bytes([byte]))
                out.flush()
        except OSError:  # the client hung up
            with self._lock:
                self.hang_ups.append(time.monotonic())
        finally:
            with self._lock:
                self.dripping -= 1

    def _take(self, headers: dict[str, str], body: bytes) -> Reply:
        chosen = self._choose(body) if self._choose is not None else None
        with self._lock:
            reply = chosen or (self._script.pop(0) if self._script else Reply())
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)
            self.requests.append(
                Received(
                    {k.lower(): v for k, v in headers.items()},
                    body,
                    0 if reply.drip_s else reply.status,
                    time.monotonic(),
                )
            )
            return reply

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.accepted]
