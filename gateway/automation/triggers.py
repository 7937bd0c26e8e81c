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
import base64
import binascii
import contextlib
import fcntl
import json
import os
import re
import stat
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import regular_file
from gateway.atomic import write_atomic
from gateway.automation.schedule import Schedule, ScheduleError, describe, next_fire, parse_schedule
from gateway.clock import now_iso
from gateway.config import TriggerConfig
from gateway.errors import InvalidRequest, StorageFailed, TriggerNotFound, quote, quote_path
from gateway.regular_file import NotRegularFile
from gateway.runs.childenv import check_request_env
from gateway.runs.images import ImageInput
from gateway.runs.schema import check as check_schema
from gateway.runs.workspace import confine

# Fields the gateway owns, in the reference's order; anything else in an entry is kept as is.
_STATE_FIELDS = ("last_fired", "gateway_session_id", "last_status", "last_error", "last_attempt_at")
# Every timestamp a trigger carries (schedule.at is the schedule's own, checked there).
DATE_FIELDS = ("created_at", "last_fired", "last_attempt_at")
MAX_TRIGGERS_PER_FILE = 10_000
# A trigger file is a flat list of flat objects; anything nested deeper is not one, and deep
# nesting makes the JSON decoder recurse (RecursionError) before any check could run.
MAX_JSON_DEPTH = 32
MAX_ENTRY_DEPTH = MAX_JSON_DEPTH - 2
# A `trigger_file` argument is checked before anything resolves or creates it: PATH_MAX-sized
# inputs and thousands of components (mkdir(parents=True) recursed once per component).
MAX_PATH_CHARS = 1024
MAX_PATH_PARTS = 32
# Whole numbers arrive as JSON numbers, and as doubles through google.protobuf.Value: a double is
# exact up to 2**53.
MAX_WHOLE = 2**53
# Images of one trigger, as a structure; their count and sizes as runs take them are the
# runner's limits, checked when the trigger fires.
MAX_TRIGGER_IMAGES = 1000
# The part of a trigger file's byte cap that API writes may fill.
API_SHARE = 0.9


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
    """A stored timestamp as aware UTC; None if absent or unusable (normalise refuses those)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 timestamp as aware UTC (no offset means UTC). ValueError if it is not one or
    if it names an instant outside datetime's range once taken to UTC (0001-01-01T00:00+14:00
    is before year 1 in UTC; 9999-12-31T23:59-14:00 after year 9999)."""
    stripped = text.strip()
    if stripped[-1:] == "z":
        stripped = stripped[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(stripped)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError("outside the range of dates") from None


def _depth(value: object) -> int:
    """How deeply arrays and objects nest in a decoded JSON value (iteratively: no recursion)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children: Any = (
            item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else ()
        )
        if isinstance(item, Mapping | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _whole(value: object) -> int | None:
    """An int, or a double with no fractional part, within +-2**53; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer() or abs(value) > MAX_WHOLE:
            return None
        return int(value)
    if isinstance(value, int) and abs(value) <= MAX_WHOLE:
        return value
    return None


def normalise(raw: object, *, where: str = "", now: str | None = None) -> Trigger:
    """Validate one trigger payload; errors name the field (prefixed by `where`)."""

    def fail(name: str, message: str) -> InvalidRequest:
        return InvalidRequest(message, field=f"{where}{name}")

    if not isinstance(raw, Mapping):
        raise fail("trigger", f"{where or 'trigger'} must be a JSON object")
    if _depth(raw) > MAX_ENTRY_DEPTH:
        # The file that holds it (an object, its array, this entry) must stay readable.
        raise fail("trigger", f"a trigger may nest at most {MAX_ENTRY_DEPTH} levels deep")
    entry: dict[str, Any] = dict(raw)
    identifier = entry.get("id") or entry.get("trigger_id") or str(uuid.uuid4())
    if not isinstance(identifier, str):
        number = _whole(identifier)
        if number is None:
            raise fail("id", "id must be a string or a whole number")
        identifier = number
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
    timeout_key = "timeout_ms" if entry.get("timeout_ms") else "max_duration_ms"
    timeout = entry.get(timeout_key) or None
    if timeout is not None:
        timeout = _whole(timeout)
        if timeout is None or timeout < 0:
            raise fail(
                timeout_key,
                f"{timeout_key} must be a whole number of milliseconds, 0 to {MAX_WHOLE}",
            )
    for name in DATE_FIELDS:
        value = entry.get(name)
        if isinstance(value, str) and value:
            try:
                parse_timestamp(value)
            except ValueError:
                raise fail(
                    name, f"{where}{name} must be an ISO 8601 timestamp within years 1-9999 UTC"
                ) from None
    system_prompt = entry.get("system_prompt", "")
    if not isinstance(system_prompt, str):
        raise fail("system_prompt", "system_prompt must be a string")
    if entry.get("output_schema") is not None:
        try:
            check_schema(entry["output_schema"])
        except InvalidRequest as exc:
            raise fail("output_schema", exc.message) from None
    if entry.get("images") is not None:
        problem = images_problem(entry["images"])
        if problem is not None:
            raise fail(problem[0], problem[1])
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


def images_problem(images: object) -> tuple[str, str] | None:
    """What is wrong with a trigger's `images` as a structure (field, message), if anything: a
    list of objects, each a `path` or `data` (base64) with its `media_type`. The runner checks
    them fully when the trigger fires (size, media type against the bytes, confinement)."""
    if not isinstance(images, list):
        return "images", "images must be an array"
    if len(images) > MAX_TRIGGER_IMAGES:
        return "images", f"a trigger holds at most {MAX_TRIGGER_IMAGES} images"
    for index, image in enumerate(images):
        name = f"images[{index}]"
        if not isinstance(image, dict):
            return name, f"{name} must be an object with path, or data and media_type"
        unknown = set(image) - {"path", "data", "media_type"}
        if unknown:
            return name, f"{name} has unknown keys: {quote(', '.join(sorted(unknown)))}"
        for key in ("path", "data", "media_type"):
            if key in image and not isinstance(image[key], str):
                return f"{name}.{key}", f"{name}.{key} must be a string"
        if "path" in image:
            if "data" in image or "media_type" in image:
                return name, f"{name} gives a path or data with media_type, not both"
            if not image["path"].strip():
                return f"{name}.path", f"{name}.path is empty"
        elif "data" in image and "media_type" in image:
            try:
                base64.b64decode(image["data"], validate=True)
            except (binascii.Error, ValueError):
                return f"{name}.data", f"{name}.data is not base64"
        else:
            return name, f"{name} needs path, or data and media_type"
    return None


def trigger_images(images: object) -> list[ImageInput]:
    """A trigger's `images` (checked by `images_problem`) as a run takes them."""
    if not isinstance(images, list):
        return []
    return [
        ImageInput(
            data=base64.b64decode(image["data"]) if "data" in image else None,
            media_type=image.get("media_type"),
            path=image.get("path"),
        )
        for image in images
        if isinstance(image, dict)
    ]


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


def read_document(
    path: Path,
    *,
    max_bytes: int = TriggerConfig.max_file_bytes,
    max_triggers: int = TriggerConfig.max_per_file,
) -> TriggerDocument:
    """The file's document; a missing file is an empty one. Raises TriggerFileError.

    Blocking (disk, JSON): call it off the event loop. Only a regular file within `max_bytes`
    is read, never through a symlink (paths here are resolved already) and never waiting on a
    FIFO; nesting deeper than MAX_JSON_DEPTH and more than `max_triggers` entries are refused."""
    try:
        raw = regular_file.read(path, max_bytes)
    except FileNotFoundError:
        return TriggerDocument({"version": 1, "triggers": []})
    except NotRegularFile as exc:
        raise TriggerFileError(f"cannot read {exc}") from exc
    except OSError as exc:
        raise TriggerFileError(f"cannot read {quote_path(path)}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
        if not nesting_within(text, MAX_JSON_DEPTH):
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        data = json.loads(text) if text.strip() else {"triggers": []}
    except (ValueError, RecursionError) as exc:
        raise TriggerFileError(
            f"{quote_path(path)} is not valid JSON: {quote(str(exc), 160)}"
        ) from None
    if isinstance(data, list):
        data = {"version": 1, "triggers": data}
    if not isinstance(data, dict) or not isinstance(data.get("triggers", []), list):
        raise TriggerFileError(f"{quote_path(path)} must hold an object with a `triggers` array")
    count = len(data.get("triggers", []))
    if count > max_triggers:
        raise TriggerFileError(
            f"{quote_path(path)} holds {count} triggers, more than the {max_triggers} allowed"
        )
    return TriggerDocument(data)


# A JSON string (escapes included) or one bracket: what nesting_within counts.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def nesting_within(text: str, limit: int) -> bool:
    """Whether no array or object in the JSON `text` is nested more than `limit` deep, without
    decoding it (brackets inside strings do not count)."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        piece = match.group()
        if piece in ("[", "{"):
            depth += 1
            if depth > limit:
                return False
        elif piece in ("]", "}"):
            depth -= 1
    return True


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
        text = raw.strip()
        prefix = quote(text)
        if len(text) > MAX_PATH_CHARS or text.count("/") >= MAX_PATH_PARTS:
            raise InvalidRequest(
                f"trigger_file is longer than {MAX_PATH_CHARS} characters or "
                f"{MAX_PATH_PARTS} components: {prefix}",
                field="trigger_file",
            )
        path = confine(
            self._config.default_file.parent / text,
            self._config.roots,
            shown=text,
            field="trigger_file",
            where="trigger ",
        )
        try:
            regular_file.check(path)
        except NotRegularFile as exc:
            raise InvalidRequest(
                f"trigger_file is not a regular file ({exc.reason}): {prefix}",
                field="trigger_file",
            ) from None
        except (OSError, ValueError):  # a name over NAME_MAX, say
            raise InvalidRequest(
                f"trigger_file is not a usable file name: {prefix}", field="trigger_file"
            ) from None
        return path

    def read(self, path: Path) -> TriggerDocument:
        """read_document with this configuration's caps (blocking: off the loop)."""
        return read_document(
            path,
            max_bytes=self._config.max_file_bytes,
            max_triggers=self._config.max_per_file,
        )

    def scheduled_files(self) -> list[Path]:
        """The default file, the extra ones, and discovered `<sessions>/*/triggers.json`."""
        files = [self._config.default_file, *self._config.extra_files]
        directory = self._config.discovery_dir
        if directory is not None and directory.is_dir():
            # A session folder (or its triggers.json) linked out of the discovery folder is
            # not scheduled: nothing outside it is read on a watched folder's say-so.
            inside = directory.resolve()
            found = []
            for candidate in directory.glob("*/triggers.json"):
                with contextlib.suppress(OSError, RuntimeError):
                    resolved = candidate.resolve()
                    if resolved.is_relative_to(inside):
                        found.append(resolved)
            files += sorted(found)
        return list(dict.fromkeys(files))

    def sources(self) -> list[Path]:
        """TriggerStore: the scheduled files are the only sources."""
        return self.scheduled_files()

    async def read_scope(self, path: Path) -> TriggerDocument:
        """TriggerStore: the trigger API lists the file itself."""
        return await asyncio.to_thread(self.read, path)

    async def follow(self, stop: asyncio.Event, changed: Callable[[Path | None], Any]) -> None:
        """TriggerStore: files change on disk only, and the scheduler watches them."""
        await stop.wait()

    @contextlib.asynccontextmanager
    async def edit(self, path: Path, *, client: bool = True) -> AsyncIterator[TriggerDocument]:
        """Read-modify-write under both locks; the document is written back atomically when the
        block exits without an exception. A `client` edit may not grow the file past
        API_SHARE of its byte cap: the rest is room for the scheduler's own bookkeeping
        (last_fired, last_error, ...), so that it never pushes a file over the cap."""
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock, _file_lock(path):
            try:
                document = await asyncio.to_thread(self.read, path)
            except TriggerFileError as exc:
                raise InvalidRequest(
                    f"cannot update the trigger file: {exc}", field="trigger_file"
                ) from None
            yield document
            cap = self._config.max_per_file
            if len(document.entries) > cap:
                raise InvalidRequest(
                    f"a trigger file holds at most {cap} triggers", field="triggers"
                )
            document.data["updated_at"] = now_iso()
            limit = int(self._config.max_file_bytes * API_SHARE) if client else None
            await asyncio.to_thread(_write_document, path, document.data, limit)


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """An advisory lock beside the file, for other processes; polled so the loop never blocks."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Never blocks on a FIFO planted under the lock's name, never follows a link there.
        handle = os.fdopen(regular_file.open_for_append(path.parent / f".{path.name}.lock"), "a")
    except NotRegularFile as exc:
        raise InvalidRequest(f"cannot lock the trigger file: {exc}", field="trigger_file") from exc
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


def _write_document(path: Path, data: dict[str, Any], limit: int | None) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if limit is not None and len(text) > limit:  # characters: a lower bound of the bytes
        raise InvalidRequest(
            f"the trigger file would exceed {limit} bytes (CODEX_GATEWAY_TRIGGER_MAX_FILE_BYTES)",
            field="triggers",
        )
    _write_atomically(path, text)


def _write_atomically(path: Path, text: str) -> None:
    try:
        try:
            existing: os.stat_result | None = path.lstat()
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            existing = None  # a new file replaces it: the gateway's own, 0600
        write_atomic(path, text.encode("utf-8"), like=existing)
    except OSError as exc:
        raise StorageFailed(f"cannot write the trigger file: {exc.strerror}") from exc


def find(document: TriggerDocument, trigger_id: str) -> dict[str, Any]:
    index = document.index(trigger_id)
    if index is None:
        raise TriggerNotFound(trigger_id)
    entry = document.entries[index]
    return entry if isinstance(entry, dict) else {}


def payload_items(payload: Any) -> tuple[list[Any], bool]:
    """The triggers a create payload gives: one object, or a batch (an array, or
    `{"triggers": [...]}`); whether it was a batch."""
    if isinstance(payload, list):
        return payload, True
    if isinstance(payload, dict) and isinstance(payload.get("triggers"), list):
        return payload["triggers"], True
    return [payload], False
