from codex_gateway.v1 import runs_pb2 as _runs_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Schedule(_message.Message):
    __slots__ = ("mode", "at", "time", "timezone", "interval_minutes", "cron")
    MODE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MINUTES_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    mode: str
    at: str
    time: str
    timezone: str
    interval_minutes: float
    cron: str
    def __init__(self, mode: _Optional[str] = ..., at: _Optional[str] = ..., time: _Optional[str] = ..., timezone: _Optional[str] = ..., interval_minutes: _Optional[float] = ..., cron: _Optional[str] = ...) -> None: ...

class Trigger(_message.Message):
    __slots__ = ("id", "title", "description", "schedule", "prompt_text", "created_at", "enabled", "tags", "last_fired", "gateway_session_id", "system_prompt", "env", "cwd", "timeout_ms", "last_status", "last_error", "last_attempt_at", "overdue", "next_fire", "output_schema", "images", "tenant")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRED_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    description: str
    schedule: Schedule
    prompt_text: str
    created_at: str
    enabled: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    last_fired: str
    gateway_session_id: str
    system_prompt: str
    env: _containers.ScalarMap[str, str]
    cwd: str
    timeout_ms: int
    last_status: str
    last_error: str
    last_attempt_at: str
    overdue: bool
    next_fire: str
    output_schema: _struct_pb2.Struct
    images: _containers.RepeatedCompositeFieldContainer[_runs_pb2.ImageInput]
    tenant: str
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., prompt_text: _Optional[str] = ..., created_at: _Optional[str] = ..., enabled: _Optional[bool] = ..., tags: _Optional[_Iterable[str]] = ..., last_fired: _Optional[str] = ..., gateway_session_id: _Optional[str] = ..., system_prompt: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., last_status: _Optional[str] = ..., last_error: _Optional[str] = ..., last_attempt_at: _Optional[str] = ..., overdue: _Optional[bool] = ..., next_fire: _Optional[str] = ..., output_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., images: _Optional[_Iterable[_Union[_runs_pb2.ImageInput, _Mapping]]] = ..., tenant: _Optional[str] = ...) -> None: ...

class ListTriggersRequest(_message.Message):
    __slots__ = ("trigger_file",)
    TRIGGER_FILE_FIELD_NUMBER: _ClassVar[int]
    trigger_file: str
    def __init__(self, trigger_file: _Optional[str] = ...) -> None: ...

class ListTriggersResponse(_message.Message):
    __slots__ = ("trigger_file", "triggers")
    TRIGGER_FILE_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    trigger_file: str
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    def __init__(self, trigger_file: _Optional[str] = ..., triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ...) -> None: ...

class GetTriggerRequest(_message.Message):
    __slots__ = ("trigger_id", "trigger_file")
    TRIGGER_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FILE_FIELD_NUMBER: _ClassVar[int]
    trigger_id: str
    trigger_file: str
    def __init__(self, trigger_id: _Optional[str] = ..., trigger_file: _Optional[str] = ...) -> None: ...

class GetTriggerResponse(_message.Message):
    __slots__ = ("trigger",)
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    trigger: Trigger
    def __init__(self, trigger: _Optional[_Union[Trigger, _Mapping]] = ...) -> None: ...

class CreateTriggersRequest(_message.Message):
    __slots__ = ("trigger_file", "triggers")
    TRIGGER_FILE_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    trigger_file: str
    triggers: _struct_pb2.Value
    def __init__(self, trigger_file: _Optional[str] = ..., triggers: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class CreateTriggersResponse(_message.Message):
    __slots__ = ("trigger_file", "trigger", "triggers")
    TRIGGER_FILE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    trigger_file: str
    trigger: Trigger
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    def __init__(self, trigger_file: _Optional[str] = ..., trigger: _Optional[_Union[Trigger, _Mapping]] = ..., triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ...) -> None: ...

class UpdateTriggerRequest(_message.Message):
    __slots__ = ("trigger_id", "trigger_file", "patch")
    TRIGGER_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FILE_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    trigger_id: str
    trigger_file: str
    patch: _struct_pb2.Struct
    def __init__(self, trigger_id: _Optional[str] = ..., trigger_file: _Optional[str] = ..., patch: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class UpdateTriggerResponse(_message.Message):
    __slots__ = ("trigger",)
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    trigger: Trigger
    def __init__(self, trigger: _Optional[_Union[Trigger, _Mapping]] = ...) -> None: ...

class DeleteTriggerRequest(_message.Message):
    __slots__ = ("trigger_id", "trigger_file")
    TRIGGER_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FILE_FIELD_NUMBER: _ClassVar[int]
    trigger_id: str
    trigger_file: str
    def __init__(self, trigger_id: _Optional[str] = ..., trigger_file: _Optional[str] = ...) -> None: ...

class DeleteTriggerResponse(_message.Message):
    __slots__ = ("trigger_id",)
    TRIGGER_ID_FIELD_NUMBER: _ClassVar[int]
    trigger_id: str
    def __init__(self, trigger_id: _Optional[str] = ...) -> None: ...
