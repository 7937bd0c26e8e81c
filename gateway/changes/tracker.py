"""The changes of runs: a snapshot of the workspace when a run starts, another and their sum when
it ends (whatever its status: the files changed anyway), and the changes of any recorded run.

A snapshot that cannot be taken (no git, no git binary, a broken repository, a deadline
overrun) never fails the run: it is logged and the run's changes are then the files codex
reported (gateway/changes/reported.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.changes import reported
from gateway.changes.diff import Changes, FileChange, Summary, changes_between, summary_between
from gateway.changes.git import Git, GitFailed, git_environment
from gateway.changes.snapshot import STORE_NAME, NotARepository, Snapshot, take
from gateway.config import Config
from gateway.errors import ChangesUnavailable
from gateway.sessions.model import RunRecord, RunStatus, Session

if TYPE_CHECKING:  # the run imports nothing of this module; only its type is needed here
    from gateway.runs.run import Run

log = logging.getLogger(__name__)

REPORTED_DIR = "reported"  # in the session's store: codex's reports, a file per run
BASE_TIMEOUT_S = 20.0
AFTER_TIMEOUT_S = 60.0


@dataclass
class RunChanges:
    """A run's changes as GetSessionChanges answers them."""

    changes: Changes
    base_commit: str | None = None
    running: bool = False


PROTECTED_HARDLINKS = Path("/proc/sys/fs/protected_hardlinks")


def hardlinks_protected(setting: Path = PROTECTED_HARDLINKS) -> bool:
    """Whether a user may only hard-link files it could read (fs.protected_hardlinks = 1)."""
    try:
        return setting.read_text().strip() == "1"
    except OSError:
        return False


class ChangeTracker:
    """Git runs as the gateway's user, not the agent's (CODEX_GATEWAY_AGENT_USER): it writes into
    the session's store, which the agent must not reach. So it reads the workspace with the
    gateway's rights: symlinks are recorded as links, devices and FIFOs are refused, and a hard
    link to a file the agent could not read is what the kernel's fs.protected_hardlinks
    forbids. Without that protection, and with an agent user, the gateway takes no snapshot
    (codex's reports instead) rather than read such a link for the agent.
    """

    def __init__(self, config: Config) -> None:
        self._git = Git(git_environment(config.child_env))
        self._roots: Sequence[Path] = (*config.workspace_roots, config.default_workspace)
        self.enabled = config.agent_user is None or hardlinks_protected()
        if not self.enabled:
            log.warning(
                "fs.protected_hardlinks is off: with CODEX_GATEWAY_AGENT_USER set, runs' changes "
                "come from codex's reports, not git snapshots"
            )

    async def _snapshot(self, workspace: Path, files_dir: Path, timeout_s: float) -> Snapshot:
        async with asyncio.timeout(timeout_s):
            return await take(self._git, workspace, self._roots, files_dir)

    async def begin(self, run: Run) -> None:
        """The base: the workspace as the run found it, uncommitted changes included."""
        workspace = run.prepared.workspace
        if not self.enabled:
            return
        try:
            base = await self._snapshot(workspace, run.session.files_dir, BASE_TIMEOUT_S)
        except (GitFailed, OSError, TimeoutError) as exc:
            _log_failure(run.id, "before", exc)
            return
        run.record.changes_snapshot = {**base.as_json(), "workspace": str(workspace)}

    def end_at_once(self, run: Run) -> bool:
        """The run's changes into its record now, when nothing needs waiting for: no snapshot
        to compare with and no file codex reported (most runs outside git). False: `end` has
        the work to do."""
        if Snapshot.from_json(run.record.changes_snapshot) is not None or run.reported.files:
            return False
        run.record.changes = Summary("codex_events", 0).as_json()
        return True

    async def end(self, run: Run) -> None:
        """The run's changes into its record: the git summary, else codex's reported files."""
        record = run.record
        base = Snapshot.from_json(record.changes_snapshot)
        if base is not None and record.changes_snapshot is not None:
            try:
                files_dir = run.session.files_dir
                after = await self._snapshot(run.prepared.workspace, files_dir, AFTER_TIMEOUT_S)
                summary = await summary_between(self._git, files_dir / STORE_NAME, base, after.tree)
            except (GitFailed, OSError, TimeoutError) as exc:
                _log_failure(run.id, "after", exc)
            else:
                record.changes_snapshot = {**record.changes_snapshot, "after": after.tree}
                record.changes = summary.as_json()
                return
        files = run.reported.as_json()
        record.changes = Summary("codex_events", len(files)).as_json()
        if not files:
            return  # nothing to keep (most runs outside git: no file written for them)
        try:
            directory = run.session.files_dir / STORE_NAME / REPORTED_DIR
            await asyncio.to_thread(reported.save, directory, run.id, files)
        except OSError as exc:
            log.warning("run %s: could not record the files codex reported: %s", run.id, exc)
            record.changes = None

    async def of_run(
        self,
        session: Session,
        record: RunRecord,
        live: Run | None,
        *,
        with_diff: bool,
        max_diff_bytes: int,
    ) -> RunChanges:
        """What the run changed; while it runs (`live` is it), its changes so far."""
        running = record.status == RunStatus.RUNNING
        snapshot = record.changes_snapshot or {}
        base = Snapshot.from_json(snapshot)
        after = snapshot.get("after")
        store = session.files_dir / STORE_NAME
        try:
            if base is not None and running:
                workspace = snapshot.get("workspace")
                if not isinstance(workspace, str):
                    raise ChangesUnavailable(f"run {record.run_id} recorded no workspace")
                now = await self._snapshot(Path(workspace), session.files_dir, AFTER_TIMEOUT_S)
                after = now.tree
            if base is not None and isinstance(after, str):
                changes = await changes_between(
                    self._git,
                    store,
                    base,
                    after,
                    with_diff=with_diff,
                    max_diff_bytes=max_diff_bytes,
                )
                return RunChanges(changes, base.commit, running)
        except (GitFailed, OSError, TimeoutError) as exc:
            log.warning("run %s: its changes cannot be read: %s", record.run_id, exc)
            raise ChangesUnavailable(
                f"The changes of run {record.run_id} cannot be read any more (its repository "
                "or its snapshots are gone)"
            ) from None
        listed = live.reported.as_json() if running and live is not None else None
        summary = Summary.from_json(record.changes)
        if listed is None and summary is not None and summary.source == "codex_events":
            listed = (
                await asyncio.to_thread(
                    reported.load, session.files_dir / STORE_NAME / REPORTED_DIR, record.run_id
                )
                if summary.files
                else []
            )
        if listed is None:
            raise ChangesUnavailable(f"No changes were recorded for run {record.run_id}")
        files = [FileChange(entry["path"], entry["status"]) for entry in listed]
        return RunChanges(Changes("codex_events", files), None, running)


def _log_failure(run_id: str, when: str, exc: BaseException) -> None:
    if isinstance(exc, NotARepository):
        log.debug("run %s: no git snapshot %s it: %s", run_id, when, exc)
    else:
        log.warning(
            "run %s: no git snapshot %s it (codex's reports instead): %s", run_id, when, exc
        )
