"""Domain objects as wire messages, in one place: sessions (the documented keys plus the
reference's summary fields), run results, tail items, search signals, triggers.

Answers are bounded in bytes (CODEX_GATEWAY_MAX_ANSWER_BYTES, well under gRPC's 64 MiB message
limit): a text over its share is cut with a marker, and a list of events over its share keeps
what fits and says, in a last `gateway.events_omitted` event, how many it left out and where to
read them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf import json_format, struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from codex_gateway.v1 import runs_pb2, sessions_pb2, triggers_pb2
from gateway.changes.diff import Summary
from gateway.changes.tracker import RunChanges
from gateway.clock import iso
from gateway.errors import MAX_MESSAGE_CHARS, capped
from gateway.runs.failure import RunFailure
from gateway.runs.run import RunResult
from gateway.runs.schema import MAX_DEPTH, depth
from gateway.sessions.feed import FeedItem
from gateway.sessions.model import ForkOrigin, RunRecord, Session
from gateway.sessions.search import Hit
from gateway.sessions.tailing import Control

if TYPE_CHECKING:  # sessions.detail imports nothing of views; only its type is needed here
    from gateway.sessions.detail import FilesDetail


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """A JSON object as a Struct. A Struct's numbers are doubles: an integer past a double's
    range (valid JSON, which an agent may print) is carried as its decimal text instead of
    failing the message it is in."""
    struct = struct_pb2.Struct()
    try:
        _fill(struct, value)
    except OverflowError:
        struct.Clear()
        struct.update(_doubles_only(value))
    return struct


def _fill(struct: struct_pb2.Struct, value: dict[str, Any]) -> None:
    """Struct.update's work, by exact type (every event a run or a stream answers with goes
    through here: the library's isinstance chain took a third longer)."""
    fields = struct.fields
    for key, item in value.items():
        _set(fields[key], item)


def _set(target: struct_pb2.Value, item: Any) -> None:
    kind = type(item)
    if kind is str:
        target.string_value = item
    elif kind is dict:
        nested = target.struct_value
        nested.Clear()  # set, though it may stay empty
        _fill(nested, item)
    elif kind is int or kind is float:
        target.number_value = item
    elif kind is bool:
        target.bool_value = item
    elif item is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif kind is list:
        listed = target.list_value
        listed.Clear()
        values = listed.values
        for element in item:
            _set(values.add(), element)
    else:  # anything else (a subclass, a tuple) exactly as the library takes it, or refuses it
        single = struct_pb2.Struct()
        single.update({"value": item})
        target.CopyFrom(single.fields["value"])


