"""`make cluster` (python -m devcluster): a local PostgreSQL and two replicas that see each other;
SIGTERM (or Ctrl-C) stops the replicas and the server and removes their folders."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import alive

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0


def test_the_makefile_target_runs_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^cluster: install\n\t\$\(PY\) -m devcluster \$\(ARGS\)$", makefile, re.M)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_two_replicas_on_a_local_postgres_then_nothing_left(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its replicas' folders: this test's own
    command = subprocess.Popen(
        [sys.executable, "-m", "devcluster", "--rest-port", "0", "--grpc-port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert command.stdout is not None
        for line in command.stdout:
            lines.append(line)
            if line.startswith("cluster: ready"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(READY_TIMEOUT_S):
            raise AssertionError("make cluster did not get ready:\n" + "".join(lines))
        output = "".join(lines)
        rest = dict(re.findall(r"cluster: (replica-\d): REST (http://127\.0\.0\.1:\d+)", output))
        grpc_addrs = dict(re.findall(r"(replica-\d): REST \S+  gRPC (127\.0\.0\.1:\d+)", output))
        assert sorted(rest) == ["replica-1", "replica-2"], output
        server_pid = int(re.findall(r"cluster: PostgreSQL .* pid (\d+)\)", output)[0])
        data = Path(re.findall(r"\(data in (\S+), pid", output)[0])
        replica_logs = [Path(p) for p in re.findall(r"  log (\S+)", output)]
        assert "curl -s " in output
        for replica_id, url in rest.items():
            status = wait_for_both(url)
            assert status["mode"] == "cluster"
            assert status["cluster"]["replica_id"] == replica_id
            listed = {r["replica_id"]: r["grpc_addr"] for r in status["cluster"]["replicas"]}
            assert listed == grpc_addrs
        command.send_signal(stop_signal)
        assert command.wait(timeout=60) == 0, "".join(lines)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
        reader.join(timeout=10)
        if command.stdout is not None:
            command.stdout.close()
    assert "cluster: " + stop_signal.name in "".join(lines)
    assert not alive(server_pid), "PostgreSQL left running"
    assert not data.exists() and not any(log.parent.exists() for log in replica_logs)
    # The replicas were its children (start_new_session: outside the terminal's process group);
    # the autouse fixture `_nothing_left_running` checks none is left.


def wait_for_both(url: str) -> dict[str, object]:
    """/status of a replica, once it lists both replicas (the second may register later)."""
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=url, timeout=5, trust_env=False) as client:
        while True:
            status: dict[str, object] = client.get("/status").json()
            cluster = status.get("cluster")
            if isinstance(cluster, dict) and len(cluster.get("replicas", [])) == 2:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"not both replicas listed: {status}")
            time.sleep(0.1)
