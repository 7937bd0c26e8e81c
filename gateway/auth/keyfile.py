"""The key file (`CODEX_GATEWAY_API_KEYS_FILE`): read, checked, followed, never half-applied.

JSON, or TOML when the name ends in `.toml`: `{"keys": [...]}` (gateway/auth/keys.py). Read as a
regular file of at most MAX_FILE_BYTES (a FIFO or a device never blocks the reader). The file
is polled (its stat: inode, size, mtime, ctime) every POLL_S in a worker thread and read again
when that changes; the new `KeySet` replaces the old one whole, so a request authenticates
against one complete set. A file that breaks keeps the last good set in force and its error is
shown in `/status` until it reads well again. At startup there is no last good set: a broken
file stops the gateway with the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from gateway import regular_file
from gateway.auth.keys import KeyFileInvalid, KeySet, parse_document
from gateway.clock import Clock, iso, system_clock

log = logging.getLogger(__name__)
MAX_FILE_BYTES: Final = 64 * 1024 * 1024
POLL_S: Final = 1.0
SETTLE_S: Final = 0.1  # a file unchanged this long is written whole
_ERROR_CHARS: Final = 500


@dataclass(frozen=True)
class KeyFileStatus:
    path: str
    keys: int
    loaded_at: str | None  # when the set in force was read
    error: str | None  # why the file on disk is not the set in force


def read_key_set(path: Path, roots: tuple[Path, ...]) -> KeySet:
    """The file's keys; KeyFileInvalid (the reason, never a key's hash) when it cannot be used."""
    try:
        raw = regular_file.read(path, MAX_FILE_BYTES, follow=True)
    except OSError as exc:
        raise KeyFileInvalid(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        document: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KeyFileInvalid(f"{path} is not valid {_format(path)}: {exc}"[:_ERROR_CHARS]) from None
    return parse_document(document, roots=roots)


def _format(path: Path) -> str:
    return "TOML" if path.suffix == ".toml" else "JSON"


def _signature(path: Path) -> tuple[int, ...] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class KeyFile:
    """The keys in force from one file (plus the API token's key, when one is configured)."""

    def __init__(
        self,
        path: Path,
        roots: tuple[Path, ...],
        *,
        token_keys: KeySet | None = None,
        clock: Clock = system_clock,
        poll_s: float = POLL_S,
    ) -> None:
        self.path = path
        self._poll_s = poll_s
        self._roots = roots
        self._token_keys = token_keys
        self._clock = clock
        self._signature = _signature(path)
        self._keys = self._with_token(read_key_set(path, roots))  # startup: errors propagate
        self._loaded_at: datetime | None = clock()
        self._error: str | None = None

    @property
    def keys(self) -> KeySet:
        return self._keys

    def status(self) -> KeyFileStatus:
        return KeyFileStatus(
            str(self.path),
            len(self._keys),
            iso(self._loaded_at) if self._loaded_at else None,
            self._error,
        )

    def _with_token(self, keys: KeySet) -> KeySet:
        return keys if self._token_keys is None else keys.merged(self._token_keys)

    async def reload(self) -> bool:
        """Read the file again (in a worker thread); whether the set in force changed. A file
        that changes while it is read (written in place) is not applied: the next poll reads
        it again, whole."""
        signature = await asyncio.to_thread(_signature, self.path)
        try:
            keys = self._with_token(await asyncio.to_thread(read_key_set, self.path, self._roots))
            if await asyncio.to_thread(_signature, self.path) != signature:
                log.info("API keys: %s changed while it was read; read again", self.path)
                return False
        except KeyFileInvalid as exc:
            if self._error != str(exc):
                log.error("API keys: %s; the last good keys stay in force", exc)
            self._error = str(exc)
            self._signature = signature
            return False
        self._keys, self._signature = keys, signature
        self._loaded_at, self._error = self._clock(), None
        log.info("API keys: %d in force from %s", len(keys), self.path)
        return True

    async def follow(self, stop: asyncio.Event) -> None:
        """Reload whenever the file's stat changes, until `stop`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):  # not wait_for: 3.11's can lose a cancel
                    await stop.wait()
            if stop.is_set():
                return
            if await asyncio.to_thread(_signature, self.path) != self._signature:
                await self._settled(stop)
                await self.reload()

    async def _settled(self, stop: asyncio.Event) -> None:
        """Until the file has not changed for SETTLE_S (a writer writing it in place, piece by
        piece, has finished), or `stop`."""
        before = await asyncio.to_thread(_signature, self.path)
        while not stop.is_set():
            await asyncio.sleep(SETTLE_S)
            now = await asyncio.to_thread(_signature, self.path)
            if now == before:
                return
            before = now
