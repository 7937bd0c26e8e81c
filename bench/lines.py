"""Per-line processing cost: the gateway's CPU for each line an agent prints, now and before
issue 18's work, in the same run.

A fake agent (bench/agents/replay_agent.py) replays a recorded mix of codex output lines (the
event shapes of ../shared/spec/codex-cli.md's samples, plain text lines among them) as fast as
the pipe takes it; the gateway frames, logs, indexes, parses and folds every line, and relays
every event on a gRPC StreamCompletion read to its end by this process (and, in a second
figure, answers a unary Complete). The figure is the gateway process's CPU time (every thread,
/proc/<pid>/stat) for that run less that of an empty run, divided by the lines. The output
budget is turned off for it (0), so the cost of pacing is not in it and the run is not slowed.

"Before" is the tree at `BENCH_LINE_COST_BEFORE` (default: issue 18's base commit) exported
with `git archive` and started the same way, its rounds alternating with this tree's; without
git or that commit the row has no baseline.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from typing import Any

import grpc

from bench import PYTHONPATH, ROOT
from bench.results import Result
from bench.server import GatewayProcess, cpu_seconds, running_gateway
from bench.sizes import Context
from bench.trees import exported_tree
from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2

REPLAY_AGENT = ROOT / "bench" / "agents" / "replay_agent.py"
BEFORE_COMMIT = "6dcd82a"
"""Issue 18's base: the tree before the output budget, orjson and the unfollowed-line saving."""
UNBUDGETED = {"CODEX_GATEWAY_OUTPUT_LINES_PER_S": "0", "CODEX_GATEWAY_OUTPUT_BYTES_PER_S": "0"}
TARGET_US = 50.0
"""Not in the issue (it asks for the figure, before and after): what 8 agents at a real codex's
busiest could cost without the loop noticing, chosen here."""


def line_mix(count: int) -> bytes:
    """`count` lines: the event shapes a codex turn prints (codex-cli.md's samples), in the
    order it prints them, with the plain text lines it also prints; deterministic."""
    lines: list[bytes] = []
    n = 0
    while len(lines) < count:
        output = "".join(f"src/module_{n}_{k}.py\n" for k in range(12))
        command = {"id": f"item_{n}_c", "type": "command_execution", "command": "ls -1 src"}
        change = {"id": f"item_{n}_f", "type": "file_change"}
        paths = [{"path": f"/w/src/module_{n}.py", "kind": "update"}]
        turn: list[Any] = [
            {"type": "turn.started"},
            {
                "type": "item.completed",
                "item": {
                    "id": f"item_{n}_r",
                    "type": "reasoning",
                    "text": f"Need to look at module {n} first.",
                },
            },
            {
                "type": "item.completed",
                "item": {
                    "id": f"item_{n}_m",
                    "type": "agent_message",
                    "text": f"Listing the workspace ({n}). " * 6,
                },
            },
            {
                "type": "item.started",
                "item": {
                    **command,
                    "aggregated_output": "",
                    "exit_code": None,
                    "status": "in_progress",
                },
            },
            "Reading additional input from stdin...",
            {
                "type": "item.completed",
                "item": {
                    **command,
                    "aggregated_output": output,
                    "exit_code": 0,
                    "status": "completed",
                },
            },
            {"type": "item.started", "item": {**change, "changes": paths, "status": "in_progress"}},
            {"type": "item.completed", "item": {**change, "changes": paths, "status": "completed"}},
            f"plain text, not json: {n}",
            {"type": "error", "message": "Reconnecting... 1/5 (stream disconnected)"},
            {
                "type": "item.completed",
                "item": {
                    "id": f"item_{n}_d",
                    "type": "agent_message",
                    "text": f"{n:08d} " + "y" * 191,
                },
            },
            {
                "type": "turn.completed",
                "usage": {
                    "input_tokens": 200,
                    "cached_input_tokens": 0,
                    "output_tokens": 20,
                    "reasoning_output_tokens": 0,
                },
            },
        ]
        lines += [
            (line if isinstance(line, str) else json.dumps(line, separators=(",", ":"))).encode()
            for line in turn
        ]
        n += 1
    return b"\n".join(lines[:count]) + b"\n"


async def _run_cpu_s(gateway: GatewayProcess, env: dict[str, str], *, streamed: bool) -> float:
    """The gateway's CPU seconds for one run of the replay agent with `env`."""
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)  # type: ignore[no-untyped-call]  # generated
        run = runs_pb2.RunInput(prompt="replay", env=env, timeout_ms=600_000)
        before = cpu_seconds(gateway.pid)
        if streamed:
            status = ""
            async for message in stub.StreamCompletion(runs_pb2.StreamCompletionRequest(run=run)):
                if message.WhichOneof("kind") == "completed":
                    status = message.completed.status
        else:
            status = (await stub.Complete(runs_pb2.CompleteRequest(run=run))).result.status
        spent = cpu_seconds(gateway.pid) - before
    if status != "completed":
        raise RuntimeError(f"the replay run ended {status or 'without a result'}")
    return spent


async def line_cost(ctx: Context) -> list[Result]:
    sizes = ctx.sizes
    replay = ctx.workdir / "line-mix.jsonl"
    replay.write_bytes(line_mix(sizes.line_cost_lines))
    commit = os.environ.get("BENCH_LINE_COST_BEFORE", BEFORE_COMMIT)
    trees = {"now": PYTHONPATH}
    before_path = exported_tree(commit, ctx.workdir / "before-tree")
    if before_path is not None:
        trees["before"] = before_path
    else:
        ctx.log(f"line-cost: commit {commit} cannot be exported: no baseline")
    per_line: dict[tuple[str, bool], list[float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        gateways: dict[str, GatewayProcess] = {}
        for name, path in trees.items():
            gateways[name] = await stack.enter_async_context(
                running_gateway(
                    ctx.workdir / f"lines-{name}",
                    codex_bin=REPLAY_AGENT,
                    max_concurrent=2,
                    settings=UNBUDGETED,
                    pythonpath=path,
                )
            )
        for gateway in gateways.values():  # warm: imports, the first session
            await _run_cpu_s(gateway, {}, streamed=True)
        for _ in range(sizes.line_cost_rounds):
            for name, gateway in gateways.items():
                for streamed in (True, False):
                    full = await _run_cpu_s(
                        gateway, {"FAKE_AGENT_REPLAY": str(replay)}, streamed=streamed
                    )
                    empty = await _run_cpu_s(gateway, {}, streamed=streamed)
                    per_line.setdefault((name, streamed), []).append(
                        (full - empty) / sizes.line_cost_lines * 1e6
                    )
    figures = {
        f"{name}_{'streamed' if streamed else 'unary'}_us": [round(v, 2) for v in values]
        for (name, streamed), values in per_line.items()
    }
    details = {
        "lines": sizes.line_cost_lines,
        "rounds": sizes.line_cost_rounds,
        "mix_bytes": replay.stat().st_size,
        "before_commit": commit if before_path else None,
        **figures,
        "loadavg": [round(load, 2) for load in os.getloadavg()],
    }
    ctx.log(f"line-cost: {details}")
    results = []
    for streamed, label in ((True, "relayed on a gRPC stream"), (False, "unary Complete")):
        now = statistics.median(per_line[("now", streamed)])
        before = per_line.get(("before", streamed))
        results.append(
            Result(
                f"per-line cost, gateway CPU per codex line, {label}",
                "us",
                round(now, 2),
                TARGET_US,
                baseline=round(statistics.median(before), 2) if before else None,
                baseline_label=f"before, {commit}" if before else "",
                details=details if streamed else {},
            )
        )
    return results
