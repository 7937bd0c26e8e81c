"""Messages as the bridge's JSON, in one pass over each message's set fields.

The rules are protojson's (`json_format.MessageToDict` with proto field names and fields without
presence printed) with the contract's changes: an unset field with presence (proto3 `optional`,
a message) is null and an unset member of a real oneof is absent; 64-bit integers are JSON
numbers, not strings; integral doubles print as integers (3600, not 3600.0), as protojson and
the reference's JavaScript print them; Struct/Value/ListValue are the free-form JSON they hold.

MessageToDict followed by a walk that applied those changes cost more than any other step of a
`GET /sessions/:id` in the bridge; tests/bridge/test_printer.py holds that two-pass printer as
the oracle this one must agree with on every response message.
"""

from __future__ import annotations

import base64
import functools
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from google.protobuf import descriptor_pb2, json_format, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .bindings import Binding

_T = FieldDescriptor
MAX_EXACT_FLOAT_INT: Final = 2**53
INTEGER_TYPES: Final = frozenset(
    {
        _T.TYPE_INT32,
        _T.TYPE_SINT32,
        _T.TYPE_SFIXED32,
        _T.TYPE_UINT32,
        _T.TYPE_FIXED32,
        _T.TYPE_INT64,
        _T.TYPE_SINT64,
        _T.TYPE_SFIXED64,
        _T.TYPE_UINT64,
        _T.TYPE_FIXED64,
    }
)
_PASS_THROUGH: Final = frozenset({_T.TYPE_STRING, _T.TYPE_BOOL}) | INTEGER_TYPES

Convert = Callable[[Any], Any]


def message_to_json(message: Message) -> dict[str, Any]:
    """A message as the bridge's JSON (see the module docstring)."""
    printed: dict[str, Any] = _print(message)
    return printed


def response_json(binding: Binding, message: Message) -> Any:
    """The HTTP body of a unary response: the message, or its `response_body` field."""
    document = message_to_json(message)
    return document[binding.response_body] if binding.response_body else document


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to print one message type."""

    template: dict[str, Any]
    """Every always-present key in declaration order, with its value when unset."""
    repeated: tuple[tuple[str, type[list[Any]] | type[dict[str, Any]]], ...]
    """Repeated and map keys: a fresh empty list or dict each time, never a shared one."""
    convert: dict[int, Convert]
    """By field number: the printer of a set field's value."""
    whole: Convert | None = None
    """For a well-known type: the printer of the whole message instead."""
    after: dict[str, Any] | None = None
    """With a real oneof: the always-present keys declared after its first member (`template`
    then holds those before it), so that the member set prints in its declared place."""
    oneof_numbers: frozenset[int] = frozenset()


def _print(message: Message) -> Any:
    plan = _plan(_descriptor(message))
    if plan.whole is not None:
        return plan.whole(message)
    out = dict(plan.template)
    convert = plan.convert
    fields = message.ListFields()
    if plan.after is not None:
        for field, value in fields:
            if field.number in plan.oneof_numbers:
                out[field.name] = convert[field.number](value)
        out.update(plan.after)
    for name, empty in plan.repeated:
        out[name] = empty()
    for field, value in fields:
        out[field.name] = convert[field.number](value)
    return out


@functools.cache
def _plan(descriptor: Descriptor) -> _Plan:
    if descriptor.full_name.startswith("google.protobuf."):
        return _Plan({}, (), {}, _WELL_KNOWN.get(descriptor.full_name, _other_well_known))
    optional = _proto3_optional(descriptor)
    template: dict[str, Any] = {}
    repeated: list[tuple[str, type[list[Any]] | type[dict[str, Any]]]] = []
    convert: dict[int, Convert] = {}
    oneof_numbers = frozenset(
        f.number for f in descriptor.fields if f.containing_oneof and f.name not in optional
    )
    before: dict[str, Any] | None = None
    for field in descriptor.fields:
        convert[field.number] = _field_printer(field)
        if field.number in oneof_numbers:
            if before is None:
                before, template = template, {}
            continue  # an unset member of a real oneof is absent, not null
        if _is_map(field):
            template[field.name] = None
            repeated.append((field.name, dict))
        elif field.is_repeated:
            template[field.name] = None
            repeated.append((field.name, list))
        elif field.has_presence:
            template[field.name] = None
        else:
            template[field.name] = _single_printer(field)(field.default_value)
    if before is None:
        return _Plan(template, tuple(repeated), convert)
    return _Plan(before, tuple(repeated), convert, after=template, oneof_numbers=oneof_numbers)


