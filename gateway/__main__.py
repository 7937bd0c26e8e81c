"""`codex-gateway serve | grpc | bridge --upstream HOST:PORT | keys add NAME ...`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
from urllib.parse import urlsplit

from bridge.logformat import configure_logging
from gateway import keys_command
from gateway.config import Config, ConfigError, StartupError, check_state_outside_workspaces
from gateway.handover import reexec_without_secrets, take_secrets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codex-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="gRPC and REST together (default)")
    commands.add_parser("grpc", help="the gRPC server alone")
    bridge = commands.add_parser("bridge", help="the REST bridge alone, in front of a gRPC server")
    bridge.add_argument("--upstream", required=True, help="HOST:PORT of the gRPC server")
    keys_command.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "keys":
        return _keys(args)
    # Everything the gateway writes (sessions, secure sessions, triggers, the webhook outbox,
    # locks) is its own: private by default. Agents get the usual 022 back
    # (gateway/agent/process.py).
    os.umask(0o077)
    # Agents started as another user (CODEX_GATEWAY_AGENT_USER) are forked, not vforked, and
    # gRPC's fork handlers then restart its threads in the child between fork and exec, which
    # crashed it (SIGSEGV in event_engine). Nothing forked by the gateway uses gRPC: no handlers.
    # (Read when grpc is first imported, below.)
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"
    command = args.command or "serve"
    try:
        if argv is None:  # the process's own command line: its environment block is ours
            reexec_without_secrets(os.environ)
        environ = {**os.environ, **take_secrets(os.environ)}
        config = Config.from_env(environ)
        if command != "bridge":
            check_state_outside_workspaces(config)
            _check_agent_user_switch(config)
    except ConfigError as exc:
        print(f"codex-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.logging_level, config.log_format, _secrets(config))
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # a line per change otherwise
    from bridge import tracing

    # Traces (OTEL_EXPORTER_OTLP_ENDPOINT): an SDK provider for this process, flushed at exit.
    provider = tracing.install(config.tracing)
    try:
        if command == "bridge":
            return asyncio.run(_bridge(config, args.upstream))
        _warn_about_agent_user_access(config)
        from gateway.server import serve

        try:
            asyncio.run(serve(config, with_bridge=command == "serve"))
        except StartupError as exc:
            print(f"codex-gateway: {exc}", file=sys.stderr)
            return 2
        return 0
    finally:
        tracing.shutdown(provider)


def _keys(args: argparse.Namespace) -> int:
    """`keys add`: a key's workspace roots are checked against the gateway's."""
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        print(f"codex-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    roots = tuple(root.resolve() for root in (*config.workspace_roots, config.default_workspace))
    return keys_command.run(args, roots)


def _secrets(config: Config) -> list[str]:
    """The configured secret values, never written to a log line (bridge/logformat.py also
    hides the password of any URL a message quotes)."""
    webhook, cluster = config.webhook, config.cluster
    values = [config.api_token, config.secure_token, webhook.auth_bearer, webhook.secret]
    values += list(webhook.headers.values())
    if cluster is not None:
        values += [cluster.token, cluster.database_url, urlsplit(cluster.database_url).password]
    if config.tracing is not None and config.tracing.headers is not None:
        values += [config.tracing.headers, *(config.tracing.exporter_headers() or {}).values()]
    return [value for value in values if value]


def _check_agent_user_switch(config: Config) -> None:
    """Start a no-op as the agent user once: a gateway that cannot switch (no CAP_SETUID in its
    user namespace, say) stops at startup rather than failing every run."""
    user = config.agent_user
    if user is None or (user.uid, user.gid) == (os.geteuid(), os.getegid()):
        return
    shell = "/bin/sh"
    if not os.path.exists(shell):  # noqa: PTH110  # nothing to try it with
        return
    try:
        subprocess.run(  # noqa: S603  # a fixed argv
            [shell, "-c", ":"],
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            cwd="/",
            env={},
            stdin=subprocess.DEVNULL,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(
            f"CODEX_GATEWAY_AGENT_USER: cannot start a process as {user.name}: {exc}"
        ) from exc


def _warn_about_agent_user_access(config: Config) -> None:
    """With CODEX_GATEWAY_AGENT_USER, codex reads and writes its home as that user: say so when
    the home belongs to someone else (the gateway, as root, would create it private to root)."""
    user = config.agent_user
    if user is None:
        return
    try:
        owner = config.codex_home.stat().st_uid
    except OSError:
        owner = None
    if owner != user.uid:
        logging.getLogger("gateway").warning(
            "CODEX_GATEWAY_AGENT_USER=%s: the codex home %s is not owned by that user; codex "
            "needs to read and write it (chown -R %s it)",
            user.name,
            config.codex_home,
            user.name,
        )


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
            request_read_timeout_s=guards.request_read_timeout_ms / 1000,
        ),
        check_host=guards.check_host(config.authenticates),
        allowed_hosts=guards.allowed_hosts,
        tracing=config.tracing is not None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
