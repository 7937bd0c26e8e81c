"""One census: the gateway it starts, the classes in order, the memory attack last."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.hostile.calls import DAILY
from bench.hostile.census import Census, Probe, Tally, Target
from bench.hostile.files import file_probes, make_hostile_files
from bench.hostile.images import image_probes, make_hostile_images
from bench.hostile.inputs import echo_probes, number_probes, timestamp_probes
from bench.hostile.memory import memory_attack
from bench.hostile.wire import content_probes, grpc_probes
from tests.fakes import AGENTS_DIR

ECHO_AGENT = AGENTS_DIR / "echo_agent.py"
TRIGGER_SETTLE_S = 2.5
"""After the timestamp class: the scheduler reloads a changed trigger file within about two
seconds (debounce, then its next tick), and a bad date used to kill it there."""

CLASSES: list[tuple[str, Callable[[bool], list[Probe]], float]] = [
    ("timestamps at the range edges", timestamp_probes, TRIGGER_SETTLE_S),
    ("echoed inputs at 20 KB", echo_probes, 0.0),
    ("numbers: 400 digits, NaN, extremes", number_probes, 0.0),
    ("files: FIFO, socket, symlink, device, huge", file_probes, 0.0),
    ("content types, bodies, hosts", content_probes, 0.0),
    ("gRPC: undecodable, NaN Struct, 20 KB strings", grpc_probes, 0.0),
    ("images: not base64, not images, paths out, FIFO, thousands", image_probes, 0.0),
]


async def prepare(target: Target) -> None:
    """What the probes name: a session (one echo run), the trigger `census`, hostile files."""
    run = await target.http.post("/completion", json={"prompt": "census"})
    run.raise_for_status()
    target.session_id = run.json()["session_id"]
    created = await target.http.post(
        "/triggers", json={"id": "census", "prompt_text": "census", "schedule": DAILY}
    )
    created.raise_for_status()
    make_hostile_files(target)
    make_hostile_images(target)


async def run_census(
    workdir: Path,
    *,
    reduced: bool,
    deadline_s: float,
    mib_lines: int,
    only: set[str] | None = None,
) -> tuple[list[Tally], Census]:
    """Every class (or those whose name starts with one of `only`), then the memory attack."""
    census = Census(workdir / "inputs", ECHO_AGENT, deadline_s=deadline_s, prepare=prepare)
    prefixes = {o.lower() for o in only or ()}
    wanted = [c for c in CLASSES if not only or any(c[0].lower().startswith(o) for o in prefixes)]
    try:
        if wanted:
            await census.start()
        for name, probes, settle_s in wanted:
            await census.run_class(name, probes(reduced), settle_s=settle_s)
    finally:
        await census.stop()
    tallies = list(census.tallies)
    if not only or any("memory".startswith(o) for o in prefixes):
        tallies.append(await memory_attack(workdir / "memory", mib_lines, deadline_s))
    return tallies, census
