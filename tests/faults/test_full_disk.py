"""A full disk under the session root: runs fail with a clear 5xx naming the cause (never a hang
or a crash), the meta.json of existing sessions stays the valid file it was, the gateway stays
healthy, and once space is back new runs and continued sessions work again.

The session root is a 2 MiB tmpfs mounted for the test (the suite runs as root, as CI does), so
writes fail with a real ENOSPC, and is unmounted afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.spawned import agents_of, gateway_env, running, session_metas


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str = "2m") -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the suite needs root, as CI has): {mounted.stderr}")
    try:
        yield directory
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(directory)], check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; the file, to free the space again."""
    filler = directory / ".filler"
    piece = b"\0" * 65536
    with filler.open("wb") as handle:
        for _ in range(1024):  # 64 MiB at most, far more than the mount holds
            try:
                handle.write(piece)
                handle.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        else:
            raise AssertionError("the filesystem never filled up")
    with contextlib.suppress(OSError):  # the last partial page, if any
        (directory / ".filler-2").write_bytes(b"\0" * 4096)
    return filler


async def test_a_full_session_disk_fails_runs_clearly_and_recovers(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, "echo_agent.py", CODEX_GATEWAY_MAX_CONCURRENT="4")
    with small_tmpfs(tmp_path / "sessions") as sessions:
        async with (
            running(env, tmp_path) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client,
        ):
            existing = []
            for n in range(2):
                done = await client.post("/completion", json={"prompt": f"before {n}"})
                assert done.status_code == 200, done.text
                existing.append(done.json()["session_id"])
            before = {
                sid: (sessions / f"session-{sid}" / "meta.json").read_text() for sid in existing
            }

            filler = fill(sessions)
            for method, path, body in [
                ("POST", "/completion", {"prompt": "no room"}),
                ("POST", f"/sessions/{existing[0]}/prompt", {"prompt": "no room"}),
                ("POST", "/completion/stream", {"prompt": "no room"}),
            ]:
                started = time.monotonic()
                response = await client.request(method, path, json=body)
                elapsed = time.monotonic() - started
                assert elapsed < 10, f"{path} took {elapsed:.1f}s"
                text = response.text
                if path.endswith("/stream") and response.status_code == 200:
                    text = text.strip().splitlines()[-1]  # a stream that began ends in its error
                    assert "error" in json.loads(text), text
                else:
                    assert 500 <= response.status_code < 600, text
                assert "No space left on device" in text, text

            for sid, meta in before.items():  # untouched, not half-written
                assert (sessions / f"session-{sid}" / "meta.json").read_text() == meta
            assert not list(sessions.glob("session-*/.meta.json.*.tmp"))
            # A session whose first write failed never existed: no directory, staged or not.
            assert sorted(p.name for p in sessions.iterdir() if "session-" in p.name) == sorted(
                f"session-{sid}" for sid in existing
            )
            assert (await client.get("/health")).json() == {"status": "ok"}
            assert (await client.get("/status")).json()["concurrency"]["active"] == 0
            listed = await client.get("/sessions")
            assert listed.status_code == 200
            assert {s["session_id"] for s in listed.json()} == set(existing)
            assert (await client.get(f"/sessions/{existing[1]}")).status_code == 200
            assert agents_of(gateway.pid, "echo_agent") == set()

            filler.unlink()
            for leftover in sessions.glob(".filler-*"):
                leftover.unlink()
            again = await client.post("/completion", json={"prompt": "room again"})
            assert again.status_code == 200, again.text
            resumed = await client.post(
                f"/sessions/{existing[0]}/prompt", json={"prompt": "room again"}
            )
            assert resumed.status_code == 200, resumed.text
        healthy = {*existing, again.json()["session_id"]}
        metas = session_metas(sessions)
        assert set(metas) == healthy
        assert all(metas[sid]["status"] == "completed" for sid in healthy)
        # Everything reads back after a restart, and nothing is unreadable.
        async with (
            running(env, tmp_path) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client,
        ):
            listed = {s["session_id"]: s["status"] for s in (await client.get("/sessions")).json()}
            assert {sid: listed[sid] for sid in healthy} == dict.fromkeys(healthy, "completed")
            assert listed == dict.fromkeys(healthy, "completed")
            detail = (await client.get(f"/sessions/{existing[0]}")).json()
            history = detail["run_history"]
            assert [run["status"] for run in history] == ["completed", "error", "completed"]
            assert "No space left on device" in history[1]["error"]
