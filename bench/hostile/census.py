"""The census's bookkeeping: a gateway process it owns (restarted fresh after a crash or a wedge),
the probes it sends, and what it counts per class of input.

A probe is one hostile input over one protocol. Its answer is filed in a bucket: `ok` (2xx, gRPC
OK), `client` (other 4xx, and the gRPC codes of a client's mistake), `429` (429 or
RESOURCE_EXHAUSTED), `5xx` (5xx, INTERNAL, UNKNOWN, DATA_LOSS), `none` (the connection closed
without an answer, UNAVAILABLE) or `hang` (no answer within the per-request deadline). After each
probe the census checks that the gateway and its REST bridge are still the processes it started:
if one exited, that is a crash; the gateway is restarted in a fresh root and the probes that
remain in the crashed probe's group are skipped (they would only measure the restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.hostile.process import (
    Gateway,
    RssPeaks,
    bridges_of,
    spawn_gateway,
    until_serving,
)
from bench.server import process_tree
from codex_gateway.v1 import gateway_pb2_grpc, status_pb2
from gateway.procfs import status_kib

HEALTH_DEADLINE_S = 3.0
RESTARTS_PER_CLASS = 3
NOTABLE_PER_CLASS = 8
_CLIENT_ERROR_CODES = {
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "FAILED_PRECONDITION",
    "OUT_OF_RANGE",
    "ABORTED",
    "CANCELLED",
    "UNIMPLEMENTED",
    "DEADLINE_EXCEEDED",  # the server's own deadline (a run's timeout); the client's is a hang
}
_SERVER_ERROR_CODES = {"INTERNAL", "UNKNOWN", "DATA_LOSS"}
BUCKETS = ("ok", "client", "429", "5xx", "none", "hang")


def bucket_of(detail: str) -> str:
    """The bucket of a probe's answer, given as `rest <status>`, `grpc <CODE>`, `rest none` or
    `hang`."""
    if detail == "hang":
        return "hang"
    protocol, _, answer = detail.partition(" ")
    if protocol == "rest":
        if answer == "none":
            return "none"
        status = int(answer)
        if status == 429:
            return "429"
        if status >= 500:
            return "5xx"
        return "client" if status >= 400 else "ok"
    if answer == "OK":
        return "ok"
    if answer == "RESOURCE_EXHAUSTED":
        return "429"
    if answer in _SERVER_ERROR_CODES:
        return "5xx"
    if answer == "UNAVAILABLE":
        return "none"
    return "client" if answer in _CLIENT_ERROR_CODES else "5xx"


class Hang(Exception):
    """No answer within the probe's deadline."""


@dataclass(frozen=True)
class Probe:
    """One hostile input: `send` answers `rest <status>` or `grpc <CODE>` (or raises Hang)."""

    name: str
    group: str
    send: Callable[[Target], Awaitable[str]]
    deadline_s: float | None = None
    refusal_expected: bool = False
    """The issue expects a refusal (a run under text/plain, a foreign Host): a 2xx is noted."""


@dataclass
class Tally:
    """What one class of input did to the gateway."""

    name: str
    tried: int = 0
    skipped: int = 0
    protocols: Counter[str] = field(default_factory=Counter)
    """Inputs tried per protocol (`rest`, `grpc`)."""
    buckets: Counter[str] = field(default_factory=Counter)
    details: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    notable: list[str] = field(default_factory=list)
    """The first probes that answered 5xx, none or hang."""
    unnoted: int = 0
    accepted: list[str] = field(default_factory=list)
    """Probes the issue expects refused that were answered 2xx."""
    events: list[str] = field(default_factory=list)
    """Every crash (with its cause), wedge and restart, and remarks."""
    peak_gateway_kib: int = 0
    peak_bridge_kib: int = 0
    seconds: float = 0.0

    def note(self, text: str) -> None:
        if len(self.notable) < NOTABLE_PER_CLASS:
            self.notable.append(text)
        else:
            self.unnoted += 1

    def event(self, text: str) -> None:
        self.events.append(text)

    def record(self, probe: Probe, detail: str) -> None:
        self.tried += 1
        self.protocols["grpc" if probe.name.startswith("gRPC") else "rest"] += 1
        bucket = bucket_of(detail)
        self.buckets[bucket] += 1
        self.details[detail] += 1
        if bucket in ("5xx", "none", "hang", "429"):
            self.note(f"{bucket}: {probe.name} -> {detail}")
        elif bucket == "ok" and probe.refusal_expected:
            self.accepted.append(probe.name)

    def merge_rss(self, gateway_kib: int, bridge_kib: int) -> None:
        self.peak_gateway_kib = max(self.peak_gateway_kib, gateway_kib)
        self.peak_bridge_kib = max(self.peak_bridge_kib, bridge_kib)


