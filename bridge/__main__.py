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
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from .app import DEFAULT_MAX_BODY_BYTES, serve_bridge
from .listener import READY_LINE_PREFIX

logger = logging.getLogger("bridge")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge", description=__doc__)
    parser.add_argument("--upstream", required=True, help="the gateway's gRPC address, host:port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--log-level", default="INFO", choices=logging.getLevelNamesMapping())
    parser.add_argument(
        "--supervised", action="store_true", help="run under codex-gateway serve (see above)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sock = socket.socket(fileno=args.fd) if args.fd is not None else None
    asyncio.run(
        _run(args.upstream, args.host, args.port, args.max_body_bytes, sock, args.supervised)
    )


async def _run(
    upstream: str,
    host: str,
    port: int,
    max_body_bytes: int,
    sock: socket.socket | None,
    supervised: bool,
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
