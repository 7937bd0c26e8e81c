"""The memory attack, on a gateway of its own (so its VmHWM is the attack's): a run printing
`mib_lines` lines of just under 1 MiB (bench/agents/megaline_agent.py) that three followers tail
and never read (two over gRPC, one over REST), started as a gRPC stream that is never read, plus
a REST stream of a second such run never read; then six parallel searches and two session reads
with a huge `tail_lines` over its log. Reported: the peak RSS (VmHWM) of the gateway and of its
REST bridge, and how each of these requests ended.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.hostile.calls import call, rest
from bench.hostile.census import Census, Probe, Tally, Target
from bench.hostile.process import RssPeaks
from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.procfs import status_kib

MEGALINE_AGENT = Path(__file__).resolve().parents[1] / "agents" / "megaline_agent.py"
RUN_WAIT_S = 90.0
SEARCH_DEADLINE_S = 60.0
HUGE_TAIL = 2**31 - 1
_SMALL_RCVBUF = 4096


async def prepare_memory(target: Target) -> None:
    """A session of one short line, for the followers to attach to before the big run."""
    response = await target.http.post(
        "/completion", json={"prompt": "memory", "env": {"FAKE_AGENT_MIB_LINES": "1"}}
    )
    response.raise_for_status()
    target.session_id = response.json()["session_id"]


def _probe(name: str) -> Probe:
    async def unused(_target: Target) -> str:  # the attack sends its own requests
        return "hang"

    return Probe(name, "memory", unused)


async def _stalled_http(target: Target, request: bytes) -> socket.socket:
    """A raw connection that sends `request` and never reads (a tiny receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SMALL_RCVBUF)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", target.gateway.rest_port))
    await loop.sock_sendall(sock, request)
    return sock


def _status_of(sock: socket.socket) -> str:
    """The status of the answer the stalled connection got (read only now), or `rest none`."""
    sock.setblocking(True)
    sock.settimeout(2.0)
    try:
        head = sock.recv(64)
    except OSError:
        return "rest none"
    finally:
        sock.close()
    parts = head.split(b" ", 2)
    return f"rest {int(parts[1])}" if len(parts) > 1 and parts[1].isdigit() else "rest none"


async def _following(tail: Any) -> None:
    """Read a follower's first messages up to its `following` notice, then stop reading."""
    async for message in tail:
        if message.WhichOneof("kind") == "notice" and message.notice.kind == "following":
            return


async def _idle(target: Target) -> bool:
    """Until no run is active (False after RUN_WAIT_S)."""
    deadline = time.monotonic() + RUN_WAIT_S
    while time.monotonic() < deadline:
        status = await target.http.get("/status")
        if status.status_code == 200 and status.json()["concurrency"]["active"] == 0:
            return True
        await asyncio.sleep(0.25)
    return False


async def _ended(rpc: Any) -> str:
    """How a call that was never read stands: its code if it ended, else `grpc OK` (open)."""
    if rpc.done():
        code = await rpc.code()
        return f"grpc {code.name}"
    rpc.cancel()
    return "grpc OK"


