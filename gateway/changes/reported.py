"""Outside git: the files codex said it changed, from the `file_change` items of a run.

Only what codex's own patch tool did is reported (a shell command's writes are not), and without
line counts: this is codex's account, marked `source: codex_events`, not a diff.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MAX_REPORTED_FILES = 1000
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
        self._workspace = Path(os.path.realpath(workspace))
        self.files: dict[str, str] = {}
        self.omitted = 0

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
            if isinstance(path, str) and path and kind is not None:
                self._note(self._shown(path), kind)

    def _shown(self, path: str) -> str:
        """Relative to the workspace when inside it (as git's changes are), else as given."""
        full = Path(os.path.normpath(self._workspace / path))
        if full.is_relative_to(self._workspace) and full != self._workspace:
            return full.relative_to(self._workspace).as_posix()
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
