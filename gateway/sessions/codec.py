"""The one codec between meta.json / runs.jsonl and typed sessions and run records.

meta.json stays the reference's format. Each object keeps the JSON document it was read from
(`stored`), and writing one lays its typed fields over that document:

- a field the gateway did not change keeps its value as the document had it, byte for byte
  (a mistyped value, say, stays as it was: decoding it and comparing is how "unchanged" is told);
- a changed field is written in its place, a new one appended, an optional one set to None
  removed;
- every other key (the reference's `worker_state`, a newer gateway's additions) is kept as is.

A new run record (no document yet) is written in the order the runner has always written it.
Decoding is lenient as the views always were: a value of the wrong type reads as absent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.agent.events import canonical_thread_id
from gateway.sessions.model import (
    ForkOrigin,
    JsonObject,
    RunRecord,
    RunStatus,
    Session,
    SessionStatus,
)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number_or_none(value: object) -> int | None:
    """An integer, or a float holding one (JSON writers differ), as the wire's int fields take."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _object(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _object_or_none(value: object) -> JsonObject | None:
    return value if isinstance(value, dict) else None


_SESSION_STATUSES: dict[str, SessionStatus] = {s.value: s for s in SessionStatus}
_RUN_STATUSES: dict[str, RunStatus] = {s.value: s for s in RunStatus}
# (A dict lookup: calling the enum costs more than the rest of a session's decoding.)


def _fork_origin(value: object) -> ForkOrigin | None:
    if not isinstance(value, dict) or not isinstance(value.get("session_id"), str):
        return None
    return ForkOrigin(
        value["session_id"],
        canonical_thread_id(value.get("codex_session_id")),
        _text_or_none(value.get("run_id")),
    )


def _fork_origin_json(value: ForkOrigin | None) -> JsonObject | None:
    return None if value is None else value.as_dict()


def _session_status(value: object) -> SessionStatus | str:
    if not isinstance(value, str):
        return ""
    return _SESSION_STATUSES.get(value, value)  # one this gateway does not know stays as it was


def _run_status(value: object) -> RunStatus | str:
    if not isinstance(value, str):
        return ""
    return _RUN_STATUSES.get(value, value)


@dataclass(frozen=True)
class _Key:
    name: str
    decode: Callable[[object], Any]
    optional: bool = False
    """Absent from the document while its field is None."""
    encode: Callable[[Any], Any] | None = None
    """The field's JSON value, when the field is not JSON already."""


_RUN_KEYS = (
    _Key("run_id", _text),
    _Key("status", _run_status),
    _Key("started_at", _text),
    _Key("prompt_preview", _text),
    _Key("timeout_ms", _number_or_none),
    _Key("resume_session_id", _text_or_none),
    _Key("model", _text_or_none),
    _Key("source", _text),
    _Key("metadata", _object_or_none),
    _Key("attempts", _number_or_none, optional=True),
    _Key("agent_pid", _int_or_none, optional=True),
    _Key("completed_at", _text_or_none, optional=True),
    _Key("duration_ms", _number_or_none, optional=True),
    _Key("error", _text_or_none, optional=True),
    _Key("content_preview", _text_or_none, optional=True),
    _Key("usage", _object_or_none, optional=True),
    _Key("first_seq", _number_or_none, optional=True),
    _Key("last_seq", _number_or_none, optional=True),
    _Key("changes", _object_or_none, optional=True),
    _Key("changes_snapshot", _object_or_none, optional=True),
    _Key("trace_id", _text_or_none, optional=True),
    _Key("failure", _object_or_none, optional=True),
)
"""A run record's keys, in the order a new record writes them (the field names are theirs)."""

