"""Commands: the table of what the REPL understands, and how a line becomes an invocation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .errors import UsageError

SESSION: Final = "<session>"
"""An argument slot that completes to a known session id."""

WATCH_KEYS: Final = (
    "usage",
    "model",
    "status",
    "run_id",
    "session_id",
    "codex_session_id",
    "duration_ms",
    "attempts",
    "tool_calls",
    "session_url",
    "logs_path",
    "structured",
    "changes",
)


@dataclass(frozen=True, slots=True)
class Command:
    """One command: how it is written, what it does, and what its arguments complete to.

    `slots[i]` is the completion of the i-th argument: `SESSION` or a tuple of fixed words
    (the last slot repeats for every further argument when `repeat` is set).
    """

    name: str
    usage: str
    summary: str
    slots: tuple[str | tuple[str, ...], ...] = ()
    repeat: bool = False
    aliases: tuple[str, ...] = ()


COMMANDS: Final[tuple[Command, ...]] = (
    Command(
        "run",
        "run <prompt>",
        "run a prompt, live; pins its session (no prompt: paste lines, end with ''')",
    ),
    Command("list", "list", "list sessions"),
    Command(
        "show",
        "show <id> [events|triggers]",
        "a session's detail, with its events or the triggers it created",
        (SESSION, ("events", "triggers")),
    ),
    Command(
        "search",
        "search <id> <phrase> [--f]",
        "search a session's log (--f: fuzzy)",
        (SESSION,),
    ),
    Command("prompt", "prompt <id> <text>", "continue a session", (SESSION,)),
    Command(
        "fork",
        "fork <id> [prompt]",
        "a new session on a fork of this one's thread (the prompt continues it); pins it"
        " (Ctrl-C stops waiting: the fork runs on)",
        (SESSION,),
    ),
    Command(
        "changes",
        "changes <id> [run_id] [diff]",
        "the files a run changed (default: the last run); diff: the unified diff too",
        (SESSION, ("diff",)),
    ),
    Command("use", "use <id>|clear", "pin a session for the next runs (clear: unpin)", (SESSION,)),
    Command("timeout", "timeout <seconds>", "set the run timeout"),
    Command("mode", "mode <full|compact>", "full JSON or compact output", (("full", "compact"),)),
    Command(
        "watch",
        "watch <keys...>|clear",
        "result keys to print after each run (clear: none)",
        (("clear", *WATCH_KEYS),),
        repeat=True,
    ),
    Command(
        "schema",
        "schema <file.json>|clear",
        "the JSON Schema the next runs' answers must match (kept until clear)",
        (("clear",),),
    ),
    Command(
        "image",
        "image <file>|ws:<path>|clear",
        "an image for the next run only (repeat for more; ws: a file in the run's workspace)",
        (("clear",),),
    ),
    Command(
        "setenv",
        "setenv <KEY> <VALUE>|<KEY>|clear",
        "env override for the next runs (KEY alone: unset it; clear: all)",
        (("clear",),),
    ),
    Command("help", "help", "show this help"),
    Command("clear", "clear", "clear the screen"),
    Command("exit", "exit", "leave (also: quit, Ctrl-D)", aliases=("quit",)),
)

_BY_NAME: Final = {
    name: command for command in COMMANDS for name in (command.name, *command.aliases)
}


@dataclass(frozen=True, slots=True)
class Invocation:
    """A parsed line: the command and the text after its name."""

    command: Command
    rest: str

    @property
    def args(self) -> list[str]:
        return self.rest.split()

    def split(self, count: int) -> list[str]:
        """The first `count - 1` words and the rest of the text, e.g. `prompt <id> <text...>`."""
        return self.rest.split(None, count - 1)


def command_names() -> list[str]:
    return sorted(_BY_NAME)


def find(name: str) -> Command | None:
    return _BY_NAME.get(name.lower())


def parse(line: str) -> Invocation | None:
    """The invocation a line asks for; None for a blank line."""
    stripped = line.strip()
    if not stripped:
        return None
    name, *rest = stripped.split(None, 1)  # a pasted `run\ntext...` splits at the newline
    command = find(name)
    if command is None:
        raise UsageError(f"unknown command {name!r} (type help for the list)")
    return Invocation(command, rest[0].strip() if rest else "")


def usage(command: Command) -> UsageError:
    return UsageError(f"usage: {command.usage}")


def arguments_for(command: Command, index: int) -> Sequence[str] | str:
    """What the `index`-th argument of `command` completes to (SESSION or fixed words)."""
    if index < len(command.slots):
        return command.slots[index]
    if command.repeat and command.slots:
        return command.slots[-1]
    return ()
