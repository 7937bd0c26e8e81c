"""A run's scratch directory: files codex reads for one run (its output schema, its images),
private to the run and removed when it ends, whatever happens."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from gateway.config import AgentUser

log = logging.getLogger(__name__)


class Scratch:
    """Created on first use (most runs need none); `close` removes it."""

    def __init__(self, run_id: str, user: AgentUser | None = None) -> None:
        self._run_id = run_id
        self._user = user
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            # 0700, owned by whoever runs codex: only the run's agent reads what is put here.
            path = Path(tempfile.mkdtemp(prefix=f"codex-gateway-run-{self._run_id[:8]}-"))
            if self._user is not None:
                os.chown(path, self._user.uid, self._user.gid)
            self._path = path
        return self._path

    def write(self, name: str, data: bytes) -> Path:
        """A new file `name` (a plain name, chosen by the gateway) holding `data`."""
        target = self.path / name
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
        if self._path is None:
            return
        path, self._path = self._path, None
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            log.warning("run %s: could not remove its scratch directory %s", self._run_id, path)
