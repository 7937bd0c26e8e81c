"""The gateway client: the few calls the REPL makes, with a REST and a gRPC implementation.

Both speak the documented JSON shapes (dicts, proto field names), so everything after the client
renders the same whatever the protocol. Failures are `errors.GatewayUnreachable` and
`errors.GatewayError`, never a transport's own exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .attachments import Attachments

Json = dict[str, Any]

LIST_TIMEOUT_S = 10.0
SHOW_TIMEOUT_S = 15.0
SEARCH_TIMEOUT_S = 20.0
CHANGES_TIMEOUT_S = 30.0
CANCEL_TIMEOUT_S = 15.0
RUN_GRACE_S = 30.0
"""How much longer than the run's own timeout a client waits for its answer: the gateway stops a
run at its timeout and says so (408), which is a better message than a client-side timeout."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """The tokens sent with every call."""

    api_token: str | None = None
    secure_token: str | None = None


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A prompt to run: `run` in the REPL, `POST /completion` as the reference sends it."""

    prompt: str
    timeout_ms: int
    session_id: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    attachments: Attachments = field(default_factory=Attachments)

    def body(self) -> Json:
        """The JSON body of `POST /completion` (and the fields of `RunInput`)."""
        body: Json = {
            "messages": [{"role": "user", "content": self.prompt}],
            "timeout_ms": self.timeout_ms,
            "persistent": True,
        }
        if self.session_id:
            body["session_id"] = self.session_id
        if self.env:
            body["env"] = dict(self.env)
        return body | self.attachments.fields()

    @property
    def wait_s(self) -> float:
        return run_wait_s(self.timeout_ms)


@dataclass(frozen=True, slots=True)
class RunStarted:
    """The first message of a streamed run: the session to cancel it by."""

    session_id: str
    run_id: str
    model: str | None


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One codex event, as codex wrote it."""

    event: Json


@dataclass(frozen=True, slots=True)
class RunCompleted:
    """The run's result, the body `POST /completion` answers."""

    result: Json


StreamItem = RunStarted | RunEvent | RunCompleted


class GatewayClient(Protocol):
    """The calls the REPL makes."""

    @property
    def target(self) -> str:
        """Where the gateway is, as the user named it."""
        ...

    def stream_run(self, request: RunRequest) -> AsyncIterator[StreamItem]:
        """Start a run and yield its messages as they happen: started, events, completed."""
        ...

    async def prompt(
        self,
        session_id: str,
        text: str,
        *,
        timeout_ms: int,
        env: Mapping[str, str],
        attachments: Attachments,
    ) -> Json:
        """Continue a session and wait for the result."""
        ...

    async def fork(
        self,
        session_id: str,
        text: str | None,
        *,
        timeout_ms: int,
        env: Mapping[str, str],
        attachments: Attachments,
    ) -> Json:
        """Start a new session on a fork of this one's thread (a run of `text` when given) and
        wait for the result, whose session is the new one."""
        ...

    async def changes(self, session_id: str, *, run_id: str | None, diff: bool) -> Json:
        """What a run of the session changed (default: its last run), with the diff if asked."""
        ...

    async def list_sessions(self) -> list[Json]: ...

    async def get_session(self, session_id: str, *, tail: int, include_events: bool) -> Json: ...

    async def search(self, session_id: str, phrase: str, *, fuzzy: bool) -> Json: ...

    async def cancel(self, session_id: str) -> Json: ...

    async def aclose(self) -> None: ...


def run_wait_s(timeout_ms: int) -> float:
    """How long a client waits for a run of `timeout_ms` to answer."""
    return timeout_ms / 1000 + RUN_GRACE_S


def prompt_body(
    text: str | None, timeout_ms: int, env: Mapping[str, str], attachments: Attachments
) -> Json:
    """The body of `POST /sessions/:id/prompt` and `/fork` (the fields of their `RunInput`);
    a fork without `text` runs no turn."""
    body: Json = {"timeout_ms": timeout_ms}
    if text is not None:
        body["prompt"] = text
    if env:
        body["env"] = dict(env)
    return body | attachments.fields()


def stream_item(message: Mapping[str, Any]) -> StreamItem:
    """One streamed message, `{"started"|"event"|"completed": ...}`, as a stream item."""
    if isinstance(started := message.get("started"), dict):
        model = started.get("model")
        return RunStarted(
            str(started.get("session_id", "")),
            str(started.get("run_id", "")),
            model if isinstance(model, str) and model else None,
        )
    if isinstance(event := message.get("event"), dict):
        return RunEvent(event)
    if isinstance(completed := message.get("completed"), dict):
        return RunCompleted(completed)
    raise ValueError(f"unexpected stream message with keys {sorted(message)}")
