from codex_gateway.v1 import sessions_pb2 as _sessions_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RelayTailRequest(_message.Message):
    __slots__ = ("tail",)
    TAIL_FIELD_NUMBER: _ClassVar[int]
    tail: _sessions_pb2.TailSessionRequest
    def __init__(self, tail: _Optional[_Union[_sessions_pb2.TailSessionRequest, _Mapping]] = ...) -> None: ...

class RelayTailResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_sessions_pb2.TailSessionResponse]
    def __init__(self, items: _Optional[_Iterable[_Union[_sessions_pb2.TailSessionResponse, _Mapping]]] = ...) -> None: ...
