"""The per-run cost of several trees of this repository, side by side in one run.

    .venv/bin/python -m bench.compare [--rounds 3] [--calls 600] [--clients 8] REV [REV ...]

REV is a commit (exported with `git archive`, bench/trees.py) or `.` for this checkout as it
is. Each tree's gateway is started once, on the tiny agent, and they are measured in alternating
rounds, so that the machine's drift hits all of them alike: one timed figure against another
taken minutes apart says little on a shared machine. Per tree, the medians over the rounds of:
completions a second with `--clients` clients over gRPC and over REST, the REST latency p50 with
one client, and the CPU per completion of the gateway and of the bridge process (/proc/<pid>/stat,
every thread). CPU per completion is the figure that drifts least with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.completion import Call, grpc_completion, rest_completion, throughput
from bench.rawhttp import RawClient
from bench.server import GatewayProcess, cpu_seconds, running_gateway
from bench.trees import trees_of
from codex_gateway.v1 import gateway_pb2_grpc
from tests.fakes.agents.build import build_tiny_agent

WARMUP = 50
KINDS = ("grpc", "rest", "rest, 1 client")
LABELS_AS_IS = {"rest, 1 client"}


@dataclass
class Figures:
    """One tree's figures for one kind of call, a value per round."""

    rates: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    gateway_ms: list[float] = field(default_factory=list)
    bridge_ms: list[float] = field(default_factory=list)


async def compare(revs: list[str], *, rounds: int, calls: int, clients: int) -> str:
    """The table; every tree, session and log in a scratch directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
        return await _compare(Path(scratch), revs, rounds=rounds, calls=calls, clients=clients)


async def _compare(work: Path, revs: list[str], *, rounds: int, calls: int, clients: int) -> str:
    agent = build_tiny_agent(work / "bin")
    trees = trees_of(revs, work, "bench.compare")
    figures = {(rev, kind): Figures() for rev in trees for kind in KINDS}
    async with contextlib.AsyncExitStack() as stack:
        gateways: dict[str, GatewayProcess] = {}
        stubs: dict[str, list[Call]] = {}
        for index, (rev, path) in enumerate(trees.items()):
            gateway = await stack.enter_async_context(
                running_gateway(
                    work / f"gateway-{index}",
                    codex_bin=agent,
                    max_concurrent=clients,
                    pythonpath=path,
                )
            )
            gateways[rev] = gateway
            stubs[rev] = []
            for _ in range(clients):
                channel = await stack.enter_async_context(
                    grpc.aio.insecure_channel(gateway.grpc_target)
                )
                stubs[rev].append(grpc_completion(gateway_pb2_grpc.GatewayServiceStub(channel)))  # type: ignore[no-untyped-call]  # generated
            await throughput(stubs[rev], WARMUP)
        for _ in range(rounds):
            for rev, gateway in gateways.items():
                # REST connections of the round's own: the bridge closes one idle for 5 s.
                async with contextlib.AsyncExitStack() as round_stack:
                    rest = [
                        rest_completion(
                            await round_stack.enter_async_context(RawClient(*gateway.rest_address))
                        )
                        for _ in range(clients)
                    ]
                    await throughput(rest, WARMUP)
                    plan = {"grpc": (stubs[rev], calls), "rest": (rest, calls)}
                    plan["rest, 1 client"] = (rest[:1], max(1, calls // 2))
                    for kind, (these, count) in plan.items():
                        await _measure(figures[rev, kind], gateway, these, count)
    return _table(figures, trees, clients)


async def _measure(into: Figures, gateway: GatewayProcess, calls: list[Call], count: int) -> None:
    gateway_pid, bridge_pid = gateway.pids
    gateway_before, bridge_before = cpu_seconds(gateway_pid), cpu_seconds(bridge_pid)
    rate, latencies = await throughput(calls, count)
    into.rates.append(rate)
    into.p50_ms.append(statistics.median(latencies) / 1e6)
    into.gateway_ms.append((cpu_seconds(gateway_pid) - gateway_before) * 1000 / count)
    into.bridge_ms.append((cpu_seconds(bridge_pid) - bridge_before) * 1000 / count)


def _table(figures: dict[tuple[str, str], Figures], trees: dict[str, str], clients: int) -> str:
    lines = [
        "| tree | calls | completions/s | p50 (ms) | gateway CPU/call | bridge CPU/call |",
        "|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        for rev in trees:
            f = figures[rev, kind]
            shown = kind if kind in LABELS_AS_IS else f"{kind}, {clients} clients"
            lines.append(
                f"| {rev} | {shown} | {statistics.median(f.rates):.0f} "
                f"({', '.join(f'{r:.0f}' for r in f.rates)}) | {statistics.median(f.p50_ms):.2f} "
                f"| {statistics.median(f.gateway_ms):.2f} ms "
                f"| {statistics.median(f.bridge_ms):.2f} ms |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("revs", nargs="+", metavar="REV", help="a commit, or . for this checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=600, help="completions a round and kind")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    print(
        asyncio.run(compare(args.revs, rounds=args.rounds, calls=args.calls, clients=args.clients))
    )


if __name__ == "__main__":
    main()
