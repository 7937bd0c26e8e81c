"""The command line: `codex-repl [URL] [--grpc HOST:PORT]`, and the read-eval-print loop.

The loop itself is synchronous: it reads a line (prompt_toolkit at a terminal, plain lines from a
pipe), then runs the command to completion on one asyncio runner that owns the client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Console

from .client import Credentials, GatewayClient
from .completion import ReplCompleter
from .interrupts import Leave
from .lineinput import PASTE_END, LineInput, PipedInput, TerminalInput
from .render import Renderer
from .shell import Outcome, Shell, State

DEFAULT_URL: Final = "http://localhost:4000"
HISTORY_ENV: Final = "CODEX_REPL_HISTORY"
DEFAULT_HISTORY: Final = "~/.codex-repl-history"
STARTUP_LIST_WAIT_S: Final = 3.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the gateway is and how to talk to it, from the arguments and the environment."""

    url: str
    grpc_target: str | None
    credentials: Credentials
    history_path: Path
    full: bool
    timeout_ms: int


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    parser = argparse.ArgumentParser(
        prog="codex-repl",
        description="An interactive client for the Codex Gateway. Type help at the prompt.",
    )
    parser.add_argument(
        "url", nargs="?", default=DEFAULT_URL, help=f"REST base URL (default {DEFAULT_URL})"
    )
    parser.add_argument("--grpc", metavar="HOST:PORT", help="speak gRPC to HOST:PORT instead")
    parser.add_argument(
        "--key",
        "--token",
        dest="key",
        help="API key or token, sent as a Bearer token"
        " (default: $CODEX_GATEWAY_API_KEY, else $CODEX_GATEWAY_API_TOKEN)",
    )
    parser.add_argument(
        "--secure-token", help="token for secure sessions (default: $CODEX_GATEWAY_SECURE_TOKEN)"
    )
    parser.add_argument(
        "--mode", choices=("full", "compact"), default="full", help="output mode (default full)"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", default=300.0, help="run timeout (default 300)"
    )
    args = parser.parse_args(list(argv))
    if args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    history = environ.get(HISTORY_ENV) or DEFAULT_HISTORY
    return Settings(
        url=args.url,
        grpc_target=args.grpc,
        credentials=Credentials(
            api_token=args.key
            or environ.get("CODEX_GATEWAY_API_KEY")
            or environ.get("CODEX_GATEWAY_API_TOKEN")
            or None,
            secure_token=args.secure_token or environ.get("CODEX_GATEWAY_SECURE_TOKEN") or None,
        ),
        history_path=Path(history).expanduser(),
        full=args.mode == "full",
        timeout_ms=int(args.timeout * 1000),
    )


async def connect(settings: Settings) -> GatewayClient:
    """The client for the chosen protocol (made inside the runner's loop, which it belongs to)."""
    if settings.grpc_target:
        from .rpc import GrpcClient

        return GrpcClient(settings.grpc_target, settings.credentials)
    from .rest import RestClient

    return RestClient(settings.url, settings.credentials)


def run_cli(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Run the REPL until the user leaves; the exit status (1 if a scripted command failed)."""
    settings = parse_args(argv, os.environ if environ is None else environ)
    renderer = Renderer(Console(highlight=False), Console(stderr=True, highlight=False))
    with asyncio.Runner() as runner:
        client = runner.run(connect(settings))
        shell = Shell(
            client, renderer, state=State(full=settings.full, timeout_ms=settings.timeout_ms)
        )
        line_input = _line_input(settings, shell)
        try:
            if line_input.interactive:
                protocol = "gRPC" if settings.grpc_target else "REST"
                renderer.info(f"codex-repl · {protocol} {client.target}", "bold")
                renderer.info("Type help for commands, Tab to complete, Ctrl-D to leave.", "dim")
                runner.run(_quietly(shell.refresh_sessions()))
            _loop(runner, shell, line_input)
        finally:
            runner.run(client.aclose())
    return 1 if shell.failures and not line_input.interactive else 0


def _line_input(settings: Settings, shell: Shell) -> LineInput:
    if sys.stdin.isatty() and sys.stdout.isatty():
        return TerminalInput(settings.history_path, ReplCompleter(shell.sessions))
    return PipedInput(sys.stdin)


async def _quietly(work: Awaitable[None]) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STARTUP_LIST_WAIT_S):
            await work


def _loop(runner: asyncio.Runner, shell: Shell, line_input: LineInput) -> None:
    renderer = shell.renderer
    armed = False  # the last thing was a Ctrl-C: another one at the prompt leaves
    while True:
        try:
            line = line_input.read(shell.state.pinned)
            if _is_bare_run(line):
                line = _paste(line_input, renderer)
        except EOFError:
            return
        except KeyboardInterrupt:
            if armed or not line_input.interactive:
                return
            renderer.info("(Ctrl-C again or Ctrl-D to leave)", "dim")
            armed = True
            continue
        armed = False
        if not line:
            continue
        try:
            outcome = runner.run(shell.execute(line))
        except Leave:
            renderer.info("Left without waiting: the gateway finishes stopping the run.", "dim")
            return
        except KeyboardInterrupt:  # Ctrl-C just before or after a command caught it
            outcome = Outcome.INTERRUPTED
        if outcome is Outcome.EXIT:
            return
        armed = outcome is Outcome.INTERRUPTED


def _is_bare_run(line: str) -> bool:
    return line.strip().lower() == "run"


def _paste(line_input: LineInput, renderer: Renderer) -> str:
    """`run` alone: the prompt is the lines up to one that is exactly `'''`."""
    if line_input.interactive:
        renderer.info(f"Paste the prompt; end it with a line {PASTE_END}", "dim")
    lines = []
    try:
        while (line := line_input.read_more()).strip() != PASTE_END:
            lines.append(line)
    except KeyboardInterrupt:
        renderer.info("Paste cancelled.", "dim")
        return ""
    text = "\n".join(lines).strip()
    if not text:
        renderer.info("Empty prompt: nothing to run.", "dim")
        return ""
    line_input.remember(f"run {text}")
    return f"run {text}"
