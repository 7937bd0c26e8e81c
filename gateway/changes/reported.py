"""Outside git: the files codex said it changed, from the `file_change` items of a run.

Only what codex's own patch tool did is reported (a shell command's writes are not), and without
line counts: this is codex's account, marked `source: codex_events`, not a diff. The list is
kept in a file of the session's (not in its run record, which every save of the session
rewrites), at most MAX_REPORTED_FILES paths of at most MAX_PATH_CHARS characters.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from gateway import regular_file
from gateway.atomic import write_atomic

MAX_REPORTED_FILES = 1000
MAX_PATH_CHARS = 4096
_MAX_FILE_BYTES = 2 * MAX_REPORTED_FILES * (MAX_PATH_CHARS + 64)
_KINDS = {"add": "added", "update": "modified", "delete": "deleted"}


def _combined(before: str, now: str) -> str | None:
    """A file's status after two changes in one run (None: it is as it was)."""
    if before == "added":
        return None if now == "deleted" else "added"
    if before == "deleted" and now == "added":
        return "modified"
    return now


class ReportedChanges:
    """The files a run's `file_change` items name, at most MAX_REPORTED_FILES of them."""

    def __init__(self, workspace: Path) -> None:
        self._given = workspace
        self.files: dict[str, str] = {}
        self.omitted = 0

    @functools.cached_property
    def _workspace(self) -> Path:
        """Resolved when a run first reports a file: most runs report none."""
        return Path(os.path.realpath(self._given))

    def observe(self, event: dict[str, Any]) -> None:
        if event.get("type") != "item.completed":
            return
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") != "file_change":
            return
        if item.get("status") not in (None, "completed"):
            return  # a rejected or failed patch changed nothing
        changes = item.get("changes")
        for change in changes if isinstance(changes, list) else ():
            if not isinstance(change, dict):
                continue
            path, kind = change.get("path"), _KINDS.get(str(change.get("kind")))
            if not (isinstance(path, str) and path and kind is not None):
                continue
            shown = self._shown(path)
            if len(shown) > MAX_PATH_CHARS:
                self.omitted += 1
            else:
                self._note(shown, kind)

    def _shown(self, path: str) -> str:
        """Relative to the workspace when inside it (as git's changes are), else as given."""
        workspace = self._workspace
        full = Path(os.path.normpath(workspace / path))
        if full.is_relative_to(workspace) and full != workspace:
            return full.relative_to(workspace).as_posix()
        return full.as_posix()

    def _note(self, path: str, kind: str) -> None:
        before = self.files.get(path)
        if before is None:
            if len(self.files) >= MAX_REPORTED_FILES:
                self.omitted += 1
                return
            self.files[path] = kind
            return
        status = _combined(before, kind)
        if status is None:
            del self.files[path]
        else:
            self.files[path] = status

    def as_json(self) -> list[dict[str, str]]:
        return [{"path": path, "status": status} for path, status in sorted(self.files.items())]


def _path(directory: Path, run_id: str) -> Path:
    return directory / f"{run_id}.json"


def save(directory: Path, run_id: str, files: list[dict[str, str]]) -> None:
    """The files a run reported, into `directory` (the session's changes store)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(_path(directory, run_id), json.dumps(files, separators=(",", ":")).encode())


def load(directory: Path, run_id: str) -> list[dict[str, str]] | None:
    """The files a run reported, as saved; None when nothing was saved (or it is unreadable)."""
    try:
        data = json.loads(regular_file.read(_path(directory, run_id), _MAX_FILE_BYTES))
    except (OSError, ValueError, regular_file.NotRegularFile):
        return None
    if not isinstance(data, list):
        return None
    return [
        {"path": entry["path"], "status": entry["status"]}
        for entry in data
        if isinstance(entry, dict)
        and isinstance(entry.get("path"), str)
        and isinstance(entry.get("status"), str)
    ]
