"""`codex-gateway serve | grpc | bridge --upstream HOST:PORT`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from gateway.config import Config, ConfigError, StartupError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codex-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="gRPC and REST together (default)")
    commands.add_parser("grpc", help="the gRPC server alone")
    bridge = commands.add_parser("bridge", help="the REST bridge alone, in front of a gRPC server")
    bridge.add_argument("--upstream", required=True, help="HOST:PORT of the gRPC server")
    args = parser.parse_args(argv)
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        print(f"codex-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.logging_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # a line per change otherwise
    command = args.command or "serve"
    if command == "bridge":
        return asyncio.run(_bridge(config, args.upstream))
    from gateway.server import serve

    try:
        asyncio.run(serve(config, with_bridge=command == "serve"))
    except StartupError as exc:
        print(f"codex-gateway: {exc}", file=sys.stderr)
        return 2
    return 0


async def _bridge(config: Config, upstream: str) -> int:
    import signal

    from bridge.app import serve_bridge
    from bridge.connections import ConnectionLimits

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    guards = config.bridge
    await serve_bridge(
        upstream,
        config.bind,
        config.port,
        max_body_bytes=config.max_body_bytes,
        shutdown=stop,
        limits=ConnectionLimits(
            header_timeout_s=guards.header_timeout_ms / 1000,
            max_header_bytes=guards.max_header_bytes,
            max_headers=guards.max_headers,
            max_connections=guards.max_connections,
        ),
        check_host=guards.check_host(config.api_token),
        allowed_hosts=guards.allowed_hosts,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