@dataclass
class Target:
    """One running gateway and what the probes need of it: clients over both protocols, a
    session and a trigger that exist, and the hostile files in its trigger root."""

    gateway: Gateway
    bridge_pid: int
    root: Path
    http: httpx.AsyncClient
    channel: grpc.aio.Channel
    stub: Any
    session_id: str = ""
    trigger_id: str = "census"
    listener: socket.socket | None = None

    @property
    def trigger_root(self) -> Path:
        return self.root / "triggers"

    @property
    def watch_dir(self) -> Path:
        return self.root / "watch"

    def alive(self) -> str | None:
        """None while the gateway and the bridge it started run; else what exited."""
        if not self.gateway.running():
            return f"the gateway exited with {self.gateway.process.returncode}"
        if self.bridge_pid in bridges_of(self.gateway.pid):
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):  # an exiting gateway ends it first
            self.gateway.process.wait(timeout=1.0)
        if not self.gateway.running():
            return f"the gateway exited with {self.gateway.process.returncode}"
        return "the REST bridge exited"

    def cause(self) -> str:
        """The last exception line the gateway logged, if any."""
        lines = self.gateway.log_tail(400).splitlines()
        found = [line for line in lines if "Error" in line or "Exception" in line]
        return found[-1].strip()[:160] if found else "(no exception in its log)"


