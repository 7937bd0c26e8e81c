"""Another commit's code beside this checkout's, to measure both in one run: its gateway, bridge
and generated code exported with `git archive`, run through its own PYTHONPATH."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from bench import PYTHONPATH, ROOT


def exported_tree(commit: str, into: Path) -> str | None:
    """The tree at `commit` (its gateway, bridge and generated code) in `into`; its PYTHONPATH,
    or None when it cannot be had (no git, a shallow clone)."""
    try:
        archive = subprocess.run(  # noqa: S603  # fixed argv
            ["git", "archive", "--format=tar", commit, "gateway", "bridge", "gen"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return f"{into}:{into / 'gen'}"


def trees_of(revs: list[str], into: Path, tool: str) -> dict[str, str]:
    """Each REV's PYTHONPATH: `.` is this checkout as it is, any other a commit exported into
    `into`. Exits naming `tool` when one cannot be exported."""
    trees: dict[str, str] = {}
    for rev in revs:
        path = PYTHONPATH if rev == "." else exported_tree(rev, into / f"tree-{rev}")
        if path is None:
            raise SystemExit(f"{tool}: cannot export {rev} (git archive failed)")
        trees[rev] = path
    return trees
