"""A snapshot of a git workspace: HEAD's commit and a tree object of its working tree as it is.

Taken without touching the repository's own state: git works on a private copy of the
repository's index (`GIT_INDEX_FILE`; a copy, so git's stat cache spares it re-reading unchanged
files) and writes the objects it makes into a private object directory (`GIT_OBJECT_DIRECTORY`)
that reads the repository's objects as alternates. `git add -A` + `git write-tree` there record
tracked, modified and untracked-not-ignored files alike. No commit, no ref, no stash, no index
change, no object is made in the workspace's .git.

Those two run with the gateway's store as their git directory and the workspace as their work
tree, so they never read the workspace's .git/config, which the agent can write: no filter
driver, fsmonitor hook or hook named there can run (gateway/changes/git.py disarms the rest).
What the repository's config would change of a snapshot is not applied (core.autocrlf, say):
only files the run touched are read again, and they are recorded as they are on disk.

The private object directory belongs to the session (`changes.git` in its files: a bare
repository of the gateway's that holds the snapshots of all its runs). Its trees may name blobs
that only the workspace's repository holds: if that repository is removed (or a gc prunes blobs
nothing of its own names), older changes cannot be shown any more.

A workspace may be a subdirectory of its repository: a snapshot covers only the workspace's
subtree (`git add -A -- .` from the workspace), and changes are reported relative to the
workspace. The repository's git directories must lie inside the workspace roots (its
.git could otherwise name any repository the gateway can read).
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.changes.git import Git, GitFailed
from gateway.runs.workspace import within

STORE_NAME = "changes.git"


class NotARepository(GitFailed):
    """The workspace is not in a git work tree (or its repository is not one we may read)."""


@dataclass(frozen=True)
class Repository:
    """Where a workspace's repository is, as git found it and the gateway checked it."""

    workspace: Path
    toplevel: Path
    git_dir: Path
    common_dir: Path
    prefix: str  # the workspace within the work tree, "" or "sub/dir/"
    head: str | None = None  # HEAD's commit (None: no commit yet)

    @property
    def objects(self) -> Path:
        return self.common_dir / "objects"

    @property
    def location(self) -> list[str]:
        """The options that name this repository to git, whatever its config says."""
        return ["--git-dir", str(self.git_dir), "--work-tree", str(self.toplevel)]


@dataclass(frozen=True)
class Snapshot:
    """A working tree as a tree object in a session's store; `commit`: HEAD then, if any."""

    tree: str
    commit: str | None
    prefix: str
    objects: str  # the repository's objects, which the store reads as alternates

    def as_json(self) -> dict[str, Any]:
        return {
            "tree": self.tree,
            "commit": self.commit,
            "prefix": self.prefix,
            "objects": self.objects,
        }

    @classmethod
    def from_json(cls, value: object) -> Snapshot | None:
        if not isinstance(value, dict):
            return None
        tree, commit = value.get("tree"), value.get("commit")
        prefix, objects = value.get("prefix"), value.get("objects")
        if not (isinstance(tree, str) and isinstance(prefix, str) and isinstance(objects, str)):
            return None
        return cls(tree, commit if isinstance(commit, str) else None, prefix, objects)


@functools.lru_cache(maxsize=16)
def _real_roots(roots: tuple[Path, ...]) -> frozenset[str]:
    """The roots with their symlinks resolved, as text, once per set of roots (the configured
    ones): a stat per path component of every root at every run was most of this lookup's cost.
    A root re-pointed since only moves where the walk stops; what git finds is checked against
    the roots again (`_checked`)."""
    return frozenset(os.path.realpath(root) for root in roots)


def _may_be_in_git(workspace: Path, roots: Sequence[Path]) -> bool:
    """Whether a `.git` is in the workspace or above it, up to its workspace root (a repository
    must lie inside the roots): most runs outside git are told so with a few stats, not two git
    processes. Walked as text (the workspace is absolute and resolved): a Path per level cost
    more than the stats."""
    tops = _real_roots(tuple(roots))
    directory = str(workspace)
    while True:
        if os.path.lexists(f"{directory.rstrip('/')}/.git"):
            return True
        parent = os.path.dirname(directory)  # noqa: PTH120  # text, above
        if directory in tops or parent == directory:
            return False
        directory = parent


