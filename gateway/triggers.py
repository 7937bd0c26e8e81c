"""Trigger files: reading, normalising, validating, and writing them safely.

A trigger file is a JSON object whose `triggers` key holds an array (a bare array is read too);
other top-level keys and unknown trigger fields are preserved on rewrite, so the reference's Python
tools keep working. Every write is a read-modify-write under a lock (an asyncio lock in this
process, an flock beside the file for other processes) and lands atomically (temp file + rename):
API writes and scheduler writes never lose each other's updates, and a reader never sees half a
file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.childenv import check_request_env
from gateway.config import TriggerConfig
from gateway.errors import InvalidRequest, StorageFailed, TriggerNotFound, quote
from gateway.schedule import Schedule, ScheduleError, describe, next_fire, parse_schedule
from gateway.sessions import now_iso
from gateway.workspace import confine

# Fields the gateway owns, in the reference's order; anything else in an entry is kept as is.
_STATE_FIELDS = ("last_fired", "gateway_session_id", "last_status", "last_error", "last_attempt_at")
MAX_TRIGGERS_PER_FILE = 10_000


@dataclass
class Trigger:
    """A normalised trigger and its parsed schedule."""

    entry: dict[str, Any]
    schedule: Schedule

    @property
    def id(self) -> str:
        return str(self.entry["id"])

    @property
    def enabled(self) -> bool:
        return bool(self.entry["enabled"])

    def next_fire(self, now: datetime) -> datetime | None:
        if not self.enabled:
            return None
        if self.schedule.mode == "once" and self.entry.get("last_attempt_at"):
            return None  # a one-shot is attempted once, whatever came of it
        return next_fire(
            self.schedule,
            now=now,
            last_fired=_instant(self.entry.get("last_fired")),
            created_at=_instant(self.entry.get("created_at")),
        )


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalise(raw: object, *, where: str = "", now: str | None = None) -> Trigger:
    """Validate one trigger payload; errors name the field (prefixed by `where`)."""

    def fail(name: str, message: str) -> InvalidRequest:
        return InvalidRequest(message, field=f"{where}{name}")

    if not isinstance(raw, Mapping):
        raise fail("trigger", f"{where or 'trigger'} must be a JSON object")
    entry: dict[str, Any] = dict(raw)
    identifier = entry.get("id") or entry.get("trigger_id") or str(uuid.uuid4())
    if not isinstance(identifier, str | int) or isinstance(identifier, bool):
        raise fail("id", "id must be a string")
    identifier = str(identifier).strip()
    if not identifier or len(identifier) > 200 or any(ord(c) < 32 for c in identifier):
        raise fail("id", "id must be 1-200 printable characters")
    prompt = entry.get("prompt_text")
    if not (isinstance(prompt, str) and prompt.strip()):
        fallback = entry.get("prompt")
        prompt = fallback if isinstance(fallback, str) else ""
    if not prompt.strip():
        raise fail("prompt_text", f"Trigger {identifier} missing prompt_text")
    try:
        schedule = parse_schedule(entry.get("schedule"))
    except ScheduleError as exc:
        raise fail(exc.field, f"{where}{exc.field}: {exc}") from None
    title = entry.get("title")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail("enabled", "enabled must be true or false")
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise fail("tags", "tags must be an array of strings")
    env = entry.get("env")
    if env is not None:
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise fail("env", "env must be an object of strings")
        try:
            check_request_env(env)
        except InvalidRequest as exc:
            raise fail("env", exc.message) from None
    cwd = entry.get("cwd") or entry.get("workspace")
    if cwd is not None and not isinstance(cwd, str):
        raise fail("cwd", "cwd must be a string")
    timeout = entry.get("timeout_ms") or entry.get("max_duration_ms")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)):
        raise fail("timeout_ms", "timeout_ms must be a whole number of milliseconds")
    system_prompt = entry.get("system_prompt", "")
    if not isinstance(system_prompt, str):
        raise fail("system_prompt", "system_prompt must be a string")
    normal: dict[str, Any] = {
        "id": identifier,
        "title": title.strip() if isinstance(title, str) and title.strip() else identifier,
        "description": entry.get("description")
        if isinstance(entry.get("description"), str)
        else "",
        "schedule": {**entry["schedule"], **describe(schedule)},
        "prompt_text": prompt,
        "created_at": entry.get("created_at")
        if isinstance(entry.get("created_at"), str)
        else (now or now_iso()),
        "enabled": enabled,
        "tags": tags,
        "system_prompt": system_prompt,
        "env": env,
        "cwd": cwd.strip() if isinstance(cwd, str) and cwd.strip() else None,
        "timeout_ms": timeout,
        "overdue": bool(entry.get("overdue", False)),
    }
    for name in _STATE_FIELDS:
        value = entry.get(name)
        normal[name] = value if isinstance(value, str) and value else None
    entry.pop("trigger_id", None)
    entry.pop("prompt", None)
    entry.pop("workspace", None)
    entry.pop("max_duration_ms", None)
    entry.update(normal)
    return Trigger(entry, schedule)


@dataclass
class TriggerDocument:
    """A trigger file's JSON object; `triggers` is the list of raw entries as stored."""

    data: dict[str, Any] = field(default_factory=dict)

    @property
    def entries(self) -> list[Any]:
        value = self.data.setdefault("triggers", [])
        if not isinstance(value, list):
            raise StorageFailed("the trigger file's `triggers` is not an array")
        return value

    def index(self, trigger_id: str) -> int | None:
        for i, entry in enumerate(self.entries):
            if (
                isinstance(entry, dict)
                and str(entry.get("id") or entry.get("trigger_id")) == trigger_id
            ):
                return i
        return None


