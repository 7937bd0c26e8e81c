"""A `GET /health` prober in a process of its own, so the benchmark client's load cannot delay it.

    python -m bench.probe http://127.0.0.1:PORT --interval-ms 10

Probes on one keep-alive connection (`http.client`: no event loop, little CPU), pausing
`interval-ms` after each answer. Prints `ready` once the first probe answered, then probes until
its stdin reaches EOF, then prints one JSON object: `samples` as [monotonic start ns, latency ns]
pairs (CLOCK_MONOTONIC, the same clock as the parent's `time.monotonic_ns()`, so the parent can cut
the samples to the window it cares about) and `timeouts`. A probe that times out counts as the
timeout (a lower bound) and the connection is opened again.

`Prober` is the parent's side: start it, `mark()` windows, `stop()` to collect.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from bench import PYTHONPATH

TIMEOUT_S = 10.0


def _connection(url: str) -> http.client.HTTPConnection:
    parsed = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(
        parsed.hostname or "127.0.0.1", parsed.port, timeout=TIMEOUT_S
    )


def _probe(connection: http.client.HTTPConnection) -> None:
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"GET /health: {response.status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe")
    parser.add_argument("url")
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    connection = _connection(args.url)
    samples: list[tuple[int, int]] = []
    timeouts = 0
    first = True
    while not stop.is_set():
        start_mono = time.monotonic_ns()
        start = time.perf_counter_ns()
        try:
            _probe(connection)
            elapsed = time.perf_counter_ns() - start
        except (TimeoutError, OSError, http.client.HTTPException):
            timeouts += 1
            elapsed = int(TIMEOUT_S * 1e9)
            connection.close()
            connection = _connection(args.url)
        samples.append((start_mono, elapsed))
        if first:
            print("ready", flush=True)
            first = False
        stop.wait(args.interval_ms / 1000)
    print(json.dumps({"samples": samples, "timeouts": timeouts}), flush=True)
    return 0


@dataclass
class ProbeRun:
    """What a prober collected: every sample, and the windows the parent marked."""

    samples: list[tuple[int, int]]
    timeouts: int
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)

    def latencies(self, window: str) -> list[int]:
        """The latencies of the probes that started inside the named window."""
        low, high = self.windows[window]
        return [latency for start, latency in self.samples if low <= start <= high]

    def slowest(self, windows: list[str], count: int = 5) -> list[tuple[str, float, float]]:
        """The slowest probes of those windows: (window, seconds into it, latency ms)."""
        found = []
        for window in windows:
            low, high = self.windows[window]
            found += [
                (window, round((start - low) / 1e9, 2), round(latency / 1e6, 1))
                for start, latency in self.samples
                if low <= start <= high
            ]
        return sorted(found, key=lambda entry: -entry[2])[:count]


class Prober:
    """The probe process, seen from the benchmark: `async with Prober(url) as prober`, then
    `prober.begin(name)` / `prober.end(name)` around each phase, then `await prober.stop()`."""

    def __init__(self, url: str, interval_ms: float) -> None:
        self._url = url
        self._interval_ms = interval_ms
        self._process: asyncio.subprocess.Process | None = None
        self._starts: dict[str, int] = {}
        self.windows: dict[str, tuple[int, int]] = {}

    async def __aenter__(self) -> Prober:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.probe",
            self._url,
            "--interval-ms",
            str(self._interval_ms),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
            # A client of its own, as on another machine: its own session is its own
            # scheduling group (autogroup), not a share of the load generator's.
            start_new_session=True,
        )
        assert self._process.stdout is not None  # noqa: S101  # piped above
        line = await asyncio.wait_for(self._process.stdout.readline(), 30)
        if line.strip() != b"ready":
            await self._kill()
            raise RuntimeError(f"the probe process did not start: {line!r}")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._kill()

    @property
    def pid(self) -> int:
        return self._process.pid if self._process is not None else 0

    async def _kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    def begin(self, name: str) -> None:
        self._starts[name] = time.monotonic_ns()

    def end(self, name: str) -> None:
        self.windows[name] = (self._starts.pop(name), time.monotonic_ns())

    async def stop(self) -> ProbeRun:
        """Tell the probe process to finish, and read what it measured."""
        process = self._process
        assert process is not None and process.stdin is not None  # noqa: S101  # __aenter__
        assert process.stdout is not None  # noqa: S101  # piped
        process.stdin.close()
        data = await asyncio.wait_for(process.stdout.read(), TIMEOUT_S + 10)
        await process.wait()
        report = json.loads(data)
        return ProbeRun(
            [(int(a), int(b)) for a, b in report["samples"]], int(report["timeouts"]), self.windows
        )


if __name__ == "__main__":
    sys.exit(main())
