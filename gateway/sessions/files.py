"""The files session store: the reference's on-disk layout, atomic meta writes, an in-memory index.

    <root>/session-<id>/meta.json     rewritten atomically (temp file + rename)
                        runs.jsonl    older run records, one per line, appended
                        stdout.log    codex stdout with RUN START/END markers
                        stderr.log    codex stderr
                        events.jsonl  one parsed event per line, each with its run_id

New sessions go to the primary root (secure ones to the secure root). Every configured root is
read at startup; a session whose meta cannot be read is kept in the index as unreadable and never
touched on disk.

meta.json keeps the reference's `runs` array, but only the newest RUNS_IN_META records: older
ones move to runs.jsonl when meta.json is saved (`runs_archived` counts them), so a run's
writes cost the same on a session's first run and on its thousandth. A session written with
every record in meta.json (the reference's, or an older gateway's) moves them on its next save.

A codex thread id (always a UUID; anything else in a meta.json is ignored) leads to one session:
the one that had it first (at startup, the one created first). A later session that resumes the
same thread never takes over lookups by that id. The store also knows which threads a secure
session holds, so that only a secure run can resume them.

meta.json and run records are read and written by gateway/sessions/codec.py (unknown keys kept);
one run at a time per session is a set of busy session ids, the store's business (store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import json
import logging
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway import regular_file
from gateway.agent.codex import runs_an_agent
from gateway.agent.events import canonical_thread_id, is_thread_id
from gateway.atomic import write_atomic
from gateway.clock import now_iso
from gateway.config import StartupError
from gateway.errors import SessionBusy, SessionNotFound, StorageFailed
from gateway.procfs import cmdline, descendants
from gateway.sessions import history
from gateway.sessions.codec import decode_run, decode_session, dumps, dumps_lines, encode_session
from gateway.sessions.model import RunRecord, RunStatus, SessionStatus
from gateway.sessions.model import Session as Session  # logs.py and others import it from here
from gateway.sessions.store import SessionStore

log = logging.getLogger(__name__)


class StoreInUse(StartupError):
    """Another gateway process holds one of the session roots."""


META = "meta.json"
STAGING_SUFFIX = ".creating"
LOCK_FILE = ".codex-gateway.lock"
STDOUT = "stdout.log"
STDERR = "stderr.log"
EVENTS = "events.jsonl"
RUNS = "runs.jsonl"
RUNS_IN_META = 20
"""Run records meta.json keeps, the newest; the older ones are in runs.jsonl."""
PREVIEW_CHARS = 400
MAX_ID_CHARS = 255  # a directory name's limit: no session id is longer


class FileSessionStore(SessionStore):
    """Sessions in directories under the configured roots, indexed in memory."""

    def __init__(self, roots: Sequence[Path], secure_root: Path) -> None:
        self._roots = list(roots)
        self._secure_root = secure_root
        self._sessions: dict[str, Session] = {}
        self._by_thread: dict[str, str] = {}
        self._secure_threads: set[str] = set()
        self._locks: list[int] = []
        self._busy: dict[str, str] = {}  # session id -> the run that holds it
        self.meta_writes = 0
        self.interrupted_found = 0  # runs a crash left `running`, recorded interrupted
        """meta.json files written by this store (its tests count a run's writes with it)."""

    @property
    def roots(self) -> list[Path]:
        return [*self._roots, self._secure_root]

    def load(self) -> None:
        """Create the roots, take them (StoreInUse if another gateway has one), index every
        session found in them (first directory wins), and reconcile runs that a previous
        gateway process left `running`."""
        for root in self.roots:
            try:
                root.mkdir(mode=0o700, parents=True, exist_ok=True)  # private state
            except OSError as exc:
                log.warning("session root %s cannot be created: %s", root, exc.strerror)
                continue
            with contextlib.suppress(OSError):  # one made before state was private, too
                root.chmod(0o700)
            self._take(root)
            # One scan of names and types, no stat per entry (10,000 sessions, warm page cache:
            # 0.49-0.52 s to load, against 0.58-0.61 s with glob, is_dir and sorted Paths).
            with os.scandir(root) as entries:
                found = [(entry.name, entry.is_dir()) for entry in entries]
            for name, _ in found:
                if name.startswith(".session-") and name.endswith(STAGING_SUFFIX):
                    # A crash between creating and renaming: never visible, never a session.
                    shutil.rmtree(root / name, ignore_errors=True)
            for name in sorted(name for name, is_dir in found if is_dir):
                session_id = name.removeprefix("session-")
                if not name.startswith("session-") or session_id in self._sessions:
                    continue
                session = self._read(root / name, secure=root == self._secure_root)
                self._index(session)
                if session.status == SessionStatus.RUNNING:
                    self.reconcile(session)

    def _take(self, root: Path) -> None:
        """An exclusive lock on the root for as long as this store is open: a second gateway on
        the same sessions would take the first one's running runs for a crash's leftovers, and
        stop their agents. (flock: released by the kernel when the process dies.)"""
        path = root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning("session root %s cannot be locked: %s", root, exc.strerror)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            self.close()
            raise StoreInUse(
                f"CODEX_GATEWAY_SESSION_DIRS: {root} is in use by another gateway (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._locks.append(fd)

    def close(self) -> None:
        """Release the roots (the process's exit does too)."""
        for fd in self._locks:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._locks.clear()

    def reconcile(self, session: Session) -> None:
        """A run the gateway lost to a crash: stop what it left running, record `interrupted`."""
        self.interrupted_found += 1
        for pid in session.interrupt("the gateway stopped during this run", now_iso()):
            stop_orphaned_agent(pid)
        try:
            self.save(session)
        except StorageFailed:
            log.exception("session %s: could not record the interrupted run", session.id)

    def _read(self, directory: Path, *, secure: bool) -> Session:
        session_id = directory.name.removeprefix("session-")
        try:
            meta = json.loads((directory / META).read_bytes())  # UTF-8, or a ValueError
            if not isinstance(meta, dict) or not isinstance(meta.get("session_id"), str):
                raise ValueError("meta.json has no session_id")
        except (OSError, ValueError) as exc:
            log.warning("session %s is unreadable and left alone: %s", directory, exc)
            return Session(session_id, directory, secure, error=f"unreadable: {exc}")
        thread = meta.get("codex_session_id")
        if thread is not None and not is_thread_id(thread):
            log.warning("session %s: its codex_session_id is not a thread id, ignored", directory)
        return decode_session(session_id, directory, meta, secure=secure)

    def _index(self, session: Session) -> None:
        self._sessions[session.id] = session
        thread = session.codex_session_id
        if thread is None:
            return
        self._claim_thread(session)
        owner = self._sessions[self._by_thread[thread]]
        # Two sessions on disk with one thread: it belongs to the one created first.
        mine, theirs = session.created_at, owner.created_at
        if mine and theirs and mine < theirs:
            self._by_thread[thread] = session.id

    def _claim_thread(self, session: Session) -> None:
        """The session's thread leads to it, unless another live session had it first."""
        thread = session.codex_session_id
        if thread is None:
            return
        if session.secure:
            self._secure_threads.add(thread)
        owner = self._sessions.get(self._by_thread.get(thread, ""))
        if owner is None or owner is session or owner.error is not None:
            self._by_thread[thread] = session.id

    def thread_owner(self, thread_id: str) -> Session | None:
        """The session a codex thread id (of any hex case) leads to, if any."""
        thread = canonical_thread_id(thread_id)
        if thread is None:
            return None
        return self._sessions.get(self._by_thread.get(thread, ""))

    def thread_is_secure(self, thread_id: str) -> bool:
        """Whether a secure session holds this thread (it may only be resumed securely)."""
        return canonical_thread_id(thread_id) in self._secure_threads

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    async def listing(
        self,
        *,
        limit: int,
        since: datetime | None,
        include_secure: bool,
        tenant: str | None = None,
    ) -> list[Session]:
        """Newest first by `updated_at`; unreadable sessions are listed too, never dropped."""
        chosen = (
            session
            for session in self._sessions.values()
            if (include_secure or not session.secure)
            and (since is None or session.modified_at > since)
            and (tenant is None or session.owner == tenant)
        )
        # The newest `limit` without sorting them all (10,000 sessions, 50 wanted).
        return heapq.nlargest(limit, chosen, key=lambda s: s.modified_at)

    def resolve(self, session_id: str) -> Session:
        """A session by gateway id or codex thread id (an over-long id is simply not found)."""
        key = session_id.strip() if len(session_id) <= MAX_ID_CHARS else ""
        found = self._sessions.get(key) or self.thread_owner(key)
        if found is None or found.error is not None:
            raise SessionNotFound(session_id)
        return found

    def create(
        self,
        *,
        secure: bool,
        metadata: dict[str, Any] | None = None,
        workspace: str | None = None,
        persist: bool = True,
        tenant: str | None = None,
    ) -> Session:
        """A new session directory. With `persist=False` the caller saves the meta itself once
        its agent has started (the run's first save, with the agent's pid), sparing one
        write; until then the session is indexed but its files are in `files_dir`, not `dir`."""
        session_id = str(uuid.uuid4())
        root = self._secure_root if secure else self._roots[0]
        directory = root / f"session-{session_id}"
        stamp = now_iso()
        meta: dict[str, Any] = {
            "session_id": session_id,
            "codex_session_id": None,
            "created_at": stamp,
            "updated_at": stamp,
            "last_activity_at": stamp,
            "status": "idle",
            "model": None,
            "objective": "",
            "nudge_prompt": "",
            "nudge_interval_ms": None,
            "worker_state": "stopped",
            "worker_pid": None,
            "execution_timeout_ms": None,
            "idle_timeout_ms": None,
            "runs": [],
            "secure": secure,
            "metadata": metadata or {},
        }
        if workspace is not None:
            meta["workspace"] = workspace
        if tenant is not None:
            meta["tenant"] = tenant
        staging = directory.with_name(f".{directory.name}{STAGING_SUFFIX}")
        try:
            staging.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise StorageFailed(f"Cannot create the session directory: {exc.strerror}") from exc
        session = decode_session(session_id, directory, meta, secure=secure)
        session.staging = staging
        if persist:
            self.save(session)
        self._index(session)
        return session

    def remember_thread(self, session: Session) -> None:
        self._claim_thread(session)

    async def settle(self, session: Session) -> None:
        """Saved is durable: meta.json is the only copy every reader reads."""

    def save(self, session: Session) -> None:
        """Write meta.json atomically: a reader sees the old file or the new one, never half.

        A new session lives in a hidden staging directory until its first save writes
        meta.json there and renames it into place (the run's open log files move with it): no
        reader, nor a restart after a crash, ever finds a session directory without its meta.
        If that fails the session is forgotten.
        """
        if session.error is not None:  # never written: it is left alone on disk
            raise StorageFailed(f"Session {session.id} is unreadable")
        session.updated_at = now_iso()
        self._archive_runs(session)
        self.meta_writes += 1
        data = dumps(encode_session(session))
        if session.staging is not None:
            self._create_directory(session, session.staging, data)
        else:
            try:
                # 0666 less the umask, as meta.json has always been written.
                write_atomic(f"{session.dir}/{META}", data, mode=0o666)
            except OSError as exc:
                raise StorageFailed(f"Cannot write session metadata: {exc.strerror}") from exc
        session.touched()
        self._claim_thread(session)

    def _archive_runs(self, session: Session) -> None:
        """Move the oldest run records past RUNS_IN_META from meta.json to runs.jsonl (appended
        before meta.json is written: a crash between the two leaves a record in both, never in
        neither). A running record stays: reconciliation after a crash looks for it in meta."""
        runs = session.runs
        if len(runs) <= RUNS_IN_META:
            return
        moving = []
        for record in runs[: len(runs) - RUNS_IN_META]:
            if record.status == RunStatus.RUNNING:
                break
            moving.append(record)
        if not moving:
            return
        data = dumps_lines(moving)
        try:
            _append(session.files_dir / RUNS, data)
        except OSError as exc:
            # Kept in meta.json, which grows until the disk lets them move.
            log.warning("session %s: cannot append to %s: %s", session.id, RUNS, exc.strerror)
            return
        del runs[: len(moving)]
        session.runs_archived += len(moving)

    def _create_directory(self, session: Session, staging: Path, meta: bytes) -> None:
        try:
            # 0666 less the umask, as meta.json has always been written; the directory is new.
            regular_file.write_new(f"{staging}/{META}", meta, mode=0o666)
            os.rename(staging, session.dir)  # noqa: PTH104  # no Path made for the result
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            self._sessions.pop(session.id, None)
            raise StorageFailed(f"Cannot create the session directory: {exc.strerror}") from exc
        session.staging = None

    async def run_history(
        self, session: Session, *, max_bytes: int | None = None
    ) -> list[RunRecord]:
        """Every run record, oldest first: runs.jsonl's, then meta.json's; with `max_bytes` the
        newest that fit, runs.jsonl read backwards in a worker thread (history.py). A record in
        both (a crash between the append and the meta write) is meta.json's."""
        if max_bytes is None:
            return self._every_run(session)
        archived = session.error is None and bool(session.runs_archived)
        snapshot = history.take(
            session.runs, max_bytes, session.files_dir / RUNS if archived else None
        )
        if snapshot.archive is None:
            return snapshot.newest
        from gateway.sessions.logs import lines_backwards  # here: logs imports this module

        lines = lines_backwards(snapshot.archive, max_line_bytes=snapshot.room)
        return await asyncio.to_thread(history.read, snapshot, lines)

    def _every_run(self, session: Session) -> list[RunRecord]:
        in_meta = list(session.runs)
        if session.error is not None or not session.runs_archived:
            return in_meta
        newer = {r.run_id for r in in_meta}
        # By run id: a record moved again after such a crash is in runs.jsonl twice.
        archived: dict[object, RunRecord] = {}
        try:
            lines = (session.files_dir / RUNS).read_bytes().splitlines()
        except OSError as exc:
            log.warning("session %s: cannot read %s: %s", session.id, RUNS, exc.strerror)
            lines = []
        for number, line in enumerate(lines):
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if isinstance(document, dict):
                    record = decode_run(document)
                    if record.run_id not in newer:
                        archived[document.get("run_id") or number] = record
        return [*archived.values(), *in_meta]

    @contextlib.asynccontextmanager
    async def exclusive(self, session: Session, run_id: str) -> AsyncIterator[None]:
        """Hold the session for one run; a second run at the same time is SessionBusy. (One
        event loop: the check and the claim cannot interleave with another run's.)"""
        if session.id in self._busy:
            raise SessionBusy(session.id)
        self._busy[session.id] = run_id
        try:
            yield
        finally:
            self._busy.pop(session.id, None)

    def busy(self, session: Session) -> bool:
        return session.id in self._busy

    def active_run(self, session: Session) -> str | None:
        return self._busy.get(session.id)


def _append(path: Path, data: bytes) -> None:
    """Append whole lines; a line torn by a crash is ended first, so it costs only itself."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def stop_orphaned_agent(pid: int) -> None:
    """SIGKILL the process group a dead gateway's agent led, if that group is still ours.

    The pid is checked to still lead its own group and to run a codex-like command, so a
    recycled pid of some unrelated process is never touched.
    """
    try:
        if os.getpgid(pid) != pid:
            return
        argv = cmdline(pid)
    except (OSError, ProcessLookupError):
        return
    if not runs_an_agent(argv):
        return
    # codex starts commands in sessions of their own: the group kill would miss them.
    for child in descendants(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
