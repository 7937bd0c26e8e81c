"""A session and its run records as typed objects, with the statuses they go through.

They are read and written only through gateway/sessions/codec.py, which keeps each object's JSON
document as last read or written (`stored`), so the keys this gateway does not know (the
reference's, or a newer gateway's) survive a save. Which store holds them is the business of
gateway/sessions/store.py.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from gateway.runs.failure import FailureKind, RunFailure

DEFAULT_TENANT: Final = "default"
"""The tenant of a session made before tenants, and of a key that names none."""


class SessionStatus(enum.StrEnum):
    """A session's `status` in meta.json: idle until its first run, then its last run's."""

    IDLE = "idle"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class RunStatus(enum.StrEnum):
    """A run record's `status`: running, then how it ended."""

    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


JsonObject = dict[str, Any]


@dataclass(frozen=True)
class ForkOrigin:
    """Where a forked session came from: its parent session, the parent's codex thread that was
    forked, and the parent's last run then (meta.json's `forked_from`)."""

    session_id: str
    codex_session_id: str | None = None
    run_id: str | None = None

    @classmethod
    def of(cls, parent: Session) -> ForkOrigin:
        """A fork of `parent` now: its thread and its last run."""
        runs = parent.runs
        return cls(parent.id, parent.codex_session_id, runs[-1].run_id if runs else None)

    def as_dict(self) -> JsonObject:
        return {
            "session_id": self.session_id,
            "codex_session_id": self.codex_session_id,
            "run_id": self.run_id,
        }


@dataclass(eq=False)
class RunRecord:
    """One run of a session, as its record in meta.json's `runs` (or runs.jsonl) holds it.

    A field that is None is absent from the document, except `resume_session_id` and `model`,
    which a new record writes as null (the reference's format). A status this gateway does not
    know (a newer one's) stays the string it was.
    """

    run_id: str = ""
    status: RunStatus | str = ""
    started_at: str = ""
    prompt_preview: str = ""
    timeout_ms: int | None = None
    resume_session_id: str | None = None
    model: str | None = None
    source: str = ""
    metadata: JsonObject | None = None
    attempts: int | None = None
    agent_pid: int | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    error: str | None = None
    content_preview: str | None = None
    usage: JsonObject | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    changes: JsonObject | None = None
    """What the run changed, in sum (gateway/changes/): source, files, additions, deletions."""
    changes_snapshot: JsonObject | None = None
    """git: the snapshot before the run (tree, commit, ...) and, once it ended, `after`."""
    trace_id: str | None = None
    """The run's OpenTelemetry trace id (gateway/tracing.py), when traces are on."""
    failure: JsonObject | None = None
    """Why the run did not complete: kind, message, retry_after_ms (gateway/runs/failure.py)."""
    stored: JsonObject | None = field(default=None, repr=False)
    """The JSON object as last read or written; None for a record not written yet."""


@dataclass(eq=False)
class Session:
    """One session: its identity and files, and the state its meta.json holds."""

    id: str
    dir: Path
    secure: bool
    """Held in the secure root, or marked `secure` in its meta."""
    error: str | None = None
    """Set when meta.json cannot be read: the session is listed, never run nor written."""
    staging: Path | None = None
    """A new session's hidden directory, until its first save renames it to `dir`."""
    codex_session_id: str | None = None
    """The session's codex thread, canonical (anything but a UUID in meta.json is None here)."""
    created_at: str = ""
    updated_at: str = ""
    last_activity_at: str = ""
    status: SessionStatus | str = ""
    model: str | None = None
    objective: str = ""
    nudge_prompt: str = ""
    execution_timeout_ms: int | None = None
    metadata: JsonObject = field(default_factory=dict)
    workspace: str | None = None
    last_input: JsonObject | None = None
    """The last run's `messages` and `system_prompt`: what a nudge without a prompt runs."""
    thread_usage: JsonObject | None = None
    """The codex thread's cumulative usage after the last run (a run's share is the difference)."""
    runs_archived: int = 0
    """Run records archived (runs.jsonl), older than those in `runs`."""
    forked_from: ForkOrigin | None = None
    """Set on a session started by a fork of another session's thread."""
    tenant: str | None = None
    """The tenant that owns it (gateway/auth/tenancy.py); None: made before tenants, `default`'s."""
    stored: JsonObject | None = field(default=None, repr=False)
    """meta.json's object as last read or written (it keeps the keys not typed here)."""
    _runs: list[RunRecord] | None = field(default=None, repr=False)

    @property
    def owner(self) -> str:
        """The tenant that owns it: `tenant`, or DEFAULT_TENANT for a session made before."""
        return self.tenant or DEFAULT_TENANT

    @property
    def runs(self) -> list[RunRecord]:
        """The newest run records, oldest first. Read from `stored` when first asked for:
        loading 10,000 sessions reads no record (listing them counts records, no more)."""
        if self._runs is None:
            # Here, not at the top: the codec imports this module.
            from gateway.sessions.codec import decode_runs

            self._runs = decode_runs(self.stored)
        return self._runs

    @property
    def runs_decoded(self) -> bool:
        """Whether `runs` was read (if not, the records are as `stored` has them)."""
        return self._runs is not None

    def __post_init__(self) -> None:
        self.modified_at = self._modified()

    @property
    def files_dir(self) -> Path:
        """Where the session's files are written: `dir`, or its staging directory before that."""
        return self.staging or self.dir

    @property
    def run_count(self) -> int:
        """Runs of the session: the archived ones and those in `runs`."""
        if self._runs is not None:
            return len(self._runs) + self.runs_archived
        stored = (self.stored or {}).get("runs")
        records = sum(isinstance(r, dict) for r in stored) if isinstance(stored, list) else 0
        return records + self.runs_archived

    def _modified(self) -> datetime:
        if self.updated_at:
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(self.updated_at)
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        try:
            return datetime.fromtimestamp(self.dir.stat().st_mtime, UTC)
        except OSError:
            return datetime.fromtimestamp(0, UTC)

    def touched(self) -> None:
        self.modified_at = self._modified()

    def interrupt(self, error: str, completed_at: str) -> list[int]:
        """Its runs were lost with the process that ran them (a crash, a dead replica): each
        record still `running` becomes `interrupted` with `error`, and so does the session.
        The agent pids those records held, for whoever may still stop them."""
        pids = []
        for record in self.runs:
            if record.status != RunStatus.RUNNING:
                continue
            if record.agent_pid is not None:
                pids.append(record.agent_pid)
            record.agent_pid = None
            record.status = RunStatus.INTERRUPTED
            record.error = error
            record.failure = RunFailure(FailureKind.INTERRUPTED, error).as_json()
            record.completed_at = completed_at
        self.status = SessionStatus.INTERRUPTED
        return pids
