"""The REST bridge as a process of its own, beside the gateway's (`codex-gateway serve`).

Why a process: the bridge's work per request (HTTP parsing, routing, JSON <-> proto, its side
of the gRPC call) is about as much CPU as the gateway's, and in one process both wait on one
GIL; apart they use both CPUs, and a heavy request on one side does not stall the other.

The gateway binds and listens on the REST socket itself (so a port in use fails at startup and
connections queue while a bridge starts) and hands it to `python -m bridge --supervised`
(bridge/__main__.py). The bridge's standard input is a pipe from the gateway: closing it is
"stop", and a gateway that dies closes it too, so a bridge never outlives its gateway. A bridge
that exits on its own is logged and started again on the same socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Mapping
from typing import Final

from bridge.listener import READY_LINE_PREFIX
from bridge.tracing import TracingSettings
from gateway.config import SECRET_VARIABLES, BridgeConfig, StartupError
from gateway.handover import HANDOVER_VARIABLE

log = logging.getLogger(__name__)

READY_TIMEOUT_S: Final = 30.0
# The bridge gives open requests (live tails) 5 s at shutdown (bridge/app.py), then exits.
STOP_TIMEOUT_S: Final = 8.0
RESTART_DELAY_S: Final = 1.0
RESTART_DELAY_MAX_S: Final = 30.0
START_ATTEMPTS: Final = 3


class BridgeFailed(StartupError):
    """No REST bridge could be started."""


class BridgeProcess:
    """Runs and supervises the bridge child on `sock` in front of the gRPC `upstream`."""

    def __init__(
        self,
        upstream: str,
        sock: socket.socket,
        *,
        max_body_bytes: int,
        log_level: int,
        log_format: str = "text",
        guards: BridgeConfig | None = None,
        check_host: bool = True,
        tracing: TracingSettings | None = None,
        metrics_sock: socket.socket | None = None,
    ) -> None:
        self.upstream = upstream
        self.sock = sock
        # CODEX_GATEWAY_METRICS_PORT's listener: the bridge serves only GET /metrics there.
        self.metrics_sock = metrics_sock
        self.max_body_bytes = max_body_bytes
        self.log_level = log_level
        self.log_format = log_format
        self.guards = guards or BridgeConfig()
        self.check_host = check_host
        self.tracing = tracing
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pid: int | None = None

    def _argv(self, headers_fd: int | None) -> list[str]:
        return [
            sys.executable,
            "-P",  # not the working directory first: a folder there named bridge is not ours
            "-m",
            "bridge",
            "--supervised",
            *("--upstream", self.upstream),
            *("--fd", str(self.sock.fileno())),
            *(("--metrics-fd", str(self.metrics_sock.fileno())) if self.metrics_sock else ()),
            *(("--otlp-headers-fd", str(headers_fd)) if headers_fd is not None else ()),
            *("--max-body-bytes", str(self.max_body_bytes)),
            *("--log-level", logging.getLevelName(self.log_level)),
            *("--log-format", self.log_format),
            *bridge_guard_args(self.guards, check_host=self.check_host),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a bridge running until `stop` is set, then stop it (bounded, escalating).

        A bridge that exits is started again after a delay that doubles with each one that
        exits before it serves (up to RESTART_DELAY_MAX_S). If none has ever served after
        START_ATTEMPTS tries, `ready` fails with BridgeFailed: the gateway does not start.
        """
        failures = 0
        while not stop.is_set():
            served = False
            headers_fd = None
            try:
                headers_fd = self._headers_pipe()
                process = await asyncio.create_subprocess_exec(
                    *self._argv(headers_fd),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    pass_fds=(
                        *(sock.fileno() for sock in (self.sock, self.metrics_sock) if sock),
                        *((headers_fd,) if headers_fd is not None else ()),
                    ),
                    # Nothing secret in its environment block (nor in its argv, above): the
                    # bridge needs none, and /proc/<pid>/environ is readable by its uid. Only
                    # what it needs to start (BRIDGE_ENV_NAMES) is passed, and the tracing
                    # variables as the gateway's Config has them (bridge/tracing.py).
                    env={
                        **_bridge_environment(),
                        **(self.tracing.environment() if self.tracing else {}),
                    },
                    # Out of the terminal's process group: Ctrl-C is the gateway's to handle.
                    # (A session of its own is also a scheduling group of its own, with the
                    # weight of the gateway's: the two are not one share between them.)
                    start_new_session=True,
                )
            except OSError as exc:  # out of processes or descriptors: try again shortly
                log.error("cannot start the REST bridge: %s", exc)
                if headers_fd is not None:
                    os.close(headers_fd)
            else:
                if headers_fd is not None:  # the child has its copy
                    os.close(headers_fd)
                self.pid = process.pid
                try:
                    served = await self._supervise(process, stop)
                finally:
                    await self._stop(process)
                    self.pid = None
                if not stop.is_set():
                    log.error(
                        "the REST bridge (pid %d) exited with %s%s",
                        process.pid,
                        process.returncode,
                        "" if served else " before it served",
                    )
            if stop.is_set():
                return
            failures = 0 if served else failures + 1
            if not self.ready.done() and failures >= START_ATTEMPTS:
                self.ready.set_exception(
                    BridgeFailed(
                        f"the REST bridge did not start ({failures} attempts; its errors are above)"
                    )
                )
                return
            delay = min(RESTART_DELAY_S * 2 ** max(failures - 1, 0), RESTART_DELAY_MAX_S)
            log.error("starting another REST bridge in %.0f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def _headers_pipe(self) -> int | None:
        """The read end of a pipe holding the exporter's headers (a secret: never in the
        bridge's environment block or argv, which its uid can read in /proc), for the bridge
        to inherit; None without headers."""
        headers = self.tracing.headers if self.tracing else None
        if headers is None:
            return None
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, headers.encode())  # at most MAX_HEADERS_CHARS: the buffer holds it
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return read_fd

    async def _supervise(self, process: asyncio.subprocess.Process, stop: asyncio.Event) -> bool:
        """Until the bridge exits or `stop`; whether it served (said it was ready)."""
        exited = asyncio.ensure_future(process.wait())
        stopping = asyncio.ensure_future(stop.wait())
        announced = asyncio.ensure_future(self._read_ready(process))
        # After its ready line the bridge writes nothing to stdout; should anything arrive, it
        # is read and dropped, so the pipe never fills and blocks it.
        drained = asyncio.ensure_future(_discard_after(announced, process.stdout))
        try:
            done, _ = await asyncio.wait(
                {exited, stopping, announced},
                timeout=READY_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            port = announced.result() if announced in done else None
            if port is None:
                if not done:
                    log.error("the REST bridge (pid %d) did not start in time", process.pid)
                return False
            log.info("REST bridge (pid %d) serving on port %d", process.pid, port)
            if not self.ready.done():
                self.ready.set_result(port)
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            return True
        finally:
            for waiter in (exited, stopping, announced, drained):
                waiter.cancel()

    @staticmethod
    async def _read_ready(process: asyncio.subprocess.Process) -> int | None:
        """The port of the bridge's ready line; None if its stdout ends first. Other lines
        (a library's chatter) are skipped."""
        assert process.stdout is not None  # noqa: S101  # opened as a pipe above
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # a line over the stream's limit: not ours
                continue
            if not line:
                return None
            if line.startswith(READY_LINE_PREFIX):
                with contextlib.suppress(ValueError):
                    return int(line[len(READY_LINE_PREFIX) :])

    @staticmethod
    async def _stop(process: asyncio.subprocess.Process) -> None:
        """Close its input (the bridge's "stop"), wait, then SIGKILL; survives cancellation."""

        async def stop() -> None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("the REST bridge (pid %d) did not stop; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

        if process.returncode is None:
            await asyncio.shield(stop())


# What `python -m bridge` needs from the gateway's environment, and nothing else: its settings
# come as arguments (above), so an allow-list rather than "everything but the known secrets"
# keeps out whatever else a deployment puts in the gateway's environment (credentials in URLs,
# proxies with passwords, a cloud's keys). The interpreter is the gateway's own (`sys.executable`,
# whose venv it finds by itself); PYTHONPATH and PYTHONHOME are how a deployment may have made
# `bridge` importable; GRPC_* are grpcio's own settings (GRPC_ENABLE_FORK_SUPPORT, set by
# __main__, GRPC_VERBOSITY, GRPC_TRACE).
BRIDGE_ENV_NAMES: Final = frozenset(
    {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR", "PYTHONPATH", "PYTHONHOME"}
)
BRIDGE_ENV_PREFIXES: Final = ("LC_", "GRPC_")


def _bridge_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The bridge's environment block: the allowed names of the gateway's (never a secret)."""
    source = os.environ if environ is None else environ
    return {
        name: value
        for name, value in source.items()
        if (name in BRIDGE_ENV_NAMES or name.startswith(BRIDGE_ENV_PREFIXES))
        and name not in SECRET_VARIABLES
        and name != HANDOVER_VARIABLE
    }


def bridge_guard_args(guards: BridgeConfig, *, check_host: bool) -> list[str]:
    """`python -m bridge` options for the Host check and the connection limits."""
    return [
        *(("--allowed-hosts", ",".join(guards.allowed_hosts)) if guards.allowed_hosts else ()),
        *(() if check_host else ("--no-host-check",)),
        *("--header-timeout-ms", str(guards.header_timeout_ms)),
        *("--max-header-bytes", str(guards.max_header_bytes)),
        *("--max-headers", str(guards.max_headers)),
        *("--max-connections", str(guards.max_connections)),
        *("--request-read-timeout-ms", str(guards.request_read_timeout_ms)),
    ]


async def _discard_after(
    first: asyncio.Future[int | None], stream: asyncio.StreamReader | None
) -> None:
    await asyncio.wait({first})
    while stream is not None and await stream.read(65_536):
        pass
