"""One tree's side of `python -m bench.runpath`: run as a script (`python runpath_child.py ROOT
RUNS`) with that tree on PYTHONPATH, never imported. It runs `Runner.run` and builds the answer's
message for the tiny agent (BENCH_RUNPATH_AGENT), one run at a time, in a gateway rooted in ROOT,
and prints its loop thread's CPU per run in us: of ten slices of the runs, the second lowest."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

SLICES = 10
WARMUP = 200


async def measure(root: Path, runs: int) -> float:
    from codex_gateway.v1 import runs_pb2
    from gateway.api.views import result_message
    from gateway.config import Config
    from gateway.runs.run import RunRequest
    from gateway.server import Gateway

    workspace = root / "workspace"
    workspace.mkdir()
    config = Config.from_env(
        {
            "CODEX_GATEWAY_CODEX_BIN": os.environ["BENCH_RUNPATH_AGENT"],
            "CODEX_GATEWAY_SESSION_DIRS": str(root / "sessions"),
            "CODEX_GATEWAY_SECURE_SESSION_DIR": str(root / "sessions-secure"),
            "CODEX_GATEWAY_DEFAULT_WORKSPACE": str(workspace),
            "CODEX_GATEWAY_WORKSPACE_ROOTS": str(workspace),
            "CODEX_GATEWAY_CODEX_HOME": str(root / "codex-home"),
            "CODEX_GATEWAY_TRIGGER_FILE": str(root / "triggers.json"),
            "CODEX_GATEWAY_MAX_CONCURRENT": "8",
            "CODEX_DISABLE_DEFAULT_PROMPT": "1",
            "CODEX_GATEWAY_LOG_LEVEL": "0",
            "PATH": os.environ["PATH"],
            "HOME": str(root),
        }
    )
    runner = Gateway.build(config).runner

    async def one() -> None:
        result = await runner.run(RunRequest(source="completion", prompt="hi"))
        answer = result_message(result, config.max_answer_bytes)
        runs_pb2.CompleteResponse(result=answer).SerializeToString()

    for _ in range(WARMUP):
        await one()
    slices = []
    for _ in range(SLICES):
        started = time.thread_time()
        for _ in range(runs // SLICES):
            await one()
        slices.append((time.thread_time() - started) / (runs // SLICES) * 1e6)
    return sorted(slices)[1]


if __name__ == "__main__":
    print(asyncio.run(measure(Path(sys.argv[1]), int(sys.argv[2]))))
