"""Real git repositories for tests of a run's changes: made with the git CLI, and their state as
a user would notice it (index, objects, refs, stash, config)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any


def sh(command: str, cwd: Path) -> str:
    return subprocess.run(  # noqa: S602 - the tests' own fixed commands
        command,
        shell=True,
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def set_config(repo: Path, key: str, value: str) -> None:
    subprocess.run(["git", "config", key, value], cwd=repo, check=True)


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    sh(
        "git init -q -b main && git config user.email t@example.com && git config user.name t"
        " && printf 'one\\ntwo\\nthree\\n' > tracked.txt && printf 'a\\n' > other.txt"
        " && git add . && git commit -qm base",
        path,
    )
    return path


def git_state(repo: Path) -> dict[str, Any]:
    """Everything of a repository's own state a user could notice."""
    dot = repo / ".git"
    objects = sorted(str(p.relative_to(dot)) for p in (dot / "objects").rglob("*") if p.is_file())
    refs = sorted(str(p.relative_to(dot)) for p in (dot / "refs").rglob("*") if p.is_file())
    index = dot / "index"
    return {
        "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else None,
        "objects": objects,
        "refs": refs,
        "packed_refs": (dot / "packed-refs").exists(),
        "head": (dot / "HEAD").read_text(),
        "config": (dot / "config").read_text(),
        "stash": (dot / "logs" / "refs" / "stash").exists(),
        "files": sorted(str(p.relative_to(dot)) for p in dot.rglob("*")),
    }
