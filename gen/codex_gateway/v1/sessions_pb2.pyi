from codex_gateway.v1 import runs_pb2 as _runs_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunRecord(_message.Message):
    __slots__ = ("run_id", "status", "started_at", "completed_at", "duration_ms", "prompt_preview", "content_preview", "timeout_ms", "resume_session_id", "error", "usage", "model", "source", "metadata", "attempts", "first_seq", "last_seq", "changes", "trace_id", "failure")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    CONTENT_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RESUME_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: str
    started_at: str
    completed_at: str
    duration_ms: int
    prompt_preview: str
    content_preview: str
    timeout_ms: int
    resume_session_id: str
    error: str
    usage: _runs_pb2.Usage
    model: str
    source: str
    metadata: _struct_pb2.Struct
    attempts: int
    first_seq: int
    last_seq: int
    changes: _runs_pb2.ChangesSummary
    trace_id: str
    failure: _runs_pb2.RunFailure
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[str] = ..., started_at: _Optional[str] = ..., completed_at: _Optional[str] = ..., duration_ms: _Optional[int] = ..., prompt_preview: _Optional[str] = ..., content_preview: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., resume_session_id: _Optional[str] = ..., error: _Optional[str] = ..., usage: _Optional[_Union[_runs_pb2.Usage, _Mapping]] = ..., model: _Optional[str] = ..., source: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., attempts: _Optional[int] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., changes: _Optional[_Union[_runs_pb2.ChangesSummary, _Mapping]] = ..., trace_id: _Optional[str] = ..., failure: _Optional[_Union[_runs_pb2.RunFailure, _Mapping]] = ...) -> None: ...

