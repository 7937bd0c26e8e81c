"""How a probe talks to the gateway: REST through httpx or raw bytes on a socket, gRPC through the
generated stub or a generic channel method; each answers `rest <status>` / `grpc <CODE>`."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
from google.protobuf import json_format, message, struct_pb2

from bench.hostile.census import Probe, Target
from codex_gateway.v1 import gateway_pb2

SID = "{sid}"
"""In a path or a request's `session_id`: replaced by the census's session when sent."""
SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
DAILY = {"mode": "daily", "time": "14:00", "timezone": "UTC"}


def streaming(method: str) -> bool:
    return bool(SERVICE.methods_by_name[method].server_streaming)


async def rest(target: Target, method: str, path: str, **kwargs: Any) -> str:
    """One request through httpx (the body read whole, streams included)."""
    response = await target.http.request(method, path, **kwargs)
    return f"rest {response.status_code}"


async def raw(target: Target, request: bytes) -> str:
    """Bytes no HTTP client would send; the status of the first answer, or `rest none`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", target.gateway.rest_port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n")
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return "rest none"
    finally:
        writer.close()
    parts = head.split(b" ", 2)
    return f"rest {int(parts[1])}" if len(parts) > 1 and parts[1].isdigit() else "rest none"


def with_session(request: message.Message, target: Target) -> message.Message:
    """`request`, its `session_id` set to the census's session where it says SID."""
    if getattr(request, "session_id", None) != SID:
        return request
    copy: Any = type(request)()
    copy.CopyFrom(request)
    copy.session_id = target.session_id
    return copy  # type: ignore[no-any-return]  # a copy of a Message


async def call(
    target: Target,
    method: str,
    request: message.Message,
    metadata: tuple[tuple[str, str], ...] = (),
    deadline_s: float = 30.0,
) -> str:
    """One RPC through the generated stub; a stream is read to its end."""
    started = time.monotonic()
    try:
        stub_method = getattr(target.stub, method)
        rpc = stub_method(with_session(request, target), metadata=metadata, timeout=deadline_s)
        if streaming(method):
            async for _ in rpc:
                pass
        else:
            await rpc
    except grpc.aio.AioRpcError as error:
        return _answer(error, started, deadline_s)
    return "grpc OK"


async def call_bytes(target: Target, method: str, payload: bytes, deadline_s: float = 30.0) -> str:
    """`payload` sent as the request message of `method` as it is, bypassing serialization."""
    path = f"/{SERVICE.full_name}/{method}"
    started = time.monotonic()
    try:
        if streaming(method):
            stream = target.channel.unary_stream(path, None, None)(payload, timeout=deadline_s)
            async for _ in stream:
                pass
        else:
            await target.channel.unary_unary(path, None, None)(payload, timeout=deadline_s)
    except grpc.aio.AioRpcError as error:
        return _answer(error, started, deadline_s)
    return "grpc OK"


def _answer(error: grpc.aio.AioRpcError, started: float, deadline_s: float) -> str:
    """`grpc <CODE>`, or `hang` when the call's own deadline ran out (DEADLINE_EXCEEDED
    earlier than that is the server's answer: a run's timeout)."""
    if (
        error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        and time.monotonic() - started >= deadline_s * 0.95
    ):
        return "hang"
    return f"grpc {error.code().name}"


def value(data: Any) -> struct_pb2.Value:
    """A `google.protobuf.Value` holding `data` (NaN and infinities kept as doubles)."""
    out = struct_pb2.Value()
    if isinstance(data, dict):
        out.struct_value.CopyFrom(struct(data))
    elif isinstance(data, list):
        out.list_value.values.extend(value(item) for item in data)
    elif isinstance(data, bool):
        out.bool_value = data
    elif isinstance(data, int | float):
        out.number_value = float(data)
    elif data is None:
        out.null_value = struct_pb2.NULL_VALUE
    else:
        out.string_value = str(data)
    return out


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    for key, item in data.items():
        out.fields[key].CopyFrom(value(item))
    return out


def parse(message_type: type[message.Message], fields: dict[str, Any]) -> message.Message:
    """A request built from its JSON form (json_format, as the REST bridge does)."""
    built = message_type()
    json_format.ParseDict(fields, built)
    return built


def rest_probe(
    group: str,
    method: str,
    path: str,
    label: str = "",
    *,
    refusal_expected: bool = False,
    **kwargs: Any,
) -> Probe:
    """A REST probe whose path may name `{sid}` (the census's session)."""

    async def send(target: Target) -> str:
        return await rest(target, method, path.replace(SID, target.session_id), **kwargs)

    name = f"REST {method} {short(path)} {label or short(describe(kwargs))}".rstrip()
    return Probe(name, group, send, refusal_expected=refusal_expected)


def raw_json_probe(name: str, group: str, method: str, path: str, body: str) -> Probe:
    """A REST probe with a JSON body written as text (a 400-digit number, `NaN`...)."""

    async def send(target: Target) -> str:
        return await rest(
            target,
            method,
            path.replace(SID, target.session_id),
            content=body.encode(),
            headers={"Content-Type": "application/json"},
        )

    return Probe(f"REST {method} {path} {name}", group, send)


def grpc_probe(
    name: str,
    group: str,
    method: str,
    request: message.Message,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Probe:
    """A gRPC probe; a `session_id` of SID names the census's session."""

    async def send(target: Target) -> str:
        return await call(target, method, request, metadata)

    return Probe(f"gRPC {method} {name}", group, send)


def short(text: str, limit: int = 60) -> str:
    """At most `limit` characters of `text`, its length said when cut."""
    return text if len(text) <= limit else f"{text[: limit - 12]}…({len(text)} chars)"


def describe(kwargs: dict[str, Any]) -> str:
    shown = {key: item for key, item in kwargs.items() if key != "timeout"}
    try:
        return json.dumps(shown, default=str)
    except ValueError:
        return str(shown)
