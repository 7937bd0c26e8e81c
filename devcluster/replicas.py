"""Gateway replicas as local processes (`python -m gateway serve`) on loopback ports, each in a
folder of its own (sessions, secure sessions, triggers, workspace), all on one database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

STOP_TIMEOUT_S = 20.0


@dataclass
class LocalReplica:
    replica_id: str
    root: Path
    rest_port: int
    grpc_port: int
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.root / "gateway.log"

    def environment(self, database_url: str, token: str, lease_ms: int) -> dict[str, str]:
        """This process's environment, with this replica's folders, ports and cluster variables
        (its own `env` last: what the caller set wins)."""
        workspace = self.root / "workspace"
        workspace.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            # the default sessions, secure sessions and triggers: this replica's own folder
            "XDG_STATE_HOME": str(self.root / "state"),
            "CODEX_GATEWAY_DEFAULT_WORKSPACE": str(workspace),
            "CODEX_GATEWAY_BIND": "127.0.0.1",
            "CODEX_GATEWAY_PORT": str(self.rest_port),
            "CODEX_GATEWAY_GRPC_PORT": str(self.grpc_port),
            "CODEX_GATEWAY_DATABASE_URL": database_url,
            "CODEX_GATEWAY_REPLICA_ID": self.replica_id,
            "CODEX_GATEWAY_ADVERTISE_ADDR": self.target,
            "CODEX_GATEWAY_CLUSTER_TOKEN": token,
            "CODEX_GATEWAY_REPLICA_LEASE_MS": str(lease_ms),
            **self.env,
        }

    def start(self, database_url: str, token: str, lease_ms: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # this interpreter, a fixed argv
                [sys.executable, "-m", "gateway", "serve"],
                env=self.environment(database_url, token, lease_ms),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                # not in the terminal's process group: a Ctrl-C is ours to pass on, in order
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:  # noqa: S310  # http on loopback
                return int(answer.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout_s: float) -> None:
        """Until its /health answers; RuntimeError with its log's tail if it exits first."""
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if not self.running() or time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.replica_id} did not come up:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM (the gateway drains), SIGKILL after STOP_TIMEOUT_S; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
