"""Scripted model server: the OpenAI Responses API over SSE, as codex 0.169.0 calls it.

Codex POSTs ``{base_url}/responses`` (``base_url`` ends in ``/v1``) and reads a
``text/event-stream`` reply (shared/spec/codex-cli.md sections 3 and 4). A test scripts the
reply through markers in its prompt, searched in every user message of the request, the last
occurrence winning:

``[[scenario:NAME]]``   which scenario answers (otherwise ``ModelServer.default_scenario``)
``[[reply:TEXT]]``      the assistant text of ``message``, ``reasoning``, ``slow`` and ``usage``
``[[cmd:COMMAND]]``     the ``exec_command`` of ``tool`` (default ``ls -1``)
``[[sleep:SECONDS]]``   how long ``slow`` stays silent (default 5; more than the config's
                        ``stream_idle_timeout_ms`` makes codex fail the turn with an idle timeout)
``[[usage:IN,OUT]]``    the token usage of ``usage`` (every other reply reports 100 in, 10 out)
``[[reset:SECONDS]]``   when a rate or usage limit resets, from now (``http429usage``:
                        ``resets_at``; ``ratelimited``: "try again in"; ``http429``: Retry-After)
``[[fails:N]]``         the scenario answers the first N requests of this prompt (the last user
                        message's text, counted per server), ``message`` the later ones

Scenarios: ``message``, ``tool``, ``patch``, ``reasoning``, ``usage``, ``echo_history``,
``slow``, ``http400`` (model_not_found), ``http404``, ``http401``, ``http429``
(rate_limit_exceeded), ``http429quota`` (insufficient_quota), ``http429usage``
(usage_limit_reached), ``ratelimited`` (a rate limit in the stream), ``context``
(context_length_exceeded), ``http500``, ``http503``, ``failed``, ``truncate``, ``close``,
``hang`` and ``stall``. The two-step ones (``tool``, ``patch``) tell their steps apart by the
request's last ``input`` item: a ``function_call_output`` or ``custom_tool_call_output`` means
the tool has run. ``stall`` and ``hang`` hold their connection until ``stop()``, which releases
them.

The scripts live in ``tests.fakes.scenarios``. Run the server standalone with
``python -m tests.fakes.model_server --port 18081``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.fakes.scenarios import SCENARIOS, Exchange, input_items, user_texts

DEFAULT_SCENARIO = "message"


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: Any  # the parsed JSON body, or None when it was not JSON
    scenario: str | None  # the scenario that answered, None for a request outside /responses
    received_at: float = 0.0  # time.monotonic() when it arrived

    @property
    def input(self) -> list[dict[str, Any]]:
        """The Responses ``input`` items."""
        return input_items(self.body)

    def user_texts(self) -> list[str]:
        """The texts of the user messages in ``input``, in order."""
        return user_texts(self.input)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log on stderr."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self) -> None:
        owner = self.server.owner
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.close_connection = True
        is_responses = self.command == "POST" and self.path.split("?")[0].endswith("/responses")
        exchange = Exchange(self, body, ids=owner._ids, stopping=owner._stopping)
        scenario = exchange.markers.get("scenario", owner.default_scenario).strip()
        if is_responses and "fails" in exchange.markers:
            texts = user_texts(exchange.items)
            if owner._count(texts[-1] if texts else "") > _number(exchange.markers["fails"]):
                scenario = DEFAULT_SCENARIO
        owner._record(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers={key.lower(): value for key, value in self.headers.items()},
                body=body,
                scenario=scenario if is_responses else None,
                received_at=time.monotonic(),
            )
        )
        if not is_responses:
            exchange.send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        answer = SCENARIOS.get(scenario)
        if answer is None:
            message = f"fake model server: unknown scenario {scenario!r}"
            exchange.send_json(400, {"error": {"message": message, "type": "invalid_request"}})
            return
        answer(exchange)

    do_POST = _answer
    do_GET = _answer


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() joins the handlers itself, with a deadline
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: ModelServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return  # codex hung up, or stop() closed the socket under a streaming handler
        # Kept, not printed: printing a traceback parses source with `ast` on Python 3.11, whose
        # AST recursion counter is shared by the interpreter's threads; a parse here while
        # pytest parses a failure report in the main thread once failed that report with
        # "SystemError: AST constructor recursion depth mismatch", an INTERNALERROR that ended
        # the whole run (see CPython gh-106905).
        where = traceback.extract_tb(error.__traceback__)[-1] if error is not None else None
        self.owner.errors.append(
            f"{error!r} at {where.filename}:{where.lineno}" if where else repr(error)
        )


class ModelServer:
    """A scripted Responses API server on 127.0.0.1, served from background threads.

    ``start()`` and ``stop()`` return quickly and never need an event loop; ``async with`` runs
    them in a worker thread anyway.
    """

    def __init__(self, *, port: int = 0, default_scenario: str = DEFAULT_SCENARIO) -> None:
        self.default_scenario = default_scenario
        self._stopping = threading.Event()
        self.errors: list[str] = []  # unexpected handler exceptions, as repr()
        self._requested_port = port
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._ids = itertools.count(1)
        self._seen: collections.Counter[str] = collections.Counter()

    # -- lifecycle

    def start(self) -> ModelServer:
        if self._server is not None:
            raise RuntimeError("ModelServer already started")
        self._stopping.clear()
        self._server = _HTTPServer(("127.0.0.1", self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"model-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Release every waiting handler, close every connection and the listening socket."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in [*connections.values(), self._thread]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> ModelServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("ModelServer is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The provider ``base_url`` for codex; it POSTs to ``{base_url}/responses``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- what was asked

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests arrived; raise TimeoutError otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"{len(self._requests)} of {count} requests after {timeout} s")
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def _count(self, key: str) -> int:
        """How many requests had `key` so far, this one included."""
        with self._lock:
            self._seen[key] += 1
            return self._seen[key]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections[conn] = threading.current_thread()
            else:
                self._connections.pop(conn, None)


def write_codex_home(
    path: Path, base_url: str, *, model: str = "gpt-5.5", stream_idle_timeout_ms: int = 3000
) -> dict[str, str]:
    """Create CODEX_HOME with the hardened config of codex-cli.md section 1 for ``base_url``.

    Returns the environment codex needs on top of PATH and HOME. Prefer a ``path`` outside
    ``$TMPDIR`` (default /tmp): under it codex warns on stderr that it will not create its
    PATH aliases (harmless; apply_patch still works). Codex fails a turn whose stream stays
    silent for ``stream_idle_timeout_ms``; raise it for a ``slow`` scenario that sleeps longer.
    """
    path.mkdir(parents=True, exist_ok=True)
    config = f"""\
model = {json.dumps(model)}
model_provider = "fake"
allow_login_shell = false  # /bin/bash -c: no login-profile noise in command output

[analytics]
enabled = false  # no DNS lookups of ab.chatgpt.com

[features]
plugins = false  # no lookups of github.com, api.github.com, chatgpt.com
unbounded_connection_retries = false  # connection refused fails instead of retrying forever

[model_providers.fake]
name = "fake"
base_url = {json.dumps(base_url)}
env_key = "FAKE_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = {stream_idle_timeout_ms}
"""
    (path / "config.toml").write_text(config)
    return {"CODEX_HOME": str(path), "FAKE_API_KEY": "dummy", "NO_PROXY": "127.0.0.1,localhost"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.model_server",
        description="A scripted Responses API server for codex.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO, choices=sorted(SCENARIOS))
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with ModelServer(port=args.port, default_scenario=args.scenario) as server:
        print(f"fake model server listening on {server.base_url}", flush=True)
        while not done.wait(0.5):
            pass


if __name__ == "__main__":
    main()