class ForkOrigin(_message.Message):
    __slots__ = ("session_id", "codex_session_id", "run_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CODEX_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    codex_session_id: str
    run_id: str
    def __init__(self, session_id: _Optional[str] = ..., codex_session_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class SessionSummary(_message.Message):
    __slots__ = ("session_id", "dir", "modified", "metadata", "codex_session_id", "status", "created_at", "updated_at", "last_activity_at", "model", "objective", "secure", "runs", "execution_timeout_ms", "error", "forked_from", "tenant")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DIR_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CODEX_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    SECURE_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FORKED_FROM_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    dir: str
    modified: str
    metadata: _struct_pb2.Struct
    codex_session_id: str
    status: str
    created_at: str
    updated_at: str
    last_activity_at: str
    model: str
    objective: str
    secure: bool
    runs: int
    execution_timeout_ms: int
    error: str
    forked_from: ForkOrigin
    tenant: str
    def __init__(self, session_id: _Optional[str] = ..., dir: _Optional[str] = ..., modified: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., codex_session_id: _Optional[str] = ..., status: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., last_activity_at: _Optional[str] = ..., model: _Optional[str] = ..., objective: _Optional[str] = ..., secure: _Optional[bool] = ..., runs: _Optional[int] = ..., execution_timeout_ms: _Optional[int] = ..., error: _Optional[str] = ..., forked_from: _Optional[_Union[ForkOrigin, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...

class LogTail(_message.Message):
    __slots__ = ("tail", "tail_lines")
    TAIL_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    tail: str
    tail_lines: int
    def __init__(self, tail: _Optional[str] = ..., tail_lines: _Optional[int] = ...) -> None: ...

class SessionDetail(_message.Message):
    __slots__ = ("session_id", "codex_session_id", "status", "created_at", "updated_at", "last_activity_at", "model", "objective", "secure", "nudge_prompt", "execution_timeout_ms", "runs", "run_history", "stdout", "stderr", "events", "metadata", "dir", "modified", "workspace", "forked_from", "tenant")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CODEX_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    SECURE_FIELD_NUMBER: _ClassVar[int]
    NUDGE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    RUN_HISTORY_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DIR_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    FORKED_FROM_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    codex_session_id: str
    status: str
    created_at: str
    updated_at: str
    last_activity_at: str
    model: str
    objective: str
    secure: bool
    nudge_prompt: str
    execution_timeout_ms: int
    runs: int
    run_history: _containers.RepeatedCompositeFieldContainer[RunRecord]
    stdout: LogTail
    stderr: LogTail
    events: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    metadata: _struct_pb2.Struct
    dir: str
    modified: str
    workspace: str
    forked_from: ForkOrigin
    tenant: str
    def __init__(self, session_id: _Optional[str] = ..., codex_session_id: _Optional[str] = ..., status: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., last_activity_at: _Optional[str] = ..., model: _Optional[str] = ..., objective: _Optional[str] = ..., secure: _Optional[bool] = ..., nudge_prompt: _Optional[str] = ..., execution_timeout_ms: _Optional[int] = ..., runs: _Optional[int] = ..., run_history: _Optional[_Iterable[_Union[RunRecord, _Mapping]]] = ..., stdout: _Optional[_Union[LogTail, _Mapping]] = ..., stderr: _Optional[_Union[LogTail, _Mapping]] = ..., events: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dir: _Optional[str] = ..., modified: _Optional[str] = ..., workspace: _Optional[str] = ..., forked_from: _Optional[_Union[ForkOrigin, _Mapping]] = ..., tenant: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("limit", "since")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    limit: int
    since: str
    def __init__(self, limit: _Optional[int] = ..., since: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionSummary]
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionSummary, _Mapping]]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id", "tail_lines", "tail", "include_stderr", "include_events")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STDERR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tail_lines: int
    tail: int
    include_stderr: bool
    include_events: bool
    def __init__(self, session_id: _Optional[str] = ..., tail_lines: _Optional[int] = ..., tail: _Optional[int] = ..., include_stderr: _Optional[bool] = ..., include_events: _Optional[bool] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: SessionDetail
    def __init__(self, session: _Optional[_Union[SessionDetail, _Mapping]] = ...) -> None: ...

class SearchSessionRequest(_message.Message):
    __slots__ = ("session_id", "q", "fuzzy", "max_results", "tail_lines", "min_score")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    FUZZY_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    q: str
    fuzzy: bool
    max_results: int
    tail_lines: int
    min_score: float
    def __init__(self, session_id: _Optional[str] = ..., q: _Optional[str] = ..., fuzzy: _Optional[bool] = ..., max_results: _Optional[int] = ..., tail_lines: _Optional[int] = ..., min_score: _Optional[float] = ...) -> None: ...

class Signal(_message.Message):
    __slots__ = ("line", "score", "context", "match_id", "signal_type", "snippet", "start", "end", "window_start", "window_end")
    LINE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    MATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    line: int
    score: float
    context: str
    match_id: str
    signal_type: str
    snippet: str
    start: int
    end: int
    window_start: int
    window_end: int
    def __init__(self, line: _Optional[int] = ..., score: _Optional[float] = ..., context: _Optional[str] = ..., match_id: _Optional[str] = ..., signal_type: _Optional[str] = ..., snippet: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., window_start: _Optional[int] = ..., window_end: _Optional[int] = ...) -> None: ...

class SearchSessionResponse(_message.Message):
    __slots__ = ("session_id", "codex_session_id", "query", "signals")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CODEX_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    codex_session_id: str
    query: str
    signals: _containers.RepeatedCompositeFieldContainer[Signal]
    def __init__(self, session_id: _Optional[str] = ..., codex_session_id: _Optional[str] = ..., query: _Optional[str] = ..., signals: _Optional[_Iterable[_Union[Signal, _Mapping]]] = ...) -> None: ...

class CancelSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CancelSessionResponse(_message.Message):
    __slots__ = ("session_id", "run_id", "cancelled", "status")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    run_id: str
    cancelled: bool
    status: str
    def __init__(self, session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., cancelled: _Optional[bool] = ..., status: _Optional[str] = ...) -> None: ...

class TailSessionRequest(_message.Message):
    __slots__ = ("session_id", "tail_lines", "follow", "include_events", "include_stderr", "after_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STDERR_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tail_lines: int
    follow: bool
    include_events: bool
    include_stderr: bool
    after_seq: int
    def __init__(self, session_id: _Optional[str] = ..., tail_lines: _Optional[int] = ..., follow: _Optional[bool] = ..., include_events: _Optional[bool] = ..., include_stderr: _Optional[bool] = ..., after_seq: _Optional[int] = ...) -> None: ...

class TailSessionResponse(_message.Message):
    __slots__ = ("line", "event", "notice", "seq")
    LINE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    line: LogLine
    event: _struct_pb2.Struct
    notice: TailNotice
    seq: int
    def __init__(self, line: _Optional[_Union[LogLine, _Mapping]] = ..., event: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., notice: _Optional[_Union[TailNotice, _Mapping]] = ..., seq: _Optional[int] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("stream", "text", "run_id")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    stream: str
    text: str
    run_id: str
    def __init__(self, stream: _Optional[str] = ..., text: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class TailNotice(_message.Message):
    __slots__ = ("kind", "message", "run_id", "status")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    run_id: str
    status: str
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ..., run_id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class GetSessionChangesRequest(_message.Message):
    __slots__ = ("session_id", "run_id", "diff", "max_diff_bytes")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    MAX_DIFF_BYTES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    run_id: str
    diff: bool
    max_diff_bytes: int
    def __init__(self, session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., diff: _Optional[bool] = ..., max_diff_bytes: _Optional[int] = ...) -> None: ...

class FileChange(_message.Message):
    __slots__ = ("path", "status", "old_path", "additions", "deletions", "binary")
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OLD_PATH_FIELD_NUMBER: _ClassVar[int]
    ADDITIONS_FIELD_NUMBER: _ClassVar[int]
    DELETIONS_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    path: str
    status: str
    old_path: str
    additions: int
    deletions: int
    binary: bool
    def __init__(self, path: _Optional[str] = ..., status: _Optional[str] = ..., old_path: _Optional[str] = ..., additions: _Optional[int] = ..., deletions: _Optional[int] = ..., binary: _Optional[bool] = ...) -> None: ...

class GetSessionChangesResponse(_message.Message):
    __slots__ = ("session_id", "run_id", "source", "base_commit", "files", "summary", "diff", "diff_truncated", "running")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    BASE_COMMIT_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    DIFF_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    run_id: str
    source: str
    base_commit: str
    files: _containers.RepeatedCompositeFieldContainer[FileChange]
    summary: _runs_pb2.ChangesSummary
    diff: str
    diff_truncated: bool
    running: bool
    def __init__(self, session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., source: _Optional[str] = ..., base_commit: _Optional[str] = ..., files: _Optional[_Iterable[_Union[FileChange, _Mapping]]] = ..., summary: _Optional[_Union[_runs_pb2.ChangesSummary, _Mapping]] = ..., diff: _Optional[str] = ..., diff_truncated: _Optional[bool] = ..., running: _Optional[bool] = ...) -> None: ...
