from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...

class WatcherStatus(_message.Message):
    __slots__ = ("enabled", "paths", "pattern", "prompt_file", "debounce_ms", "poll_ms", "watcher_count", "mode", "events_seen", "runs_started", "last_event", "last_error")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FILE_FIELD_NUMBER: _ClassVar[int]
    DEBOUNCE_MS_FIELD_NUMBER: _ClassVar[int]
    POLL_MS_FIELD_NUMBER: _ClassVar[int]
    WATCHER_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_SEEN_FIELD_NUMBER: _ClassVar[int]
    RUNS_STARTED_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    paths: _containers.RepeatedScalarFieldContainer[str]
    pattern: str
    prompt_file: str
    debounce_ms: int
    poll_ms: int
    watcher_count: int
    mode: str
    events_seen: int
    runs_started: int
    last_event: _struct_pb2.Struct
    last_error: str
    def __init__(self, enabled: _Optional[bool] = ..., paths: _Optional[_Iterable[str]] = ..., pattern: _Optional[str] = ..., prompt_file: _Optional[str] = ..., debounce_ms: _Optional[int] = ..., poll_ms: _Optional[int] = ..., watcher_count: _Optional[int] = ..., mode: _Optional[str] = ..., events_seen: _Optional[int] = ..., runs_started: _Optional[int] = ..., last_event: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., last_error: _Optional[str] = ...) -> None: ...

class WebhookStatus(_message.Message):
    __slots__ = ("configured", "url_tail", "timeout_ms", "has_auth_bearer", "header_keys", "signed", "delivered", "failed", "pending")
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    URL_TAIL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    HAS_AUTH_BEARER_FIELD_NUMBER: _ClassVar[int]
    HEADER_KEYS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    configured: bool
    url_tail: str
    timeout_ms: int
    has_auth_bearer: bool
    header_keys: _containers.RepeatedScalarFieldContainer[str]
    signed: bool
    delivered: int
    failed: int
    pending: int
    def __init__(self, configured: _Optional[bool] = ..., url_tail: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., has_auth_bearer: _Optional[bool] = ..., header_keys: _Optional[_Iterable[str]] = ..., signed: _Optional[bool] = ..., delivered: _Optional[int] = ..., failed: _Optional[int] = ..., pending: _Optional[int] = ...) -> None: ...

