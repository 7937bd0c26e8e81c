"""The run path alone, in process: how much of the event loop's thread one completion takes
without gRPC, REST or a second process, for this checkout and other commits side by side.

    .venv/bin/python -m bench.runpath [--runs 1500] [--rounds 3] REV [REV ...]

REV is a commit (exported with `git archive`, bench/trees.py) or `.` for this checkout as it is.
Each tree runs `Runner.run` and builds the answer's message for the tiny agent, one run at a
time, in a process of its own, and reports its loop thread's CPU per run (`time.thread_time`:
the agent's own time and every wait are left out). Of ten slices of the runs, the second lowest
is kept: on a shared machine it drifts least. Trees alternate round by round, and the table
gives each tree's median over the rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.trees import trees_of
from tests.fakes.agents.build import build_tiny_agent

CHILD = Path(__file__).with_name("runpath_child.py")
"""Run as a script, not as `-m bench...`: importing the bench package puts this checkout first
on the path (bench/__init__.py), and the child must run its tree's code."""


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.runpath", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("revs", nargs="*", metavar="REV", help="a commit, or . for this checkout")
    parser.add_argument("--runs", type=int, default=1500, help="runs a round and tree")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.revs:
        parser.error("give at least one REV")
    with tempfile.TemporaryDirectory(prefix="bench-runpath-") as scratch:
        figures = _measure(Path(scratch), args.revs, rounds=args.rounds, runs=args.runs)
    print("| tree | loop-thread CPU per run (us), median | each round |")
    print("|---|---|---|")
    for rev, values in figures.items():
        rounds = ", ".join(f"{value:.0f}" for value in values)
        print(f"| {rev} | {statistics.median(values):.0f} | {rounds} |")


def _measure(work: Path, revs: list[str], *, rounds: int, runs: int) -> dict[str, list[float]]:
    """Each tree's figure per round, measured in `work` (each round's sessions removed after)."""
    agent = build_tiny_agent(work / "bin")
    trees = trees_of(revs, work, "bench.runpath")
    figures: dict[str, list[float]] = {rev: [] for rev in trees}
    for round_ in range(rounds):
        for index, (rev, path) in enumerate(trees.items()):
            root = work / f"round-{round_}-{index}"
            figures[rev].append(_child(path, root, agent, runs))
            shutil.rmtree(root, ignore_errors=True)
    return figures


def _child(pythonpath: str, root: Path, agent: Path, runs: int) -> float:
    """One tree's figure, measured in a process running that tree's code."""
    root.mkdir(parents=True)
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "PYTHONPATH": pythonpath,
        "BENCH_RUNPATH_AGENT": str(agent),
    }
    done = subprocess.run(  # noqa: S603  # this interpreter, a fixed script
        [sys.executable, str(CHILD), str(root), str(runs)],
        env=environ,
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench.runpath: the run in {root} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