class Census:
    """Owns the gateway under test (one at a time) and the tallies of the classes run on it."""

    def __init__(
        self,
        workdir: Path,
        agent: Path,
        *,
        deadline_s: float,
        prepare: Callable[[Target], Awaitable[None]],
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self._workdir = workdir
        self._agent = agent
        self._extra_env = extra_env or {}
        self._prepare = prepare
        self.deadline_s = deadline_s
        self.target: Target | None = None
        self.starts = 0
        self.tallies: list[Tally] = []
        self.hwm_gateway_kib = 0
        self.hwm_bridge_kib = 0

    def pids(self) -> tuple[int, int]:
        target = self.target
        return (target.gateway.pid, target.bridge_pid) if target else (0, 0)

    async def start(self) -> Target:
        self.starts += 1
        root = self._workdir / f"gateway-{self.starts}"
        gateway = spawn_gateway(root, self._agent, self._extra_env)
        try:
            await until_serving(gateway, timeout_s=30)
            bridges = bridges_of(gateway.pid)
            if not bridges:
                raise RuntimeError(f"no REST bridge under the gateway:\n{gateway.log_tail()}")
        except BaseException:
            await asyncio.to_thread(gateway.stop)
            raise
        http = httpx.AsyncClient(base_url=gateway.url, timeout=120, trust_env=False)
        channel = grpc.aio.insecure_channel(gateway.target)
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)  # type: ignore[no-untyped-call]  # generated
        target = Target(gateway, min(bridges), root, http, channel, stub)
        self.target = target
        await self._prepare(target)
        return target

    async def stop(self, *, kill: bool = False) -> None:
        """SIGTERM and wait (or SIGKILL at once if `kill`: a wedged loop drains nothing)."""
        target, self.target = self.target, None
        if target is None:
            return
        self.hwm_gateway_kib = max(self.hwm_gateway_kib, status_kib(target.gateway.pid, "VmHWM"))
        self.hwm_bridge_kib = max(self.hwm_bridge_kib, status_kib(target.bridge_pid, "VmHWM"))
        await target.http.aclose()
        await target.channel.close(None)
        if target.listener is not None:
            target.listener.close()
        # Its bridge and agents, listed while the gateway still runs (a crashed gateway's bridge
        # is known by pid); whichever the stop leaves behind is killed after it.
        below = process_tree(target.gateway.pid) | {target.bridge_pid}
        below.discard(target.gateway.pid)
        if target.gateway.running():
            await asyncio.to_thread(target.gateway.stop, 0.0 if kill else 10.0)
        for pid in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def restart(self, *, kill: bool = False) -> Target:
        await self.stop(kill=kill)
        return await self.start()

    async def healthy(self) -> bool:
        """REST /health and gRPC Health both answer within HEALTH_DEADLINE_S."""
        target = self.target
        if target is None:
            return False
        try:
            async with asyncio.timeout(HEALTH_DEADLINE_S):
                rest = await target.http.get("/health")
                await target.stub.Health(status_pb2.HealthRequest(), timeout=HEALTH_DEADLINE_S)
        except (TimeoutError, httpx.HTTPError, grpc.aio.AioRpcError):
            return False
        return rest.status_code == 200

    async def run_class(self, name: str, probes: list[Probe], *, settle_s: float = 0.0) -> Tally:
        """Send each probe in turn; then wait `settle_s` (a background loop may act on what was
        sent) and check the gateway still serves."""
        tally = Tally(name)
        started = time.monotonic()
        dead_groups: set[str] = set()
        restarts = 0
        last = "(none)"
        with RssPeaks(self.pids) as peaks:
            for probe in probes:
                if probe.group in dead_groups or restarts > RESTARTS_PER_CLASS:
                    tally.skipped += 1
                    continue
                target = self.target or await self.start()
                detail = await self._send(target, probe)
                tally.record(probe, detail)
                last = probe.name
                exited = target.alive()
                wedged = exited is None and detail == "hang" and not await self.healthy()
                if exited or wedged:
                    if exited:
                        tally.crashes += 1
                        tally.event(f"CRASH noticed after {probe.name}: {exited}; {target.cause()}")
                    else:
                        tally.event(f"WEDGED after {probe.name}: /health unanswered; killed")
                    dead_groups.add(probe.group)
                    restarts += 1
                    await self.restart(kill=True)
            if settle_s:
                await asyncio.sleep(settle_s)
            current = self.target
            if current is not None:
                exited = current.alive()
                if exited:
                    tally.crashes += 1
                    tally.event(
                        f"CRASH after the class (last: {last}): {exited}; {current.cause()}"
                    )
                    await self.restart(kill=True)
                elif not await self.healthy():
                    tally.buckets["hang"] += 1
                    tally.event("hang: /health after the class; killed")
                    await self.restart(kill=True)
            if tally.skipped:
                tally.event(f"skipped {tally.skipped} probes of crashed or wedged groups")
        tally.merge_rss(peaks.gateway_kib, peaks.bridge_kib)
        tally.seconds = time.monotonic() - started
        self.tallies.append(tally)
        return tally

    async def _send(self, target: Target, probe: Probe) -> str:
        deadline = probe.deadline_s or self.deadline_s
        try:
            async with asyncio.timeout(deadline):
                return await probe.send(target)
        except (TimeoutError, Hang):
            return "hang"
        except grpc.aio.AioRpcError as error:
            return f"grpc {error.code().name}"
        except (httpx.TimeoutException, asyncio.IncompleteReadError):
            return "hang"
        except (httpx.TransportError, ConnectionError):
            return "rest none"
