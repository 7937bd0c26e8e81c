from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class RunInput(_message.Message):
    __slots__ = ("messages", "prompt", "system_prompt", "model", "workspace", "cwd", "session_id", "timeout_ms", "max_duration_ms", "json_mode", "env", "metadata", "persistent", "resume_session_id", "secure", "secure_session", "objective", "nudge_prompt", "output_schema", "images")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    JSON_MODE_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PERSISTENT_FIELD_NUMBER: _ClassVar[int]
    RESUME_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SECURE_FIELD_NUMBER: _ClassVar[int]
    SECURE_SESSION_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    NUDGE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    prompt: str
    system_prompt: str
    model: str
    workspace: str
    cwd: str
    session_id: str
    timeout_ms: int
    max_duration_ms: int
    json_mode: bool
    env: _containers.ScalarMap[str, str]
    metadata: _struct_pb2.Struct
    persistent: bool
    resume_session_id: str
    secure: bool
    secure_session: bool
    objective: str
    nudge_prompt: str
    output_schema: _struct_pb2.Struct
    images: _containers.RepeatedCompositeFieldContainer[ImageInput]
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., prompt: _Optional[str] = ..., system_prompt: _Optional[str] = ..., model: _Optional[str] = ..., workspace: _Optional[str] = ..., cwd: _Optional[str] = ..., session_id: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., max_duration_ms: _Optional[int] = ..., json_mode: _Optional[bool] = ..., env: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., persistent: _Optional[bool] = ..., resume_session_id: _Optional[str] = ..., secure: _Optional[bool] = ..., secure_session: _Optional[bool] = ..., objective: _Optional[str] = ..., nudge_prompt: _Optional[str] = ..., output_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., images: _Optional[_Iterable[_Union[ImageInput, _Mapping]]] = ...) -> None: ...

class ImageInput(_message.Message):
    __slots__ = ("data", "media_type", "path")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    media_type: str
    path: str
    def __init__(self, data: _Optional[bytes] = ..., media_type: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class ChangesSummary(_message.Message):
    __slots__ = ("source", "files", "additions", "deletions")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    ADDITIONS_FIELD_NUMBER: _ClassVar[int]
    DELETIONS_FIELD_NUMBER: _ClassVar[int]
    source: str
    files: int
    additions: int
    deletions: int
    def __init__(self, source: _Optional[str] = ..., files: _Optional[int] = ..., additions: _Optional[int] = ..., deletions: _Optional[int] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "cached_input_tokens", "total_tokens", "reasoning_output_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    total_tokens: int
    reasoning_output_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., reasoning_output_tokens: _Optional[int] = ...) -> None: ...

class RunFailure(_message.Message):
    __slots__ = ("kind", "message", "retry_after_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    retry_after_ms: int
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class RunResult(_message.Message):
    __slots__ = ("session_id", "gateway_session_id", "codex_session_id", "model", "output", "messages", "usage", "logs_path", "metadata", "run_id", "status", "content", "tool_calls", "events", "session_url", "error", "duration_ms", "attempts", "first_seq", "last_seq", "structured", "changes", "failure")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CODEX_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    LOGS_PATH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SESSION_URL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    gateway_session_id: str
    codex_session_id: str
    model: str
    output: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    usage: Usage
    logs_path: str
    metadata: _struct_pb2.Struct
    run_id: str
    status: str
    content: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    events: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    session_url: str
    error: str
    duration_ms: int
    attempts: int
    first_seq: int
    last_seq: int
    structured: _struct_pb2.Value
    changes: ChangesSummary
    failure: RunFailure
    def __init__(self, session_id: _Optional[str] = ..., gateway_session_id: _Optional[str] = ..., codex_session_id: _Optional[str] = ..., model: _Optional[str] = ..., output: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., logs_path: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., run_id: _Optional[str] = ..., status: _Optional[str] = ..., content: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., session_url: _Optional[str] = ..., error: _Optional[str] = ..., duration_ms: _Optional[int] = ..., attempts: _Optional[int] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., structured: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., changes: _Optional[_Union[ChangesSummary, _Mapping]] = ..., failure: _Optional[_Union[RunFailure, _Mapping]] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: RunInput
    def __init__(self, run: _Optional[_Union[RunInput, _Mapping]] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: RunResult
    def __init__(self, result: _Optional[_Union[RunResult, _Mapping]] = ...) -> None: ...

class StreamCompletionRequest(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: RunInput
    def __init__(self, run: _Optional[_Union[RunInput, _Mapping]] = ...) -> None: ...

class RunStarted(_message.Message):
    __slots__ = ("session_id", "run_id", "model", "logs_path")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOGS_PATH_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    run_id: str
    model: str
    logs_path: str
    def __init__(self, session_id: _Optional[str] = ..., run_id: _Optional[str] = ..., model: _Optional[str] = ..., logs_path: _Optional[str] = ...) -> None: ...

class StreamCompletionResponse(_message.Message):
    __slots__ = ("started", "event", "completed", "seq")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    started: RunStarted
    event: _struct_pb2.Struct
    completed: RunResult
    seq: int
    def __init__(self, started: _Optional[_Union[RunStarted, _Mapping]] = ..., event: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., completed: _Optional[_Union[RunResult, _Mapping]] = ..., seq: _Optional[int] = ...) -> None: ...

class PromptSessionRequest(_message.Message):
    __slots__ = ("session_id", "run")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    run: RunInput
    def __init__(self, session_id: _Optional[str] = ..., run: _Optional[_Union[RunInput, _Mapping]] = ...) -> None: ...

class PromptSessionResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: RunResult
    def __init__(self, result: _Optional[_Union[RunResult, _Mapping]] = ...) -> None: ...

class NudgeSessionRequest(_message.Message):
    __slots__ = ("session_id", "run")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    run: RunInput
    def __init__(self, session_id: _Optional[str] = ..., run: _Optional[_Union[RunInput, _Mapping]] = ...) -> None: ...

class NudgeSessionResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: RunResult
    def __init__(self, result: _Optional[_Union[RunResult, _Mapping]] = ...) -> None: ...

class ForkSessionRequest(_message.Message):
    __slots__ = ("session_id", "run")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    run: RunInput
    def __init__(self, session_id: _Optional[str] = ..., run: _Optional[_Union[RunInput, _Mapping]] = ...) -> None: ...

class ForkSessionResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: RunResult
    def __init__(self, result: _Optional[_Union[RunResult, _Mapping]] = ...) -> None: ...
