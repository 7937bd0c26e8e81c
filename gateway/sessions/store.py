"""The session store interface: where sessions and their run records live, and who runs one.

Every caller (runner, servicer, scheduler, views) knows a store only by this interface. The files
implementation is gateway/sessions/files.py's FileSessionStore (the reference's layout); a
PostgreSQL one (cluster mode, ../shared/design/cluster.md) goes behind the same methods. That is why
exclusivity is the store's: `exclusive` may be an in-process set of busy sessions, or an
`UPDATE sessions SET active_run_id=$run WHERE active_run_id IS NULL` that claims the session
for the whole cluster, and callers never hold a lock of their own.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from gateway.sessions.model import RunRecord, Session


class SessionStore(abc.ABC):
    """Sessions by id and by codex thread, their state, their run records, and their runs."""

    @abc.abstractmethod
    def load(self) -> None:
        """Open the store, index every session, and reconcile the runs that a gateway which
        stopped without finishing them (a crash) left `running`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what `load` took."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Session]:
        """Every indexed session, unreadable ones included (a snapshot: safe to save while
        iterating)."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def resolve(self, session_id: str) -> Session:
        """A readable session by gateway id or codex thread id, or SessionNotFound."""

    @abc.abstractmethod
    async def listing(
        self,
        *,
        limit: int,
        since: datetime | None,
        include_secure: bool,
        tenant: str | None = None,
    ) -> list[Session]:
        """The newest `limit` sessions by `updated_at` (modified after `since`), secure ones
        only with `include_secure`, only `tenant`'s when it is given (a session without one is
        the default tenant's); unreadable sessions are listed too. (Async: a database store
        answers it with a query, every replica's sessions included.)"""

    @abc.abstractmethod
    def create(
        self,
        *,
        secure: bool,
        metadata: dict[str, Any] | None = None,
        workspace: str | None = None,
        persist: bool = True,
        tenant: str | None = None,
    ) -> Session:
        """A new idle session, owned by `tenant` (None: recorded as none, the default's).
        With `persist=False` it is indexed but only the caller's first `save` makes it durable
        (the runner's, once its agent has started)."""

    @abc.abstractmethod
    def save(self, session: Session) -> None:
        """Record the session's state (stamping `updated_at`), or StorageFailed."""

    @abc.abstractmethod
    async def settle(self, session: Session) -> None:
        """Wait until the session's last save is durable where every reader reads it (the files
        store: at once; a database store: once its write-behind wrote it, within a bound: when
        the database is down it returns and the write lands later). A run's caller awaits it
        before answering, so that a listing right after the answer shows the run."""

    @abc.abstractmethod
    async def run_history(
        self, session: Session, *, max_bytes: int | None = None
    ) -> list[RunRecord]:
        """The session's run records, oldest first (archived ones included): every one, or with
        `max_bytes` the newest whose JSON text fits in it (gateway/sessions/history.py), read at
        the cost of those, not of the whole history."""

    # Codex threads: one session owns a thread (the one that had it first); a secure session's
    # threads may only be resumed by a secure run.

    @abc.abstractmethod
    def thread_owner(self, thread_id: str) -> Session | None:
        """The session a codex thread id (of any hex case) leads to, if any."""

    @abc.abstractmethod
    def thread_is_secure(self, thread_id: str) -> bool:
        """Whether a secure session holds this thread."""

    @abc.abstractmethod
    def remember_thread(self, session: Session) -> None:
        """The session's `codex_session_id` was just learned: lookups by it find the session
        at once (unless another session owns that thread), before the next save."""

    # One run at a time per session.

    @abc.abstractmethod
    def exclusive(self, session: Session, run_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the session for run `run_id`, released on leaving; SessionBusy when it is held.
        (The run's id is the claim: a database store writes it as the session's active run.)"""

    @abc.abstractmethod
    def busy(self, session: Session) -> bool:
        """Whether a run holds the session now."""

    @abc.abstractmethod
    def active_run(self, session: Session) -> str | None:
        """The id of the run that holds the session, if one does."""
