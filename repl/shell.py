"""The shell: the REPL's state (pinned session, timeout, mode, watched keys, env overrides, output
schema, images) and what each command does with it."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Final

from .attachments import Attachments, Image, load_image, load_schema
from .client import GatewayClient, Json, RunRequest
from .commands import COMMANDS, Invocation, parse, usage
from .completion import KnownSessions
from .errors import ReplError, UsageError
from .interrupts import Interrupts, catching_interrupts
from .live import RunView
from .render import Renderer, created_triggers
from .runs import fork_run, prompt_run, stream_run

DEFAULT_TIMEOUT_MS: Final = 300_000
SHOW_TAIL_LINES: Final = 200
_ENV_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYS_HELP: Final = (
    ("Tab", "complete commands and session ids"),
    ("Up / Ctrl-R", "history (kept across runs)"),
    ("Alt-Enter", "new line in the prompt"),
    ("Ctrl-C", "cancel the running run; twice at the prompt: leave"),
    ("Ctrl-D", "leave"),
)


class Outcome(enum.Enum):
    """How a command ended, for the loop around it."""

    DONE = "done"
    INTERRUPTED = "interrupted"  # by Ctrl-C: another one at the prompt leaves
    EXIT = "exit"


@dataclass
class State:
    """What the REPL remembers between commands."""

    pinned: str | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    full: bool = True
    watch: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    schema: Json | None = None
    schema_file: str = ""
    images: list[Image] = field(default_factory=list)
    """For the next run only: cleared once a run was sent with them, whatever its outcome."""

    def attachments(self) -> Attachments:
        return Attachments(self.schema, tuple(self.images))


class Shell:
    """Runs one command line at a time against the gateway."""

    def __init__(
        self,
        client: GatewayClient,
        renderer: Renderer,
        *,
        state: State | None = None,
        sessions: KnownSessions | None = None,
    ) -> None:
        self.client = client
        self.renderer = renderer
        self.state = state or State()
        self.sessions = sessions or KnownSessions()
        self.failures = 0

    async def execute(self, line: str) -> Outcome:
        """Run one command line; failures are printed as one line, never raised."""
        try:
            invocation = parse(line)
            if invocation is None:
                return Outcome.DONE
            with catching_interrupts() as interrupts:
                return await self._dispatch(invocation, interrupts)
        except ReplError as exc:
            self.failures += 1
            self.renderer.error(str(exc))
        except Exception as exc:  # a bug of ours: still one line, not a traceback
            self.failures += 1
            self.renderer.error(f"unexpected error: {type(exc).__name__}: {exc}")
        return Outcome.DONE

    async def refresh_sessions(self) -> None:
        """Learn the session ids for completion (quietly: the prompt is more important)."""
        with contextlib.suppress(ReplError):
            self.sessions.replace(await self.client.list_sessions())

    async def _dispatch(self, invocation: Invocation, interrupts: Interrupts) -> Outcome:
        name = invocation.command.name
        if name == "run":
            return await self._run(invocation, interrupts)
        if name == "prompt":
            return await self._prompt(invocation, interrupts)
        if name == "fork":
            return await self._fork(invocation, interrupts)
        if name in ("list", "show", "search", "changes"):
            handler = {
                "list": self._list,
                "show": self._show,
                "search": self._search,
                "changes": self._changes,
            }[name]
            return await self._interruptible(handler(invocation), interrupts)
        if name == "exit":
            return Outcome.EXIT
        {
            "use": self._use,
            "timeout": self._timeout,
            "mode": self._mode,
            "watch": self._watch,
            "setenv": self._setenv,
            "schema": self._schema,
            "image": self._image,
            "help": self._help,
            "clear": self._clear,
        }[name](invocation)
        return Outcome.DONE

    async def _interruptible(self, work: Awaitable[None], interrupts: Interrupts) -> Outcome:
        task = asyncio.ensure_future(work)
        if not await interrupts.before(task):
            task.result()
            return Outcome.DONE
        task.cancel()
        self.renderer.info("Interrupted.", "yellow")
        return Outcome.INTERRUPTED

    # -- runs

    async def _run(self, invocation: Invocation, interrupts: Interrupts) -> Outcome:
        if not invocation.rest:
            raise usage(invocation.command)
        state = self.state
        request = RunRequest(
            invocation.rest, state.timeout_ms, state.pinned, dict(state.env), self._attach()
        )
        with RunView(self.renderer.out, full=state.full) as view:
            result = await stream_run(self.client, request, view, interrupts)
        if result is None:
            self._cancelled(view)
            return Outcome.INTERRUPTED
        self.renderer.result(result, full=state.full, streamed=True, watch=state.watch)
        self._pin(result)
        return Outcome.DONE

    async def _fork(self, invocation: Invocation, interrupts: Interrupts) -> Outcome:
        parts = invocation.split(2)
        if not parts:
            raise usage(invocation.command)
        parent, text = parts[0], (parts[1] if len(parts) == 2 else None)
        state = self.state
        label = "forking" if text is None else "forking and running"
        with RunView(self.renderer.out, full=state.full, label=label) as view:
            result = await fork_run(
                self.client,
                parent,
                text,
                timeout_ms=state.timeout_ms,
                env=dict(state.env),
                attachments=self._attach(),
                interrupts=interrupts,
            )
        if result is None:
            self.renderer.info(
                f"Stopped waiting after {view.elapsed_s:.1f}s: the gateway finishes the fork"
                " (list shows its session).",
                "yellow",
            )
            return Outcome.INTERRUPTED
        self.renderer.result(result, full=state.full, streamed=False, watch=state.watch)
        self._pin(result, forked_from=parent)
        return Outcome.DONE

    def _attach(self) -> Attachments:
        """The attachments for the run about to be sent; its images go with it alone."""
        attachments = self.state.attachments()
        self.state.images = []
        return attachments

    def _pin(self, result: Json, *, forked_from: str | None = None) -> None:
        """Pin the result's session (a new one: a run that started one, or a fork)."""
        state = self.state
        session_id = result.get("gateway_session_id") or result.get("session_id")
        if isinstance(session_id, str) and session_id:
            self.sessions.add(session_id, str(result.get("status") or ""))
            if session_id != state.pinned:
                state.pinned = session_id
                origin = f" (a fork of {forked_from})" if forked_from else ""
                self.renderer.info(f"→ pinned session {session_id}{origin}", "green")

    async def _prompt(self, invocation: Invocation, interrupts: Interrupts) -> Outcome:
        parts = invocation.split(2)
        if len(parts) < 2:
            raise usage(invocation.command)
        session_id, text = parts
        state = self.state
        with RunView(self.renderer.out, full=state.full, label="waiting for the run") as view:
            result = await prompt_run(
                self.client,
                session_id,
                text,
                timeout_ms=state.timeout_ms,
                env=dict(state.env),
                attachments=self._attach(),
                view=view,
                interrupts=interrupts,
            )
        if result is None:
            self._cancelled(view)
            return Outcome.INTERRUPTED
        self.sessions.add(session_id, str(result.get("status") or ""))
        self.renderer.result(result, full=state.full, streamed=False, watch=state.watch)
        return Outcome.DONE

    def _cancelled(self, view: RunView) -> None:
        where = f" (session {view.session_id})" if view.session_id else ""
        self.renderer.info(f"Run cancelled after {view.elapsed_s:.1f}s{where}.", "yellow")

    # -- reading sessions

    async def _list(self, invocation: Invocation) -> None:
        sessions = await self.client.list_sessions()
        self.sessions.replace(sessions)
        self.renderer.sessions(sessions)

    async def _show(self, invocation: Invocation) -> None:
        args = invocation.args
        if not 1 <= len(args) <= 2 or (len(args) == 2 and args[1] not in ("events", "triggers")):
            raise usage(invocation.command)
        view = args[1] if len(args) == 2 else None
        detail: Json = await self.client.get_session(
            args[0], tail=SHOW_TAIL_LINES, include_events=view is not None
        )
        self.renderer.session(detail, full=self.state.full, events=view == "events")
        if view == "triggers":
            events = detail.get("events")
            self.renderer.triggers(created_triggers(events if isinstance(events, list) else []))

    async def _search(self, invocation: Invocation) -> None:
        args = invocation.args
        words = [word for word in args[1:] if word != "--f"]
        if not args or not words:
            raise usage(invocation.command)
        fuzzy = "--f" in args[1:]
        answer = await self.client.search(args[0], " ".join(words), fuzzy=fuzzy)
        self.renderer.search(answer, full=self.state.full)

    async def _changes(self, invocation: Invocation) -> None:
        args = invocation.args
        rest = [arg for arg in args[1:] if arg.lower() != "diff"]
        if not args or len(rest) > 1:
            raise usage(invocation.command)
        diff = len(rest) < len(args) - 1
        answer = await self.client.changes(args[0], run_id=rest[0] if rest else None, diff=diff)
        self.renderer.changes(answer, full=self.state.full)

    # -- settings

    def _use(self, invocation: Invocation) -> None:
        args = invocation.args
        if len(args) > 1:
            raise usage(invocation.command)
        if not args:
            self.renderer.info(f"pinned session: {self.state.pinned or 'none'}")
        elif args[0] == "clear":
            self.state.pinned = None
            self.renderer.info("No session pinned: the next run starts a new one.")
        else:
            self.state.pinned = args[0]
            self.sessions.add(args[0])
            self.renderer.info(f"→ pinned session {args[0]}", "green")

    def _timeout(self, invocation: Invocation) -> None:
        args = invocation.args
        if not args:
            self.renderer.info(f"timeout: {self.state.timeout_ms / 1000:g} s")
            return
        try:
            seconds = float(args[0]) if len(args) == 1 else 0.0
        except ValueError:
            seconds = 0.0
        if not 0 < seconds < 1e7:
            raise UsageError("usage: timeout <seconds> (a positive number)")
        self.state.timeout_ms = int(seconds * 1000)
        self.renderer.info(f"timeout: {seconds:g} s")

    def _mode(self, invocation: Invocation) -> None:
        args = invocation.args
        if not args:
            self.renderer.info(f"mode: {'full' if self.state.full else 'compact'}")
            return
        if len(args) != 1 or args[0] not in ("full", "compact"):
            raise usage(invocation.command)
        self.state.full = args[0] == "full"
        self.renderer.info(f"mode: {args[0]}")

    def _watch(self, invocation: Invocation) -> None:
        args = invocation.args
        if args == ["clear"]:
            self.state.watch = []
        elif args:
            self.state.watch = list(dict.fromkeys(args))
        self.renderer.info(f"watching: {' '.join(self.state.watch) or 'nothing'}")

    def _setenv(self, invocation: Invocation) -> None:
        parts = invocation.split(2)
        env = self.state.env
        if parts == ["clear"]:
            env.clear()
        elif parts:
            if not _ENV_KEY.fullmatch(parts[0]):
                raise UsageError(f"not a variable name: {parts[0]!r}")
            if len(parts) == 1:
                env.pop(parts[0], None)
            else:
                env[parts[0]] = parts[1]
        shown = " ".join(f"{key}={value}" for key, value in env.items())
        self.renderer.info(f"env overrides: {shown or 'none'}")

    def _schema(self, invocation: Invocation) -> None:
        state = self.state
        name = invocation.rest
        if name == "clear":
            state.schema, state.schema_file = None, ""
        elif name:
            state.schema, state.schema_file = load_schema(name), name
        if state.schema is None:
            self.renderer.info("output schema: none")
        else:
            self.renderer.info(f"output schema: {state.schema_file} (sent with every run)")

    def _image(self, invocation: Invocation) -> None:
        state = self.state
        name = invocation.rest
        if name == "clear":
            state.images = []
        elif name:
            state.images.append(load_image(name))
        shown = ", ".join(image.describe() for image in state.images)
        self.renderer.info(f"images for the next run: {shown or 'none'}")

    def _help(self, invocation: Invocation) -> None:
        self.renderer.help(((c.usage, c.summary) for c in COMMANDS), _KEYS_HELP)

    def _clear(self, invocation: Invocation) -> None:
        self.renderer.out.clear()
