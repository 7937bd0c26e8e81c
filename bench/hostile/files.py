"""Files that are not trigger files: a FIFO, a unix socket, a symlink out of the roots, a device,
a directory, a 100 MB sparse file and paths of 2,000 components, all inside the gateway's trigger
root (so they pass confinement) and named by `?trigger_file=` over REST and gRPC; then a FIFO and
a huge file dropped in a watched folder."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.hostile.calls import DAILY, grpc_probe, rest, rest_probe, value
from bench.hostile.census import Probe, Target
from codex_gateway.v1 import triggers_pb2

HUGE_BYTES = 100 * 1024 * 1024
DEEP = 2_000
WATCH_SETTLE_S = 1.5
"""The census's gateway polls its watch folder every 200 ms and debounces 200 ms."""


def make_hostile_files(target: Target) -> None:
    """The files, in the trigger root of a freshly started gateway."""
    root = target.trigger_root
    root.mkdir(parents=True, exist_ok=True)
    os.mkfifo(root / "fifo.json")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(root / "socket.json"))
    listener.listen(1)
    target.listener = listener
    (root / "passwd.json").symlink_to("/etc/passwd")
    (root / "zero.json").symlink_to("/dev/zero")
    (root / "directory.json").mkdir()
    with (root / "huge.json").open("wb") as huge:
        huge.truncate(HUGE_BYTES)


def file_names() -> list[tuple[str, str]]:
    """(label, trigger_file) pairs; relative names resolve in the trigger root."""
    deep_dots = "/".join(["."] * DEEP) + "/deep.json"
    deep_dirs = "/".join(["d"] * DEEP) + "/deep.json"
    return [
        ("fifo", "fifo.json"),
        ("socket", "socket.json"),
        ("symlink out", "passwd.json"),
        ("symlink to /dev/zero", "zero.json"),
        ("/dev/zero", "/dev/zero"),
        ("directory", "directory.json"),
        ("100MB sparse", "huge.json"),
        ("2000 x ./", deep_dots),
        ("2000 dirs", deep_dirs),
    ]


def file_probes(reduced: bool) -> list[Probe]:
    probes: list[Probe] = []
    body = {"id": "census-file", "prompt_text": "f", "schedule": DAILY}
    names = file_names()
    if reduced:
        names = [names[i] for i in (0, 1, 2, 6, 8)]
    for label, name in names:
        params = {"trigger_file": name}
        rest_ops: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/triggers", {}),
            ("GET", "/triggers/census", {}),
            ("POST", "/triggers", {"json": body}),
            ("PATCH", "/triggers/census", {"json": {"enabled": False}}),
            ("DELETE", "/triggers/census", {}),
        ]
        if reduced:
            rest_ops = rest_ops[:1] + rest_ops[2:3]
        for method, path, kwargs in rest_ops:
            probes.append(rest_probe(f"{label}/rest", method, path, label, params=params, **kwargs))
        grpc_ops = [
            ("ListTriggers", triggers_pb2.ListTriggersRequest(trigger_file=name)),
            (
                "GetTrigger",
                triggers_pb2.GetTriggerRequest(trigger_id="census", trigger_file=name),
            ),
            (
                "CreateTriggers",
                triggers_pb2.CreateTriggersRequest(trigger_file=name, triggers=value(body)),
            ),
            (
                "UpdateTrigger",
                triggers_pb2.UpdateTriggerRequest(trigger_id="census", trigger_file=name),
            ),
            (
                "DeleteTrigger",
                triggers_pb2.DeleteTriggerRequest(trigger_id="census", trigger_file=name),
            ),
        ]
        if reduced:
            grpc_ops = grpc_ops[:1] + grpc_ops[2:3]
        for method, build in grpc_ops:
            probes.append(grpc_probe(label, f"{label}/grpc", method, build))
    watched = [("watch: FIFO", _fifo), ("watch: 100MB sparse", _huge), ("watch: socket", _socket)]
    for label, make in watched[:2] if reduced else watched:
        probes.append(Probe(label, label, _watch(make)))
    return probes


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _huge(path: Path) -> None:
    with path.open("wb") as huge:
        huge.truncate(HUGE_BYTES)


def _socket(path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the file stays; connecting to it is refused


def _watch(make: Callable[[Path], None]) -> Callable[[Target], Awaitable[str]]:
    """Create a file in the watched folder, give the watcher time to act, then ask /health."""

    async def send(target: Target) -> str:
        make(target.watch_dir / f"census-{make.__name__.strip('_')}.txt")
        await asyncio.sleep(WATCH_SETTLE_S)  # the watcher sees it and acts
        return await rest(target, "GET", "/health")

    return send
