"""TriggerStore: where triggers are defined and where the trigger API edits them.

The scheduler reads its sources through it and the trigger API lists and edits through it.
Embedded, `TriggerFiles` is the store: the sources are the scheduled trigger files and an API
edit is a locked, atomic rewrite of one of them. In cluster mode the database store
(`gateway.cluster.triggers`) keeps the API's triggers in PostgreSQL, shared by every replica, and
passes the trigger files through (each replica schedules its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from gateway.automation.triggers import TriggerDocument

Changed = Callable[[Path | None], Awaitable[None]]
"""Reschedule one source (or all, with None): the scheduler's `reload`."""


class TriggerStore(Protocol):
    def resolve(self, raw: str | None) -> Path:
        """The trigger file a request names (default: the configured one), confined to the
        trigger roots: the trigger API's scope."""
        ...

    def scheduled_files(self) -> list[Path]:
        """The trigger files on disk that are scheduled (and watched). Blocking."""
        ...

    def sources(self) -> list[Path]:
        """Everything the scheduler arms: the scheduled files, and any other source of
        triggers (each a key of its own). Blocking."""
        ...

    def read(self, path: Path) -> TriggerDocument:
        """One source as the scheduler arms it. Blocking (a worker thread); TriggerFileError
        when it cannot be used."""
        ...

    async def read_scope(self, path: Path) -> TriggerDocument:
        """What the trigger API lists for a trigger file (`resolve`'s result)."""
        ...

    def edit(
        self, path: Path, *, client: bool = True
    ) -> AbstractAsyncContextManager[TriggerDocument]:
        """Read-modify-write: the document is written back when the block exits cleanly. A
        `client` edit is the trigger API's, of the scope `path`; the others are the scheduler's
        own edits of a scheduled file (ids written back, the embedded fire bookkeeping)."""
        ...

    async def follow(self, stop: asyncio.Event, changed: Changed) -> None:
        """Until `stop` is set: call `changed` when a source changes other
        than on disk (the scheduler watches the files itself)."""
        ...
