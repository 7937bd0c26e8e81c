from codex_gateway.v1 import runs_pb2 as _runs_pb2
from codex_gateway.v1 import sessions_pb2 as _sessions_pb2
from codex_gateway.v1 import status_pb2 as _status_pb2
from codex_gateway.v1 import triggers_pb2 as _triggers_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
