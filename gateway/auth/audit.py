"""The audit log: one JSON line per mutating call (who, what, when, with what result), in a file
rotated by size.

Lines are queued on the caller's thread (the event loop: no disk I/O there) and written by a
listener thread through the standard library's `RotatingFileHandler`: at `max_bytes` the file
becomes `<file>.1`, the older ones shift up, and only `backups` of them are kept. The file is
created readable by its owner only. A record holds names and ids, never a key, a token, a prompt
or a body.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from gateway.clock import now_iso

DEFAULT_MAX_BYTES: Final = 10 * 1024 * 1024
DEFAULT_BACKUPS: Final = 5
_FIELD_CHARS: Final = 200


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """Every file it opens, the rotated-in ones too, is created owner-only, whatever the umask."""

    def _open(self) -> Any:
        fd = os.open(
            self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600
        )
        return os.fdopen(fd, "a", encoding=self.encoding)


class AuditLog:
    def __init__(
        self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _PrivateRotatingFile(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._file.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._logger = logging.Logger(f"codex_gateway.audit.{id(self)}")  # not in the tree
        self._logger.addHandler(logging.handlers.QueueHandler(self._queue))
        self._listener = logging.handlers.QueueListener(self._queue, self._file)
        self._listener.start()

    def record(
        self,
        *,
        key: str,
        tenant: str,
        method: str,
        code: str,
        request_id: str | None = None,
        target: Mapping[str, str | None] | None = None,
    ) -> None:
        """One call: `key` (its name), `tenant`, the RPC `method`, its gRPC status `code`, and
        the ids it touched (`target`: session_id, run_id, trigger_id)."""
        line: dict[str, Any] = {
            "time": now_iso(),
            "key": key[:_FIELD_CHARS],
            "tenant": tenant[:_FIELD_CHARS],
            "method": method[:_FIELD_CHARS],
            "code": code,
        }
        if request_id is not None:
            line["request_id"] = request_id[:_FIELD_CHARS]
        for name, value in (target or {}).items():
            if value:
                line[name] = str(value)[:_FIELD_CHARS]
        self._logger.info(json.dumps(line, separators=(",", ":")))

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._listener.stop()
        self._file.close()
