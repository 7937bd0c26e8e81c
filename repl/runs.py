"""Runs in flight: a streamed `run` or a `prompt`, and cancelling one with Ctrl-C.

The first Ctrl-C asks the gateway to cancel the run (by its session, which a streamed run names
in its first message) and waits for the run to end; a second one leaves without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Final

from .attachments import Attachments
from .client import GatewayClient, Json, RunCompleted, RunEvent, RunRequest, RunStarted
from .errors import GatewayError
from .interrupts import Interrupts, Leave
from .live import RunView

STARTED_WAIT_S: Final = 10.0
"""How long a cancel waits for the stream to name the run's session."""
STOPPED_WAIT_S: Final = 30.0
"""How long a cancel waits for the run to end."""
CANCEL_RETRY_S: Final = 0.25
"""How often a cancel is asked again while the gateway has no running run to cancel yet."""


async def stream_run(
    client: GatewayClient, request: RunRequest, view: RunView, interrupts: Interrupts
) -> Json | None:
    """Run `request`, showing its events as they come; its result, or None when cancelled."""
    session: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def consume() -> Json:
        async for item in client.stream_run(request):
            if isinstance(item, RunStarted):
                if not session.done():
                    session.set_result(item.session_id)
                    view.started(item.session_id)
            elif isinstance(item, RunEvent):
                view.event(item.event)
            elif isinstance(item, RunCompleted):
                return item.result
        raise GatewayError("stream ended", "the run's stream ended without a result")

    try:
        return await _cancellable(consume(), session, client, view, interrupts)
    finally:
        session.cancel()


async def prompt_run(
    client: GatewayClient,
    session_id: str,
    text: str,
    *,
    timeout_ms: int,
    env: Mapping[str, str],
    attachments: Attachments,
    view: RunView,
    interrupts: Interrupts,
) -> Json | None:
    """Continue a session; its result, or None when cancelled."""
    session: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    session.set_result(session_id)
    view.started(session_id)
    call = client.prompt(session_id, text, timeout_ms=timeout_ms, env=env, attachments=attachments)
    return await _cancellable(call, session, client, view, interrupts)


async def fork_run(
    client: GatewayClient,
    session_id: str,
    text: str | None,
    *,
    timeout_ms: int,
    env: Mapping[str, str],
    attachments: Attachments,
    interrupts: Interrupts,
) -> Json | None:
    """Fork a session (and run `text` on the fork); its result, or None when Ctrl-C stopped the
    wait. The fork's session is named only by its result, so there is nothing to cancel by: the
    gateway finishes the run and `list` shows it."""
    call = asyncio.ensure_future(
        client.fork(session_id, text, timeout_ms=timeout_ms, env=env, attachments=attachments)
    )
    try:
        if not await interrupts.before(call):
            return call.result()
        return None
    finally:
        call.cancel()


async def _cancellable(
    work: Awaitable[Json],
    session: asyncio.Future[str],
    client: GatewayClient,
    view: RunView,
    interrupts: Interrupts,
) -> Json | None:
    running = asyncio.ensure_future(work)
    cancelling: asyncio.Future[Json | None] | None = None
    try:
        if not await interrupts.before(running):
            return _finished(running.result())
        view.cancelling()
        cancelling = asyncio.ensure_future(_cancel(running, session, client))
        if not await interrupts.before(cancelling):
            return cancelling.result()
        raise Leave
    finally:
        for task in (running, cancelling):
            if task is not None and not task.done():
                task.cancel()


async def _cancel(
    running: asyncio.Future[Json], session: asyncio.Future[str], client: GatewayClient
) -> Json | None:
    try:
        session_id = await asyncio.wait_for(asyncio.shield(session), STARTED_WAIT_S)
    except TimeoutError:
        raise GatewayError("cancel", "the run never said which session it is in") from None
    try:
        async with asyncio.timeout(STOPPED_WAIT_S):
            # A run the gateway has not registered yet cannot be cancelled: ask until it is, or
            # until it has finished anyway.
            while not (await client.cancel(session_id)).get("cancelled"):
                await asyncio.wait((running,), timeout=CANCEL_RETRY_S)
                if running.done():
                    break
            return _finished(await asyncio.shield(running))
    except GatewayError as exc:
        if exc.code == "CANCELLED":
            return None
        raise
    except TimeoutError:
        raise GatewayError(
            "cancel", f"the run did not stop within {STOPPED_WAIT_S:.0f} s"
        ) from None


def _finished(result: Json) -> Json | None:
    return None if result.get("status") == "cancelled" else result
