"""Run the bridge alone: `python -m bridge --upstream 127.0.0.1:50051 --port 4000`.

`--fd N --supervised` is how `codex-gateway serve` runs it (gateway/bridge_process.py): on a
listening socket the gateway bound, stopped by the end of its standard input (the gateway closed
it, or died), deaf to SIGINT and SIGTERM (a terminal's Ctrl-C, or a service manager's SIGTERM to
every process of the service, is the gateway's to handle: it stops the bridge once its runs are
answered), and saying `ready <port>` on standard output once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from . import tracing as otel
from .app import DEFAULT_MAX_BODY_BYTES, serve_bridge
from .connections import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADERS,
    DEFAULT_REQUEST_READ_TIMEOUT_S,
    ConnectionLimits,
)
from .listener import READY_LINE_PREFIX
from .logformat import LOG_FORMATS, configure_logging

logger = logging.getLogger("bridge")


def _read_all(fd: int) -> str:
    """A pipe's whole text, then its end closed."""
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read(otel.MAX_HEADERS_CHARS * 4 + 1).decode()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge", description=__doc__)
    parser.add_argument("--upstream", required=True, help="the gateway's gRPC address, host:port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument(
        "--metrics-fd", type=int, help="serve GET /metrics alone on this inherited socket"
    )
    parser.add_argument(
        "--otlp-headers-fd",
        type=int,
        help="read the trace exporter's headers (a secret) from this inherited pipe",
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--log-level", default="INFO", choices=logging.getLevelNamesMapping())
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS)
    parser.add_argument(
        "--allowed-hosts",
        default="",
        help="comma-separated Host names served besides loopback and the bound address (* any)",
    )
    parser.add_argument(
        "--no-host-check", action="store_true", help="serve requests for any Host and Origin"
    )
    parser.add_argument(
        "--header-timeout-ms", type=int, default=int(DEFAULT_HEADER_TIMEOUT_S * 1000)
    )
    parser.add_argument(
        "--request-read-timeout-ms", type=int, default=int(DEFAULT_REQUEST_READ_TIMEOUT_S * 1000)
    )
    parser.add_argument("--max-header-bytes", type=int, default=DEFAULT_MAX_HEADER_BYTES)
    parser.add_argument("--max-headers", type=int, default=DEFAULT_MAX_HEADERS)
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    parser.add_argument(
        "--supervised", action="store_true", help="run under codex-gateway serve (see above)"
    )
    args = parser.parse_args(argv)
    configure_logging(logging.getLevelNamesMapping()[args.log_level], args.log_format)
    try:
        limits = ConnectionLimits(
            header_timeout_s=args.header_timeout_ms / 1000,
            max_header_bytes=args.max_header_bytes,
            max_headers=args.max_headers,
            max_connections=args.max_connections,
            request_read_timeout_s=args.request_read_timeout_ms / 1000,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        # The standard OpenTelemetry variables (the gateway passes its own on): bridge/tracing.py.
        tracing = otel.TracingSettings.from_environ(os.environ)
        if tracing is not None and args.otlp_headers_fd is not None:
            tracing = dataclasses.replace(tracing, headers=_read_all(args.otlp_headers_fd))
    except ValueError as exc:
        parser.error(str(exc))
    sock = socket.socket(fileno=args.fd) if args.fd is not None else None
    metrics_sock = socket.socket(fileno=args.metrics_fd) if args.metrics_fd is not None else None
    bridge_name = None if tracing is None else tracing.service_name + otel.BRIDGE_SUFFIX
    provider = otel.install(tracing, service_name=bridge_name)
    try:
        asyncio.run(
            _run(
                args.upstream,
                args.host,
                args.port,
                sock,
                args.supervised,
                max_body_bytes=args.max_body_bytes,
                limits=limits,
                check_host=not args.no_host_check,
                allowed_hosts=[name for name in args.allowed_hosts.split(",") if name.strip()],
                tracing=tracing is not None,
                metrics_sock=metrics_sock,
            )
        )
    finally:
        otel.shutdown(provider)


async def _run(
    upstream: str,
    host: str,
    port: int,
    sock: socket.socket | None,
    supervised: bool,
    *,
    max_body_bytes: int,
    limits: ConnectionLimits,
    check_host: bool,
    allowed_hosts: list[str],
    tracing: bool,
    metrics_sock: socket.socket | None = None,
) -> None:
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    if supervised:
        # The gateway decides when its bridge stops (after the runs whose REST callers wait on
        # it), even when a service manager signals every process of the service at once.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        loop.add_reader(sys.stdin.fileno(), _on_control_input, loop, shutdown)
    else:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, shutdown.set)

    def ready(bound: int) -> None:
        logger.info("bridge on port %d -> %s", bound, upstream)
        if supervised:
            sys.stdout.buffer.write(READY_LINE_PREFIX + b"%d\n" % bound)
            sys.stdout.buffer.flush()

    await serve_bridge(
        upstream,
        host,
        port,
        max_body_bytes=max_body_bytes,
        shutdown=shutdown,
        ready=ready,
        sock=sock,
        limits=limits,
        check_host=check_host,
        allowed_hosts=allowed_hosts,
        tracing=tracing,
        metrics_sock=metrics_sock,
    )


def _on_control_input(loop: asyncio.AbstractEventLoop, shutdown: asyncio.Event) -> None:
    """The gateway writes nothing: readable means end of file, i.e. stop."""
    try:
        data = os.read(sys.stdin.fileno(), 64)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        loop.remove_reader(sys.stdin.fileno())
        shutdown.set()


if __name__ == "__main__":
    main()