async def memory_attack(workdir: Path, mib_lines: int, deadline_s: float) -> Tally:
    census = Census(workdir, MEGALINE_AGENT, deadline_s=deadline_s, prepare=prepare_memory)
    tally = Tally("memory: 1 MiB lines, stalled readers, big searches")
    started = time.monotonic()
    target = await census.start()
    baseline = (status_kib(target.gateway.pid, "VmRSS"), status_kib(target.bridge_pid, "VmRSS"))
    sid = target.session_id
    env = {"FAKE_AGENT_MIB_LINES": str(mib_lines)}
    sockets: list[socket.socket] = []
    calls: list[tuple[str, Any]] = []
    try:
        with RssPeaks(census.pids) as peaks:
            for n in range(2):
                tail = target.stub.TailSession(
                    sessions_pb2.TailSessionRequest(session_id=sid, tail_lines=1, follow=True)
                )
                await asyncio.wait_for(_following(tail), deadline_s)
                calls.append((f"gRPC TailSession follower {n + 1}, never read", tail))
            follow = (
                f"GET /sessions/{sid}/tail?follow=true&tail_lines=1 HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{target.gateway.rest_port}\r\n\r\n"
            )
            sockets.append(await _stalled_http(target, follow.encode()))
            await asyncio.sleep(0.5)  # the REST follower attaches
            stream = target.stub.StreamCompletion(
                runs_pb2.StreamCompletionRequest(
                    run=runs_pb2.RunInput(prompt="memory", session_id=sid, env=env)
                )
            )
            await asyncio.wait_for(stream.read(), deadline_s)  # started; never read again
            calls.append(("gRPC StreamCompletion, never read", stream))
            body = json.dumps({"prompt": "memory 2", "env": env}).encode()
            post = (
                "POST /completion/stream HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{target.gateway.rest_port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            sockets.append(await _stalled_http(target, post))
            finished = await _idle(target)
            if not finished:
                tally.buckets["hang"] += 1
                tally.event(f"hang: the runs did not finish within {RUN_WAIT_S:.0f} s")
            outcomes = [(name, await _ended(rpc)) for name, rpc in calls]
            outcomes.append(("REST tail follower, never read", _status_of(sockets[0])))
            outcomes.append(("REST POST /completion/stream, never read", _status_of(sockets[1])))
            outcomes += await _searches(target, sid)
            exited = target.alive()
        for name, detail in outcomes:
            tally.record(_probe(name), detail)
        if exited:
            tally.crashes += 1
            tally.event(f"CRASH: {exited}; {target.cause()}")
        hwm = (status_kib(target.gateway.pid, "VmHWM"), status_kib(target.bridge_pid, "VmHWM"))
        tally.merge_rss(max(hwm[0], peaks.gateway_kib), max(hwm[1], peaks.bridge_kib))
        tally.event(
            f"{mib_lines} lines of ~1 MiB per run; RSS before the attack: gateway "
            f"{baseline[0] / 1024:.0f} MiB, bridge {baseline[1] / 1024:.0f} MiB"
        )
    finally:
        for sock in sockets:
            sock.close()
        for _, rpc in calls:
            rpc.cancel()
        await census.stop()
    tally.seconds = time.monotonic() - started
    return tally


async def _searches(target: Target, sid: str) -> list[tuple[str, str]]:
    """Six parallel searches (three per protocol) and a session read per protocol, each with a
    huge `tail_lines`, over the log the runs wrote."""
    params = {"q": "needle", "tail_lines": str(HUGE_TAIL)}
    request = sessions_pb2.SearchSessionRequest(session_id=sid, q="needle", tail_lines=HUGE_TAIL)
    jobs: list[tuple[str, Any]] = []
    for n in range(3):
        jobs.append(
            (
                f"REST search {n + 1}, tail_lines=2^31-1",
                rest(target, "GET", f"/sessions/{sid}/search", params=params),
            )
        )
        jobs.append(
            (
                f"gRPC SearchSession {n + 1}, tail_lines=2^31-1",
                call(target, "SearchSession", request, deadline_s=SEARCH_DEADLINE_S),
            )
        )
    jobs.append(
        (
            "REST GET session, tail_lines=100000",
            rest(target, "GET", f"/sessions/{sid}", params={"tail_lines": "100000"}),
        )
    )
    jobs.append(
        (
            "gRPC GetSession, tail_lines=100000",
            call(
                target,
                "GetSession",
                sessions_pb2.GetSessionRequest(session_id=sid, tail_lines=100000),
                deadline_s=SEARCH_DEADLINE_S,
            ),
        )
    )

    async def bounded(job: Any) -> str:
        try:
            async with asyncio.timeout(SEARCH_DEADLINE_S):
                result: str = await job
                return result
        except TimeoutError:
            return "hang"
        except grpc.aio.AioRpcError as error:
            return f"grpc {error.code().name}"
        except httpx.TimeoutException:
            return "hang"
        except (httpx.TransportError, OSError):
            return "rest none"

    answers = await asyncio.gather(*(bounded(job) for _, job in jobs))
    return [(name, answer) for (name, _), answer in zip(jobs, answers, strict=True)]
