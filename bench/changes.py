"""The changes of a run in a big repository: a workspace of 10,000 committed files in 100
directories, a run (bench/agents/edit_agent.py) that edits 50 of them.

Measured, beside `git status --porcelain` on the same tree in the same run (the baseline: what
git itself needs to tell what changed):

- the changes of the run: `GET /sessions/:id/changes` through the REST bridge of a real gateway
  (two `git diff-tree` of the run's snapshots; the diff not asked for), p50;
- the snapshot before a run, which is what a git workspace adds to a run's start: the
  gateway's own snapshot code (gateway/changes/snapshot.py) on the tree as the next run would
  find it (the 50 edits uncommitted), each into a new session's store (nothing of it there
  yet: the worst case), p50.

The repository's index is refreshed once after it is built, as a user's is by any `git status`:
the snapshot copies it and relies on its stat cache. The build is synced to disk first and the
first WARMUP snapshots are not counted (each sample is measured warm, as `git status` is).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import httpx

from bench.results import Result, latency_summary
from bench.server import running_gateway
from bench.sizes import Context
from gateway.changes.git import Git, git_environment
from gateway.changes.snapshot import take

EDIT_AGENT = Path(__file__).resolve().parent / "agents" / "edit_agent.py"
FILES = 10_000
FILES_PER_DIR = 100
EDITS = 50
SAMPLES = 30
WARMUP = 3
CHANGES_TARGET_MS = 200.0
SNAPSHOT_TARGET_MS = 50.0


def _git(repo: Path, *args: str) -> None:
    subprocess.run(  # noqa: S603  # fixed argv
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],  # noqa: S607  # git from PATH
        cwd=repo,
        check=True,
        capture_output=True,
    )


def build_repository(repo: Path) -> None:
    """FILES small text files in directories of FILES_PER_DIR, committed, index refreshed."""
    repo.mkdir(parents=True, exist_ok=True)
    for index in range(FILES):
        directory = repo / f"d{index // FILES_PER_DIR:02d}"
        directory.mkdir(exist_ok=True)
        lines = "".join(f"line {n} of file {index}\n" for n in range(20))
        (directory / f"f{index:05d}.txt").write_text(lines)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "10,000 files")
    time.sleep(1.1)  # past the index's timestamp: no entry is racily clean any more
    _git(repo, "update-index", "-q", "--refresh")
    os.sync()  # the build's writes on disk: their writeback is not what is measured


async def _timed_status(repo: Path) -> int:
    started = time.perf_counter_ns()
    proc = await asyncio.create_subprocess_exec(
        "git",
        "status",
        "--porcelain",
        cwd=repo,
        stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    )
    await proc.wait()
    return time.perf_counter_ns() - started


async def changes_of_a_run(ctx: Context) -> list[Result]:
    workdir = ctx.workdir / "changes"
    repo = workdir / "workspace"
    ctx.log(f"changes: building a repository of {FILES} files")
    await asyncio.to_thread(build_repository, repo)
    async with (
        running_gateway(workdir, codex_bin=EDIT_AGENT, max_concurrent=2) as gw,
        httpx.AsyncClient(base_url=gw.rest_url, timeout=120) as client,
    ):
        run = await client.post(
            "/completion", json={"prompt": "edit", "env": {"FAKE_AGENT_EDITS": str(EDITS)}}
        )
        if run.status_code != 200:
            raise RuntimeError(f"POST /completion: {run.status_code} {run.text[:300]}")
        summary = run.json().get("changes") or {}
        if summary.get("files") != EDITS or summary.get("source") != "git":
            raise RuntimeError(f"the run's changes are not its {EDITS} edits: {summary}")
        path = f"/sessions/{run.json()['session_id']}/changes"
        changes: list[int] = []
        status: list[int] = []
        for _ in range(SAMPLES):
            started = time.perf_counter_ns()
            response = await client.get(path)
            changes.append(time.perf_counter_ns() - started)
            if response.status_code != 200 or len(response.json()["files"]) != EDITS:
                raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
            status.append(await _timed_status(repo))

    git = Git(git_environment({"PATH": os.environ.get("PATH", os.defpath)}))
    snapshots: list[int] = []
    status_again: list[int] = []
    for n in range(WARMUP + SAMPLES):
        started = time.perf_counter_ns()
        await take(git, repo, [repo], workdir / "stores" / str(n))
        if n >= WARMUP:
            snapshots.append(time.perf_counter_ns() - started)
            status_again.append(await _timed_status(repo))

    changes_stats, status_stats = latency_summary(changes), latency_summary(status)
    snapshot_stats, status_again_stats = latency_summary(snapshots), latency_summary(status_again)
    details = {
        "files": FILES,
        "edited": EDITS,
        "changes": changes_stats,
        "git_status_beside_changes": status_stats,
        "snapshot": snapshot_stats,
        "git_status_beside_snapshot": status_again_stats,
    }
    ctx.log(f"changes: {details}")
    return [
        Result(
            f"changes of a run (GET /sessions/:id/changes), {FILES:,} files, {EDITS} changed, p50",
            "ms",
            changes_stats["p50_ms"],
            CHANGES_TARGET_MS,
            baseline=status_stats["p50_ms"],
            baseline_label="git status p50",
            details=details,
        ),
        Result(
            f"snapshot before a run (added to its start), {FILES:,} files, {EDITS} changed, p50",
            "ms",
            snapshot_stats["p50_ms"],
            SNAPSHOT_TARGET_MS,
            baseline=status_again_stats["p50_ms"],
            baseline_label="git status p50",
            details=details,
        ),
    ]
