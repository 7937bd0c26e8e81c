"""A run's scratch directory: files codex reads for one run (its output schema, its images),
private to the run and removed when it ends, whatever happens."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from gateway.config import AgentUser

log = logging.getLogger(__name__)

PREFIX = "codex-gateway-run-"


class ScratchClosed(RuntimeError):
    """A write after the run ended (a thread still copying when its run was cancelled)."""


class Scratch:
    """Created on first use (most runs need none), under `root` (default: the system's temp
    directory); `close` removes it. Safe to write from a worker thread while the run's task
    closes it: a write in progress finishes first, a later one raises ScratchClosed, so a run
    cancelled mid-copy leaves nothing behind."""

    def __init__(
        self, run_id: str, user: AgentUser | None = None, root: Path | None = None
    ) -> None:
        self._run_id = run_id
        self._user = user
        self._root = root
        self._path: Path | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        with self._lock:
            return self._ensure()

    def _ensure(self) -> Path:
        if self._closed:
            raise ScratchClosed(f"run {self._run_id} has ended: its scratch directory is gone")
        if self._path is None:
            if self._root is not None:
                self._root.mkdir(parents=True, exist_ok=True)
            # 0700, owned by whoever runs codex: only the run's agent reads what is put here.
            path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{self._run_id[:8]}-", dir=self._root))
            if self._user is not None:
                os.chown(path, self._user.uid, self._user.gid)
            self._path = path
        return self._path

    def write(self, name: str, data: bytes) -> Path:
        """A new file `name` (a plain name, chosen by the gateway) holding `data`."""
        with self._lock:
            target = self._ensure() / name
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with os.fdopen(fd, "wb", closefd=False) as file:
                    file.write(data)
                if self._user is not None:
                    os.fchown(fd, self._user.uid, self._user.gid)
            finally:
                os.close(fd)
            return target

    def close(self) -> None:
        with self._lock:
            self._closed = True
            path, self._path = self._path, None
        if path is None:
            return
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            log.warning("run %s: could not remove its scratch directory %s", self._run_id, path)