def _doubles_only(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _doubles_only(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_doubles_only(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return str(value)
    return value


OMITTED_EVENTS = "gateway.events_omitted"
LAGGED_EVENT = "gateway.lagged"


def clipped(text: str, max_bytes: int, where: str) -> str:
    """`text`, or its first `max_bytes` bytes and a marker naming what was left out."""
    if len(text) * 4 <= max_bytes:  # no UTF-8 text of this length can be over
        return text
    data = text.encode(errors="replace")
    if len(data) <= max_bytes:
        return text
    kept = data[:max_bytes].decode(errors="ignore")
    return f"{kept}\n[gateway: {len(data) - max_bytes} more bytes omitted; {where}]"


def bounded_structs(
    values: Sequence[dict[str, Any]],
    max_bytes: int,
    *,
    newest: bool = False,
    omitted: int = 0,
    where: str = "",
) -> list[struct_pb2.Struct]:
    """As many of `values` (the first ones, or the newest) as fit in `max_bytes` serialized,
    and, when any are left out (`omitted` counts some left out before), a marker event saying
    how many and `where` to read them."""
    chosen: list[struct_pb2.Struct] = []
    used = 0
    ordered = reversed(values) if newest else iter(values)
    for value in ordered:
        struct = to_struct(value)
        size = struct.ByteSize()
        if used + size > max_bytes:
            break
        chosen.append(struct)
        used += size
    omitted += len(values) - len(chosen)
    if newest:
        chosen.reverse()
    if omitted:
        marker = to_struct(
            {
                "type": OMITTED_EVENTS,
                "omitted": omitted,
                "message": f"{omitted} entries left out to keep this answer under "
                f"{max_bytes} bytes; {where}",
            }
        )
        if newest:
            chosen.insert(0, marker)
        else:
            chosen.append(marker)
    return chosen


def _modified(session: Session) -> str:
    return iso(session.modified_at)


def summary(session: Session) -> sessions_pb2.SessionSummary:
    message = sessions_pb2.SessionSummary(
        session_id=session.id,
        dir=str(session.dir),
        modified=_modified(session),
        metadata=to_struct(session.metadata),
        status="unreadable" if session.error else str(session.status),
        created_at=session.created_at,
        updated_at=session.updated_at,
        last_activity_at=session.last_activity_at,
        objective=session.objective,
        secure=session.secure,
        runs=session.run_count,
        execution_timeout_ms=session.execution_timeout_ms or 0,
        tenant=session.owner,
    )
    if session.codex_session_id:
        message.codex_session_id = session.codex_session_id
    if session.model:
        message.model = session.model
    if session.error:
        message.error = session.error
    if session.forked_from is not None:
        message.forked_from.CopyFrom(fork_origin(session.forked_from))
    return message


def fork_origin(origin: ForkOrigin) -> sessions_pb2.ForkOrigin:
    message = sessions_pb2.ForkOrigin(session_id=origin.session_id)
    if origin.codex_session_id:
        message.codex_session_id = origin.codex_session_id
    if origin.run_id:
        message.run_id = origin.run_id
    return message


_RUN_SCALARS = tuple(
    field.name
    for field in sessions_pb2.RunRecord.DESCRIPTOR.fields
    if field.message_type is None
    and not field.is_repeated
    and field.name in {f.name for f in dataclasses.fields(RunRecord)}
)
"""The wire's scalar fields that a run record types (the codec read mistyped values as None)."""


def run_record(record: RunRecord) -> sessions_pb2.RunRecord:
    """A run record as its wire message.

    Set field by field: json_format.ParseDict cost more than half of a GET /sessions/:id.
    """
    message = sessions_pb2.RunRecord()
    for name in _RUN_SCALARS:
        value = getattr(record, name)
        if value is not None:
            with contextlib.suppress(ValueError):  # an integer out of the field's range
                setattr(message, name, str(value) if isinstance(value, str) else value)
    if record.usage is not None:
        _set_scalars(message.usage, record.usage)
    if record.metadata is not None:
        message.metadata.CopyFrom(to_struct(record.metadata))
    changes = changes_summary(record.changes)
    if changes is not None:
        message.changes.CopyFrom(changes)
    failure = RunFailure.from_json(record.failure)
    if failure is not None:
        message.failure.CopyFrom(failure_message(failure))
    return message


def failure_message(failure: RunFailure) -> runs_pb2.RunFailure:
    """Why a run did not complete, as its message (the text capped: a failed call's status
    details carry it in response metadata)."""
    message = runs_pb2.RunFailure(
        kind=str(failure.kind), message=capped(failure.message, MAX_MESSAGE_CHARS)
    )
    if failure.retry_after_ms is not None:
        with contextlib.suppress(ValueError):  # out of the field's range
            message.retry_after_ms = failure.retry_after_ms
    return message


def changes_summary(value: dict[str, Any] | None) -> runs_pb2.ChangesSummary | None:
    """A run record's `changes` (gateway/changes/) as its message; None when it has none."""
    summary = Summary.from_json(value)
    if summary is None:
        return None
    with contextlib.suppress(ValueError):  # a count out of the field's range
        return runs_pb2.ChangesSummary(
            source=summary.source,
            files=summary.files,
            additions=summary.additions,
            deletions=summary.deletions,
        )
    return None


def changes_message(
    session_id: str, run_id: str, found: RunChanges, max_bytes: int
) -> sessions_pb2.GetSessionChangesResponse:
    """A run's changes as GetSessionChanges answers them: the summary counts every file, the
    list holds those that fit in half of `max_bytes` (the diff is bounded by its own limit)."""
    changes = found.changes
    files = []
    for change in changes.files:
        file = sessions_pb2.FileChange(
            path=change.path,
            status=change.status,
            additions=change.additions,
            deletions=change.deletions,
            binary=change.binary,
        )
        if change.old_path is not None:
            file.old_path = change.old_path
        files.append(file)
    message = sessions_pb2.GetSessionChangesResponse(
        session_id=session_id,
        run_id=run_id,
        source=changes.source,
        files=first_within(files, max_bytes // 2),
        summary=changes_summary(changes.summary.as_json()),
        diff_truncated=changes.diff_truncated,
        running=found.running,
    )
    if found.base_commit is not None:
        message.base_commit = found.base_commit
    if changes.diff is not None:
        message.diff = changes.diff
    return message


_T = FieldDescriptor


def _set_scalars(message: Message, values: dict[str, Any]) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    for key, value in values.items():
        field = fields.get(key)
        if field is None or field.message_type is not None or field.is_repeated:
            continue
        converted = _scalar(field.type, value)
        if converted is not None:
            with contextlib.suppress(ValueError):  # an integer out of the field's range
                setattr(message, key, converted)


def _scalar(kind: int, value: object) -> str | bool | int | float | None:
    """`value` as a field of this type takes it, or None when it does not fit."""
    if kind == _T.TYPE_STRING:
        return value if isinstance(value, str) else None
    if kind == _T.TYPE_BOOL:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value


def detail(
    session: Session, history: Sequence[sessions_pb2.RunRecord]
) -> sessions_pb2.SessionDetail:
    """The session with `history` as its run history (gateway/sessions/history.py: the newest runs
    that fit in an answer's share); `runs` counts them all."""
    brief = summary(session)
    message = sessions_pb2.SessionDetail(
        session_id=session.id,
        status=brief.status,
        created_at=brief.created_at,
        updated_at=brief.updated_at,
        last_activity_at=brief.last_activity_at,
        objective=brief.objective,
        secure=session.secure,
        nudge_prompt=session.nudge_prompt,
        execution_timeout_ms=brief.execution_timeout_ms,
        runs=session.run_count,
        run_history=history,
        metadata=brief.metadata,
        dir=brief.dir,
        modified=brief.modified,
        tenant=brief.tenant,
    )
    if brief.HasField("codex_session_id"):
        message.codex_session_id = brief.codex_session_id
    if brief.HasField("model"):
        message.model = brief.model
    if session.workspace:
        message.workspace = session.workspace
    if brief.HasField("forked_from"):
        message.forked_from.CopyFrom(brief.forked_from)
    return message


def detail_with_files(
    session: Session,
    files: FilesDetail,
    events: Sequence[struct_pb2.Struct],
    history: Sequence[RunRecord],
) -> sessions_pb2.SessionDetail:
    """The session with what its detail shows of its files; `events` are `detail_events`,
    `history` the newest run records the store gave for the files' share (the newest of them
    whose messages fit in it are shown)."""
    message = detail(session, newest_within([run_record(r) for r in history], files.share))
    message.stdout.tail = files.stdout
    message.stdout.tail_lines = files.lines
    if files.stderr is not None:
        message.stderr.tail = files.stderr
        message.stderr.tail_lines = files.lines
    message.events.extend(events)
    return message


def detail_events(files: FilesDetail) -> list[struct_pb2.Struct]:
    """The detail's events within their share, the newest, after a marker counting those left
    out. Costly for many events: callers run it in a worker thread."""
    if files.events is None:
        return []
    return bounded_structs(
        files.events, files.share, newest=True, omitted=files.events_omitted, where=_TAIL_HINT
    )


_TAIL_HINT = "read them with GET /sessions/:id/tail (include_events) or a search"

_M = TypeVar("_M", bound=Message)


def first_within(messages: list[_M], max_bytes: int) -> list[_M]:
    """The first of `messages` whose serialized sizes add up to at most `max_bytes`."""
    used = 0
    for index, message in enumerate(messages):
        used += message.ByteSize() + 8
        if used > max_bytes:
            return messages[:index]
    return messages


def newest_within(messages: list[_M], max_bytes: int) -> list[_M]:
    """The last of `messages` whose serialized sizes add up to at most `max_bytes`."""
    return first_within(messages[::-1], max_bytes)[::-1]


def signal(session: Session, index: int, hit: Hit) -> sessions_pb2.Signal:
    match_id = (
        f"{session.id}-{hit.start}-{index}"
        if hit.kind == "text_match"
        else f"{session.id}-fuzzy-{index}"
    )
    return sessions_pb2.Signal(
        line=hit.line,
        score=hit.score,
        context=hit.context,
        match_id=match_id,
        signal_type=hit.kind,
        snippet=hit.context,
        start=hit.start,
        end=hit.end,
        window_start=hit.window_start,
        window_end=hit.window_end,
    )


def trigger(shown: dict[str, Any]) -> triggers_pb2.Trigger:
    """A normalised trigger (with next_fire) as a message; unknown keys stay in the file only."""
    message = triggers_pb2.Trigger()
    json_format.ParseDict(
        {k: v for k, v in shown.items() if v is not None}, message, ignore_unknown_fields=True
    )
    return message


def tail_message(item: FeedItem | Control) -> sessions_pb2.TailSessionResponse:
    """One item of a session's tail (or the tail's own marker, without a seq)."""
    if isinstance(item, Control):
        return sessions_pb2.TailSessionResponse(
            notice=sessions_pb2.TailNotice(kind=item.kind, message=item.message)
        )
    if item.stream == "events":
        event = item.event or {}
        if item.run_id is not None and "run_id" not in event:
            event = {**event, "run_id": item.run_id}  # as events.jsonl has it
        return sessions_pb2.TailSessionResponse(event=to_struct(event), seq=item.seq)
    if item.stream == "notice":
        notice = sessions_pb2.TailNotice(kind=item.text, message=f"run {item.run_id} {item.text}")
        if item.run_id:
            notice.run_id = item.run_id
        if item.status:
            notice.status = item.status
        return sessions_pb2.TailSessionResponse(notice=notice, seq=item.seq)
    line = sessions_pb2.LogLine(stream=item.stream, text=item.text)
    if item.run_id is not None:
        line.run_id = item.run_id
    return sessions_pb2.TailSessionResponse(line=line, seq=item.seq)


def result_message(result: RunResult, max_bytes: int) -> runs_pb2.RunResult:
    """The result as a message of at most about `max_bytes`: the output (sent three times:
    output, content, last message) gets an eighth each, cut with a marker; events and tool
    calls three eighths and one eighth, the first ones that fit and a marker event counting
    the others. The request's own messages and metadata are bounded by the body limit."""
    session = result.session
    usage = result.usage
    share = max_bytes // 8
    where = f"the whole run is in /sessions/{session.id} (tail with include_events, search)"
    output = clipped(result.output, share, where)
    messages = [runs_pb2.ChatMessage(role=m.role, content=m.content) for m in result.messages]
    if messages and messages[-1].role == "assistant":
        messages[-1].content = clipped(messages[-1].content, share, where)
    message = runs_pb2.RunResult(
        session_id=session.id,
        gateway_session_id=session.id,
        output=output,
        content=output,
        messages=messages,
        usage=runs_pb2.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            total_tokens=usage.total_tokens,
            reasoning_output_tokens=usage.reasoning_output_tokens,
        ),
        logs_path=str(session.dir),
        metadata=to_struct(result.metadata),
        run_id=result.run_id,
        status=result.status,
        tool_calls=bounded_structs(result.tool_calls, share, where=where),
        events=bounded_structs(
            result.events, 3 * share, omitted=result.events_omitted, where=where
        ),
        # The gateway id: a thread id leads to the session that had the thread first, which is
        # not this one when this run resumed another session's thread.
        session_url=f"/sessions/{session.id}",
        duration_ms=result.duration_ms,
        attempts=result.attempts,
    )
    if session.codex_session_id:
        message.codex_session_id = session.codex_session_id
    if result.model:
        message.model = result.model
    if result.error:
        message.error = result.error
    if result.first_seq is not None:
        message.first_seq = result.first_seq
    if result.last_seq is not None:
        message.last_seq = result.last_seq
    answer = result.answer
    if answer is not None and answer.valid:
        structured = structured_value(answer.value, share)
        if structured is not None:
            message.structured.CopyFrom(structured)
    changes = changes_summary(result.changes)
    if changes is not None:
        message.changes.CopyFrom(changes)
    if result.failure is not None:
        message.failure.CopyFrom(failure_message(result.failure))
    return message


def structured_value(value: Any, max_bytes: int) -> struct_pb2.Value | None:
    """A valid answer as a Value, unless it is over `max_bytes` or nests deeper than protobuf
    decodes (`schema.MAX_DEPTH`): the output still holds it."""
    if depth(value, MAX_DEPTH) > MAX_DEPTH:
        return None
    if len(json.dumps(value, separators=(",", ":")).encode()) > max_bytes:
        return None
    return json_format.ParseDict(value, struct_pb2.Value())