class TriggerFileError(Exception):
    """A trigger file that exists but cannot be used (invalid JSON, wrong shape)."""


def read_document(path: Path) -> TriggerDocument:
    """The file's document; a missing file is an empty one. Raises TriggerFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return TriggerDocument({"version": 1, "triggers": []})
    except OSError as exc:
        raise TriggerFileError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if text.strip() else {"triggers": []}
    except ValueError as exc:
        raise TriggerFileError(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(data, list):
        data = {"version": 1, "triggers": data}
    if not isinstance(data, dict) or not isinstance(data.get("triggers", []), list):
        raise TriggerFileError(f"{path} must hold an object with a `triggers` array")
    return TriggerDocument(data)


def parse_entries(document: TriggerDocument) -> tuple[list[Trigger], list[str]]:
    """Every valid trigger of the document, and a message for each invalid one."""
    triggers: list[Trigger] = []
    problems: list[str] = []
    for i, entry in enumerate(document.entries):
        try:
            triggers.append(normalise(entry, where=f"triggers[{i}]."))
        except InvalidRequest as exc:
            problems.append(exc.message)
    return triggers, problems


class TriggerFiles:
    """Where trigger files may live, and locked, atomic edits of them."""

    def __init__(self, config: TriggerConfig) -> None:
        self._config = config
        self._locks: dict[Path, asyncio.Lock] = {}

    def resolve(self, raw: str | None) -> Path:
        """The trigger file named by a request (default: the configured one), confined to the
        trigger roots; a path outside them is refused and nothing is created."""
        if raw is None or not raw.strip():
            return self._config.default_file
        if "\0" in raw:
            raise InvalidRequest("trigger_file contains a NUL byte", field="trigger_file")
        shown = raw.strip()
        path = confine(
            self._config.default_file.parent / shown,
            self._config.roots,
            shown=shown,
            field="trigger_file",
            where="trigger ",
        )
        try:
            usable = not path.is_dir()
        except (OSError, ValueError):  # a name over NAME_MAX, say
            usable = False
        if not usable:
            raise InvalidRequest(
                f"trigger_file is not a usable file name: {quote(shown)}", field="trigger_file"
            )
        return path

    def scheduled_files(self) -> list[Path]:
        """The default file, the extra ones, and discovered `<sessions>/*/triggers.json`."""
        files = [self._config.default_file, *self._config.extra_files]
        directory = self._config.discovery_dir
        if directory is not None and directory.is_dir():
            files += sorted(p.resolve() for p in directory.glob("*/triggers.json"))
        return list(dict.fromkeys(files))

    @contextlib.asynccontextmanager
    async def edit(self, path: Path) -> AsyncIterator[TriggerDocument]:
        """Read-modify-write under both locks; the document is written back atomically when the
        block exits without an exception."""
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock, _file_lock(path):
            try:
                document = read_document(path)
            except TriggerFileError as exc:
                raise InvalidRequest(
                    f"cannot update the trigger file: {exc}", field="trigger_file"
                ) from None
            yield document
            if len(document.entries) > MAX_TRIGGERS_PER_FILE:
                raise InvalidRequest(
                    f"a trigger file holds at most {MAX_TRIGGERS_PER_FILE} triggers"
                )
            document.data["updated_at"] = now_iso()
            _write_atomically(path, json.dumps(document.data, indent=2) + "\n")


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """An advisory lock beside the file, for other processes; polled so the loop never blocks."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = (path.parent / f".{path.name}.lock").open("a")
    except OSError as exc:
        raise StorageFailed(f"cannot lock the trigger file: {exc.strerror}") from exc
    with handle:
        for _ in range(1000):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.01)
        else:
            raise StorageFailed("the trigger file stayed locked by another process for 10 s")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageFailed(f"cannot write the trigger file: {exc.strerror}") from exc


def find(document: TriggerDocument, trigger_id: str) -> dict[str, Any]:
    index = document.index(trigger_id)
    if index is None:
        raise TriggerNotFound(trigger_id)
    entry = document.entries[index]
    return entry if isinstance(entry, dict) else {}
