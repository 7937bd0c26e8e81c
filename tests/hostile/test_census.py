"""The hostile census, reduced (a few inputs per class, 8 MiB lines in the memory attack): no
class of hostile input gets a 5xx (INTERNAL, UNKNOWN), crashes the gateway or its bridge, or
leaves a request unanswered within 10 s. `make hostile` runs the full census and prints its table
(bench/hostile/)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.hostile.census import Tally, bucket_of
from bench.hostile.memory import MEGALINE_AGENT
from bench.hostile.run import CLASSES, run_census
from bench.hostile.table import render

CLASS_IDS = {
    "timestamps": CLASSES[0][0],
    "echoes": CLASSES[1][0],
    "numbers": CLASSES[2][0],
    "files": CLASSES[3][0],
    "content-hosts": CLASSES[4][0],
    "grpc-wire": CLASSES[5][0],
    "images": CLASSES[6][0],
    "memory": "memory",
}


@pytest.fixture(scope="module")
def census(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tally]:
    """One reduced census for the module: its tallies by class name (the table is printed, so a
    failure's output shows every class)."""
    workdir = tmp_path_factory.mktemp("census")
    tallies, runner = asyncio.run(run_census(workdir, reduced=True, deadline_s=10.0, mib_lines=8))
    print(render(tallies, (runner.hwm_gateway_kib, runner.hwm_bridge_kib)))
    return {tally.name: tally for tally in tallies}


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", list(CLASS_IDS.values()), ids=list(CLASS_IDS))
def test_no_hostile_input_gets_a_5xx_a_crash_or_a_hang(census: dict[str, Tally], name: str) -> None:
    tally = next(t for n, t in census.items() if n.startswith(name))
    assert tally.tried > 0
    found = {
        "5xx": tally.buckets["5xx"],
        "crashes": tally.crashes,
        "hangs": tally.buckets["hang"],
    }
    assert found == {"5xx": 0, "crashes": 0, "hangs": 0}, "\n".join(
        [f"{tally.name}: {dict(tally.details)}", *tally.notable, *tally.events]
    )


@pytest.mark.parametrize(
    ("detail", "bucket"),
    [
        pytest.param("rest 200", "ok", id="200"),
        pytest.param("rest 404", "client", id="404"),
        pytest.param("rest 408", "client", id="408-run-timeout"),
        pytest.param("rest 415", "client", id="415"),
        pytest.param("rest 429", "429", id="429"),
        pytest.param("rest 500", "5xx", id="500"),
        pytest.param("rest 503", "5xx", id="503"),
        pytest.param("rest none", "none", id="closed"),
        pytest.param("grpc OK", "ok", id="OK"),
        pytest.param("grpc INVALID_ARGUMENT", "client", id="INVALID_ARGUMENT"),
        pytest.param("grpc DEADLINE_EXCEEDED", "client", id="server-deadline"),
        pytest.param("grpc RESOURCE_EXHAUSTED", "429", id="RESOURCE_EXHAUSTED"),
        pytest.param("grpc INTERNAL", "5xx", id="INTERNAL"),
        pytest.param("grpc UNKNOWN", "5xx", id="UNKNOWN"),
        pytest.param("grpc DATA_LOSS", "5xx", id="DATA_LOSS"),
        pytest.param("grpc UNAVAILABLE", "none", id="UNAVAILABLE"),
        pytest.param("hang", "hang", id="hang"),
    ],
)
def test_the_census_files_each_answer_in_its_status_class(detail: str, bucket: str) -> None:
    assert bucket_of(detail) == bucket


def test_the_megaline_agent_prints_lines_just_under_a_mib(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(MEGALINE_AGENT), "exec", "--json", "-"],
        input=b"go",
        capture_output=True,
        env={"FAKE_AGENT_MIB_LINES": "3", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=True,
        timeout=30,
    )
    lines = done.stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events] == ["thread.started", "turn.started"] + [
        "item.completed"
    ] * 3 + ["turn.completed"]
    big = lines[2:5]
    assert all(1024 * 1024 - 512 < len(line) < 1024 * 1024 for line in big)
    assert "needle" in events[4]["item"]["text"] and "needle" not in events[3]["item"]["text"]
