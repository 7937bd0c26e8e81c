"""Run the bridge alone: `python -m bridge --upstream 127.0.0.1:50051 --port 4000`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence

from .app import DEFAULT_MAX_BODY_BYTES, serve_bridge


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge", description=__doc__)
    parser.add_argument("--upstream", required=True, help="the gateway's gRPC address, host:port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_run(args.upstream, args.host, args.port, args.max_body_bytes))


async def _run(upstream: str, host: str, port: int, max_body_bytes: int) -> None:
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shutdown.set)

    def ready(bound: int) -> None:
        logging.getLogger("bridge").info("bridge on http://%s:%d -> %s", host, bound, upstream)

    await serve_bridge(
        upstream, host, port, max_body_bytes=max_body_bytes, shutdown=shutdown, ready=ready
    )


if __name__ == "__main__":
    main()
