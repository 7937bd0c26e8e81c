"""The changes between two snapshots of a workspace: files with their status and line counts,
their sums, and on request the unified diff, bounded."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.changes.git import Git
from gateway.changes.snapshot import Snapshot, store_env

DEFAULT_MAX_DIFF_BYTES = 256 * 1024
MIN_MAX_DIFF_BYTES = 1024
MAX_MAX_DIFF_BYTES = 4 * 1024 * 1024

_STATUSES = {"A": "added", "M": "modified", "T": "modified", "D": "deleted", "R": "renamed"}
_DIFF_FLAGS = ("-r", "-z", "-M", "--no-ext-diff", "--no-textconv", "--no-color")


@dataclass
class FileChange:
    path: str
    status: str  # added | modified | deleted | renamed
    old_path: str | None = None
    additions: int = 0
    deletions: int = 0
    binary: bool = False


@dataclass
class Summary:
    """What a run changed, in sum; `source`: git or codex_events."""

    source: str
    files: int = 0
    additions: int = 0
    deletions: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "files": self.files,
            "additions": self.additions,
            "deletions": self.deletions,
        }

    @classmethod
    def from_json(cls, value: object) -> Summary | None:
        if not isinstance(value, dict) or not isinstance(value.get("source"), str):
            return None
        counts = [value.get(k) for k in ("files", "additions", "deletions")]
        numbers = [c for c in counts if isinstance(c, int) and not isinstance(c, bool)]
        if len(numbers) != len(counts):
            return None
        return cls(value["source"], *numbers)


@dataclass
class Changes:
    source: str
    files: list[FileChange] = field(default_factory=list)
    diff: str | None = None
    diff_truncated: bool = False

    @property
    def summary(self) -> Summary:
        return Summary(
            self.source,
            len(self.files),
            sum(f.additions for f in self.files),
            sum(f.deletions for f in self.files),
        )


def clamp_max_diff_bytes(requested: int | None) -> int:
    if requested is None:
        return DEFAULT_MAX_DIFF_BYTES
    return min(max(requested, MIN_MAX_DIFF_BYTES), MAX_MAX_DIFF_BYTES)


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace")


def parse_name_status(data: bytes) -> list[FileChange]:
    """`git diff-tree -z --name-status` output."""
    tokens = data.split(b"\0")
    changes: list[FileChange] = []
    i = 0
    while i < len(tokens) and tokens[i]:
        letter = _text(tokens[i][:1])
        if letter in ("R", "C"):
            old, new = tokens[i + 1], tokens[i + 2]
            status = "renamed" if letter == "R" else "added"
            changes.append(FileChange(_text(new), status, _text(old) if letter == "R" else None))
            i += 3
        else:
            changes.append(FileChange(_text(tokens[i + 1]), _STATUSES.get(letter, "modified")))
            i += 2
    return changes


def parse_numstat(data: bytes) -> dict[str, tuple[int, int, bool]]:
    """`git diff-tree -z --numstat` output: per (new) path, additions, deletions, binary."""
    tokens = data.split(b"\0")
    counts: dict[str, tuple[int, int, bool]] = {}
    i = 0
    while i < len(tokens) and tokens[i]:
        added, deleted, path = tokens[i].split(b"\t", 2)
        if path:
            i += 1
        else:  # a rename: the old and new paths follow
            path = tokens[i + 2]
            i += 3
        binary = added == b"-"
        counts[_text(path)] = (0 if binary else int(added), 0 if binary else int(deleted), binary)
    return counts


def _tree_args(base: Snapshot, after: str) -> list[str]:
    relative = [f"--relative={base.prefix}"] if base.prefix else []
    return [*relative, base.tree, after]


async def summary_between(git: Git, store: Path, base: Snapshot, after: str) -> Summary:
    """Files, additions and deletions from `base` to the tree `after` (one git process)."""
    counts = parse_numstat(await _diff_tree(git, store, base, after, "--numstat"))
    return Summary(
        "git",
        len(counts),
        sum(a for a, _, _ in counts.values()),
        sum(d for _, d, _ in counts.values()),
    )


async def changes_between(
    git: Git,
    store: Path,
    base: Snapshot,
    after: str,
    *,
    with_diff: bool = False,
    max_diff_bytes: int = DEFAULT_MAX_DIFF_BYTES,
) -> Changes:
    names, numstat = await asyncio.gather(
        _diff_tree(git, store, base, after, "--name-status"),
        _diff_tree(git, store, base, after, "--numstat"),
    )
    files = parse_name_status(names)
    counts = parse_numstat(numstat)
    for change in files:
        change.additions, change.deletions, change.binary = counts.get(change.path, (0, 0, False))
    changes = Changes("git", files)
    if with_diff:
        changes.diff, changes.diff_truncated = await unified_diff(
            git, store, base, after, max_diff_bytes
        )
    return changes


async def unified_diff(
    git: Git, store: Path, base: Snapshot, after: str, max_bytes: int
) -> tuple[str, bool]:
    """The unified diff, cut at `max_bytes` (at a line's end where one is near) with a marker."""
    args = [a for a in _DIFF_FLAGS if a != "-z"]
    output = await git.run(
        ["--git-dir", str(store), "diff-tree", "-p", *args, *_tree_args(base, after)],
        cwd=store,
        env=store_env(store, base.objects),
        max_output=max_bytes,
        truncate=True,
    )
    if not output.truncated:
        return _text(output.data), False
    kept = output.data
    line_end = kept.rfind(b"\n")
    if line_end >= len(kept) // 2:
        kept = kept[: line_end + 1]
    text = kept.decode(errors="ignore")
    if not text.endswith("\n"):
        text += "\n"
    marker = (
        f"[gateway: diff truncated at {max_bytes} bytes (max_diff_bytes); the files list "
        "above is complete]\n"
    )
    return text + marker, True


async def _diff_tree(git: Git, store: Path, base: Snapshot, after: str, kind: str) -> bytes:
    output = await git.run(
        ["--git-dir", str(store), "diff-tree", kind, *_DIFF_FLAGS, *_tree_args(base, after)],
        cwd=store,
        env=store_env(store, base.objects),
    )
    return output.data