def _field_printer(field: FieldDescriptor) -> Convert:
    if _is_map(field):
        entry = cast(Descriptor, field.message_type)
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        key_of = _map_key_printer(key_field)
        value_of = _single_printer(value_field)
        return lambda mapping: {key_of(key): value_of(item) for key, item in mapping.items()}
    single = _single_printer(field)
    if field.is_repeated:
        return lambda values: [single(value) for value in values]
    return single


def _single_printer(field: FieldDescriptor) -> Convert:
    kind = field.type
    if kind in _PASS_THROUGH:
        return _same
    if kind == _T.TYPE_DOUBLE:
        return _double
    if kind == _T.TYPE_FLOAT:
        return _float32
    if kind == _T.TYPE_BYTES:
        return _bytes
    if kind == _T.TYPE_ENUM:
        values = field.enum_type.values_by_number  # type: ignore[union-attr]  # an enum field

        def enum_name(number: int) -> str | int:
            value = values.get(number)
            return value.name if value is not None else number

        return enum_name
    # A message: Struct and its kin straight to their printer, others by their plan.
    return _WELL_KNOWN.get(field.message_type.full_name, _print)  # type: ignore[union-attr]


def _map_key_printer(field: FieldDescriptor) -> Convert:
    if field.type == _T.TYPE_BOOL:
        return lambda key: "true" if key else "false"
    return str


def _same(value: Any) -> Any:
    return value


def _double(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return integral(value)


def _float32(value: float) -> Any:
    """protojson's shortest decimal that reads back as the same 32-bit float."""
    if math.isnan(value) or math.isinf(value):
        return _double(value)
    stored = struct.pack("<f", value)
    for digits in range(6, 10):
        shortest = float(f"{value:.{digits}g}")
        if struct.pack("<f", shortest) == stored:
            return integral(shortest)
    return integral(value)


def _bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def integral(value: Any) -> Any:
    """3600.0 prints as 3600, as protojson (and the reference's JavaScript) print it."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_FLOAT_INT:
        return int(value)
    return value


def _struct(message: Message) -> dict[str, Any]:
    # The map by key: its ItemsView costs a third more on the upb map.
    fields = cast(struct_pb2.Struct, message).fields
    return {key: _value(fields[key]) for key in fields}


def _list_value(message: Message) -> list[Any]:
    return [_value(value) for value in cast(struct_pb2.ListValue, message).values]


def _value(message: Message) -> Any:
    value = cast(struct_pb2.Value, message)
    kind = value.WhichOneof("kind")
    # The kinds events hold most first.
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return _struct(value.struct_value)
    if kind == "number_value":
        number = value.number_value
        if math.isnan(number) or math.isinf(number):
            raise ValueError(f"Fail to serialize {number} for Value.number_value (not JSON)")
        return integral(number)
    if kind == "bool_value":
        return value.bool_value
    if kind == "list_value":
        return _list_value(value.list_value)
    return None  # null_value, or no kind at all


def _other_well_known(message: Message) -> Any:
    """Timestamps, durations, wrappers...: protojson's form, 64-bit and integral numbers fixed."""
    printed = json_format.MessageToDict(message, preserving_proto_field_name=True)
    name = _descriptor(message).full_name
    if name in ("google.protobuf.Int64Value", "google.protobuf.UInt64Value"):
        return int(printed) if isinstance(printed, str) else printed
    return integral(printed)


_WELL_KNOWN: Final[dict[str, Convert]] = {
    "google.protobuf.Struct": _struct,
    "google.protobuf.Value": _value,
    "google.protobuf.ListValue": _list_value,
}


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return bool(field.is_repeated and entry is not None and entry.GetOptions().map_entry)


def _descriptor(message: Message) -> Descriptor:
    # The stubs type DESCRIPTOR as a union of the upb and pure-Python classes; both are this.
    return cast(Descriptor, message.DESCRIPTOR)


@functools.cache
def _proto3_optional(message: Descriptor) -> frozenset[str]:
    """Fields declared `optional` in proto3: their oneof is synthetic, so unset is null."""
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    return frozenset(f.name for f in proto.field if f.proto3_optional)