_SESSION_KEYS = (
    _Key("codex_session_id", canonical_thread_id),
    _Key("created_at", _text),
    _Key("updated_at", _text),
    _Key("last_activity_at", _text),
    _Key("status", _session_status),
    _Key("model", _text_or_none),
    _Key("objective", _text),
    _Key("nudge_prompt", _text),
    _Key("execution_timeout_ms", _int_or_none),
    _Key("metadata", _object),
    _Key("workspace", _text_or_none),
    _Key("last_input", _object_or_none),
    _Key("thread_usage", _object_or_none),
    _Key("runs_archived", _count),
    _Key("forked_from", _fork_origin, optional=True, encode=_fork_origin_json),
    _Key("tenant", _text_or_none, optional=True),
)
"""meta.json's typed keys but `session_id` (the id), `runs` and `secure` (read only, below)."""


def decode_run(document: JsonObject) -> RunRecord:
    """A run record from its JSON object (the object is kept, and is the record's from now)."""
    record = RunRecord(**{key.name: key.decode(document.get(key.name)) for key in _RUN_KEYS})
    record.stored = document
    return record


def encode_run(record: RunRecord) -> JsonObject:
    """The record's JSON object, which it keeps as its document from now."""
    record.stored = _overlay(record, _RUN_KEYS, record.stored)
    return record.stored


def encoded_size(record: RunRecord) -> int:
    """The bytes of the record's JSON text as it would be written now (the record unchanged)."""
    stored = dict(record.stored) if record.stored is not None else None
    return len(dumps(_overlay(record, _RUN_KEYS, stored))) - 1  # less the newline


def decode_session(
    session_id: str, directory: Path, document: JsonObject, *, secure: bool
) -> Session:
    """A readable meta.json's session (`secure`: it is in the secure root). The caller checked
    that `document` has a string `session_id`. Its run records are read when first asked for
    (`decode_runs`)."""
    fields = {key.name: key.decode(document.get(key.name)) for key in _SESSION_KEYS}
    return Session(
        session_id, directory, secure or bool(document.get("secure")), stored=document, **fields
    )


def decode_runs(document: JsonObject | None) -> list[RunRecord]:
    """A meta.json's run records. Entries of `runs` that are not objects are not records: they
    stay where they are on disk until a record is added or archived."""
    runs = (document or {}).get("runs")
    return [decode_run(r) for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


def encode_session(session: Session) -> JsonObject:
    """meta.json's object for the session, which it keeps as its document from now."""
    document = _overlay(session, _SESSION_KEYS, session.stored)
    if not session.runs_decoded:
        session.stored = document
        return document  # the records were not even read: as they were
    encoded = [encode_run(record) for record in session.runs]
    stored = document.get("runs")
    if isinstance(stored, list):
        objects = [entry for entry in stored if isinstance(entry, dict)]
        if len(objects) == len(encoded) and all(
            a is b for a, b in zip(objects, encoded, strict=True)
        ):
            encoded = stored  # the same records (changed in place): other entries stay put
    if encoded or isinstance(stored, list):
        document["runs"] = encoded
    session.stored = document
    return document


def dumps(document: JsonObject) -> bytes:
    """One JSON document as written: compact UTF-8, one line (orjson: a session's meta is
    written twice a run, and the json module was a good part of that)."""
    try:
        return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # an integer past 64 bits (a trigger file's metadata)
        return (json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def dumps_lines(records: Iterable[RunRecord]) -> bytes:
    """Run records as runs.jsonl lines."""
    return b"".join(dumps(encode_run(record)) for record in records)


def _overlay(typed: object, keys: tuple[_Key, ...], stored: JsonObject | None) -> JsonObject:
    document = {} if stored is None else stored
    for key in keys:
        value = getattr(typed, key.name)
        if key.name in document:
            if key.decode(document[key.name]) == value:
                continue  # unchanged: as the document has it
            if value is None and key.optional:
                del document[key.name]
                continue
        elif (key.optional or stored is not None) and key.decode(None) == value:
            continue  # absent means this value: left absent
        document[key.name] = value if key.encode is None else key.encode(value)
    return document