async def discover(git: Git, workspace: Path, roots: Sequence[Path]) -> Repository:
    """The workspace's repository; NotARepository when there is none we may read."""
    if not _may_be_in_git(workspace, roots):
        raise NotARepository("no .git in the workspace or above it within its root")
    try:
        found = await git.run(
            [
                "rev-parse",
                "--show-toplevel",
                "--absolute-git-dir",
                "--git-common-dir",
                "--verify",  # and HEAD's commit, in the same process
                "-q",
                "HEAD^{commit}",
            ],
            cwd=workspace,
            ok_codes=(0, 1),  # 1: no commit yet
        )
    except GitFailed as exc:
        raise NotARepository(str(exc)) from None
    return _checked(found.data.decode(errors="surrogateescape").split("\n"), workspace, roots)


def _checked(lines: list[str], workspace: Path, roots: Sequence[Path]) -> Repository:
    """rev-parse's answer, resolved, if the repository is one the gateway may read."""
    if len(lines) < 3:
        raise NotARepository("git rev-parse printed no repository")
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    toplevel = Path(os.path.realpath(lines[0]))
    git_dir = Path(os.path.realpath(lines[1]))
    common_dir = Path(os.path.realpath(workspace / lines[2]))
    real_workspace = Path(os.path.realpath(workspace))
    if not within(real_workspace, [toplevel]):
        raise NotARepository(f"the workspace is outside its work tree {toplevel}")
    for path in (git_dir, common_dir):
        if not within(path, real_roots):
            raise NotARepository(f"the repository's {path} lies outside the workspace roots")
    prefix = real_workspace.relative_to(toplevel).as_posix()
    head = lines[3].strip() if len(lines) > 3 and lines[3].strip() else None
    return Repository(
        real_workspace, toplevel, git_dir, common_dir, "" if prefix == "." else prefix + "/", head
    )


def open_store(files_dir: Path) -> Path:
    """The session's snapshot store (a bare repository of the gateway's), created if need be."""
    store = files_dir / STORE_NAME
    if not (store / "HEAD").is_file():
        for sub in ("objects", "refs", "tmp"):
            (store / sub).mkdir(parents=True, exist_ok=True)
        (store / "HEAD").write_text("ref: refs/heads/main\n")
    return store


def _copy_index(source: Path, target: Path) -> None:
    """The repository's index as the snapshot's starting point (none: an empty index)."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        with os.fdopen(fd, "rb", closefd=False) as src, target.open("xb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        # The original's times: git tells racily clean entries (changed in the second the
        # index was written) by the index file's mtime, and must re-check them as it would.
        info = os.fstat(fd)
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    finally:
        os.close(fd)


def _prepare(files_dir: Path, source: Path, index: Path) -> None:
    """The store ready and the repository's index copied (one trip to a worker thread)."""
    open_store(files_dir)
    _copy_index(source, index)


def store_env(store: Path, objects: str) -> dict[str, str]:
    """git's view of a store: its objects first, the repository's as alternates."""
    return {
        "GIT_OBJECT_DIRECTORY": str(store / "objects"),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": objects,
    }


async def take(git: Git, workspace: Path, roots: Sequence[Path], files_dir: Path) -> Snapshot:
    """A snapshot of `workspace` into the store in `files_dir`. GitFailed (NotARepository when
    there is no git) or OSError when it cannot be taken."""
    repo = await discover(git, workspace, roots)
    commit = repo.head
    store = files_dir / STORE_NAME
    index = store / "tmp" / f"{uuid.uuid4().hex}.index"
    env = {"GIT_INDEX_FILE": str(index), **store_env(store, str(repo.objects))}
    # The store is git's repository here, the workspace its work tree: git reads the store's
    # config (none), hooks (none) and info/ (none), never the workspace's .git/config, so no
    # filter, fsmonitor or hook the agent wrote there can run. Of that repository only its
    # index (copied), its objects (alternates) and its excludes are read.
    location = ["--git-dir", str(store), "--work-tree", str(repo.toplevel)]
    excludes = [f"core.excludesFile={repo.common_dir / 'info' / 'exclude'}"]
    try:
        await asyncio.to_thread(_prepare, files_dir, repo.git_dir / "index", index)
        await git.run(
            [*location, "add", "-A", "--", "."], cwd=repo.workspace, env=env, config=excludes
        )
        # Every blob is the repository's or was just written by add: not looked up again (a
        # lookup per file, most of write-tree's time in a big tree of loose objects).
        written = await git.run(
            [*location, "write-tree", "--missing-ok"], cwd=repo.workspace, env=env
        )
    finally:
        for leftover in (index, index.with_name(index.name + ".lock")):
            leftover.unlink(missing_ok=True)
    tree = written.data.decode().strip()
    if not tree:
        raise GitFailed("git write-tree printed no tree")
    return Snapshot(tree, commit, repo.prefix, str(repo.objects))