class SystemPromptStatus(_message.Message):
    __slots__ = ("enabled", "path", "disabled", "reason")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    path: str
    disabled: bool
    reason: str
    def __init__(self, enabled: _Optional[bool] = ..., path: _Optional[str] = ..., disabled: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ConcurrencyStatus(_message.Message):
    __slots__ = ("active", "max", "available", "waiting")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    active: int
    max: int
    available: int
    waiting: int
    def __init__(self, active: _Optional[int] = ..., max: _Optional[int] = ..., available: _Optional[int] = ..., waiting: _Optional[int] = ...) -> None: ...

class MemoryStatus(_message.Message):
    __slots__ = ("rss", "peak_rss", "agents_rss", "bridge_rss")
    RSS_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_RSS_FIELD_NUMBER: _ClassVar[int]
    BRIDGE_RSS_FIELD_NUMBER: _ClassVar[int]
    rss: int
    peak_rss: int
    agents_rss: int
    bridge_rss: int
    def __init__(self, rss: _Optional[int] = ..., peak_rss: _Optional[int] = ..., agents_rss: _Optional[int] = ..., bridge_rss: _Optional[int] = ...) -> None: ...

class TriggerFileStatus(_message.Message):
    __slots__ = ("path", "triggers", "error", "skipped", "problems")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    path: str
    triggers: int
    error: str
    skipped: int
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, path: _Optional[str] = ..., triggers: _Optional[int] = ..., error: _Optional[str] = ..., skipped: _Optional[int] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class TriggersStatus(_message.Message):
    __slots__ = ("enabled", "files")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    files: _containers.RepeatedCompositeFieldContainer[TriggerFileStatus]
    def __init__(self, enabled: _Optional[bool] = ..., files: _Optional[_Iterable[_Union[TriggerFileStatus, _Mapping]]] = ...) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("replica_id", "grpc_addr", "epoch", "lease_until")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEASE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    grpc_addr: str
    epoch: int
    lease_until: str
    def __init__(self, replica_id: _Optional[str] = ..., grpc_addr: _Optional[str] = ..., epoch: _Optional[int] = ..., lease_until: _Optional[str] = ...) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("replica_id", "replicas", "slots_in_use", "slots_max", "lease_ms", "reaped")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_IN_USE_FIELD_NUMBER: _ClassVar[int]
    SLOTS_MAX_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    REAPED_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    slots_in_use: int
    slots_max: int
    lease_ms: int
    reaped: int
    def __init__(self, replica_id: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ..., slots_in_use: _Optional[int] = ..., slots_max: _Optional[int] = ..., lease_ms: _Optional[int] = ..., reaped: _Optional[int] = ...) -> None: ...

class GetMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMetricsResponse(_message.Message):
    __slots__ = ("body",)
    BODY_FIELD_NUMBER: _ClassVar[int]
    body: _httpbody_pb2.HttpBody
    def __init__(self, body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("status", "watcher", "webhook", "system_prompt", "env", "endpoints", "config", "version", "mode", "cluster")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    status: str
    watcher: WatcherStatus
    webhook: WebhookStatus
    system_prompt: SystemPromptStatus
    env: _struct_pb2.Struct
    endpoints: _struct_pb2.Struct
    config: _struct_pb2.Struct
    version: str
    mode: str
    cluster: ClusterStatus
    def __init__(self, status: _Optional[str] = ..., watcher: _Optional[_Union[WatcherStatus, _Mapping]] = ..., webhook: _Optional[_Union[WebhookStatus, _Mapping]] = ..., system_prompt: _Optional[_Union[SystemPromptStatus, _Mapping]] = ..., env: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., endpoints: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[str] = ..., mode: _Optional[str] = ..., cluster: _Optional[_Union[ClusterStatus, _Mapping]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("concurrency", "uptime", "memory", "watcher", "webhook", "system_prompt", "env", "triggers", "sessions_running", "shutting_down", "mode", "cluster", "runs_stalled", "api_keys")
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    SHUTTING_DOWN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    RUNS_STALLED_FIELD_NUMBER: _ClassVar[int]
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    concurrency: ConcurrencyStatus
    uptime: float
    memory: MemoryStatus
    watcher: WatcherStatus
    webhook: WebhookStatus
    system_prompt: SystemPromptStatus
    env: _struct_pb2.Struct
    triggers: TriggersStatus
    sessions_running: int
    shutting_down: bool
    mode: str
    cluster: ClusterStatus
    runs_stalled: int
    api_keys: ApiKeysStatus
    def __init__(self, concurrency: _Optional[_Union[ConcurrencyStatus, _Mapping]] = ..., uptime: _Optional[float] = ..., memory: _Optional[_Union[MemoryStatus, _Mapping]] = ..., watcher: _Optional[_Union[WatcherStatus, _Mapping]] = ..., webhook: _Optional[_Union[WebhookStatus, _Mapping]] = ..., system_prompt: _Optional[_Union[SystemPromptStatus, _Mapping]] = ..., env: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., triggers: _Optional[_Union[TriggersStatus, _Mapping]] = ..., sessions_running: _Optional[int] = ..., shutting_down: _Optional[bool] = ..., mode: _Optional[str] = ..., cluster: _Optional[_Union[ClusterStatus, _Mapping]] = ..., runs_stalled: _Optional[int] = ..., api_keys: _Optional[_Union[ApiKeysStatus, _Mapping]] = ...) -> None: ...

class ApiKeysStatus(_message.Message):
    __slots__ = ("path", "keys", "loaded_at", "error")
    PATH_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    path: str
    keys: int
    loaded_at: str
    error: str
    def __init__(self, path: _Optional[str] = ..., keys: _Optional[int] = ..., loaded_at: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...
