"""Request bodies into messages, in one pass over the JSON, for the shapes clients send.

`json_format.ParseDict` is the rule (bridge/transcode.py calls it with unknown fields ignored),
but it is pure Python that looks every key and value up again on every request: the biggest
step of turning a `POST /completion` into its RPC. `read_message` does what it would do, with
a plan made once per message type, for the plain shapes alone: keys that are proto field names,
strings, booleans and integers, messages, Struct/Value/ListValue, lists of those and string
maps. Anything else (a null, a camelCase or unknown key, a number for a float or enum field,
bytes, a wrapper or a timestamp, a real oneof, deep nesting, a value a setter refuses) raises
`Unusual`; the caller then clears the message and lets json_format read the whole body, so an
unusual body is read, or refused with its message, exactly as before.

tests/bridge/test_reader.py holds json_format as the oracle this must agree with.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .printer import INTEGER_TYPES

_T = FieldDescriptor
# json_format counts nesting (each message, Struct and Value) up to 100; past this the body
# goes to json_format, which decides.
MAX_DEPTH: Final = 32
# json_format refuses a string with an unpaired surrogate; any surrogate goes to it here.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_STRUCT: Final = "google.protobuf.Struct"
_VALUE: Final = "google.protobuf.Value"
_LIST_VALUE: Final = "google.protobuf.ListValue"

# Sets one field of a message from its JSON value: (message, field name, value, depth).
Read = Callable[[Message, str, Any, int], None]


class Unusual(Exception):
    """A body this reader leaves to json_format."""


def read_message(message: Message, document: Mapping[str, Any], depth: int = 1) -> None:
    """Set `message` (fresh) from the JSON object `document`, as ParseDict would; `Unusual` for
    a body it leaves to json_format (the message is then partly set: clear it)."""
    if depth > MAX_DEPTH:
        raise Unusual
    plan = _plan(cast(Descriptor, message.DESCRIPTOR))
    try:
        for key, value in document.items():
            read = plan.get(key)
            if read is None or value is None:
                raise Unusual
            read(message, key, value, depth)
    except Unusual:
        raise
    except Exception as exc:  # a setter's refusal (an integer out of range, say): json_format's
        raise Unusual from exc


@functools.cache
def _plan(descriptor: Descriptor) -> dict[str, Read]:
    """The reader of each field a key may name, by its proto name; a name that is also another
    field's JSON name (which json_format would take first) is left out, as is any field of a
    type this module leaves to json_format."""
    by_json_name = {field.json_name: field for field in descriptor.fields}
    plan: dict[str, Read] = {}
    for field in descriptor.fields:
        if by_json_name.get(field.name, field) is not field:
            continue
        oneof = field.containing_oneof
        if oneof is not None and len(oneof.fields) > 1:
            continue  # two members of one oneof is an error only json_format words
        read = _field_reader(field)
        if read is not None:
            plan[field.name] = read
    return plan


def _field_reader(field: FieldDescriptor) -> Read | None:
    target = field.message_type
    if target is not None and target.GetOptions().map_entry:
        key, value = target.fields_by_name["key"], target.fields_by_name["value"]
        if key.type == _T.TYPE_STRING and value.type == _T.TYPE_STRING:
            return _string_map
        return None
    if field.is_repeated:
        if target is None:
            return _strings if field.type == _T.TYPE_STRING else None
        if target.full_name == _STRUCT:
            return _structs
        return None if target.full_name.startswith("google.protobuf.") else _messages
    if target is not None:
        if target.full_name == _STRUCT:
            return _struct_field
        if target.full_name == _VALUE:
            return _value_field
        return None if target.full_name.startswith("google.protobuf.") else _message
    if field.type == _T.TYPE_STRING:
        return _string
    if field.type == _T.TYPE_BOOL:
        return _bool
    if field.type in INTEGER_TYPES:
        return _integer
    return None  # floats, enums, bytes


def _text(value: Any) -> str:
    if type(value) is not str or (not value.isascii() and _SURROGATE.search(value)):
        raise Unusual
    return value


def _string(message: Message, name: str, value: Any, depth: int) -> None:
    setattr(message, name, _text(value))


def _bool(message: Message, name: str, value: Any, depth: int) -> None:
    if type(value) is not bool:
        raise Unusual
    setattr(message, name, value)


def _integer(message: Message, name: str, value: Any, depth: int) -> None:
    if type(value) is not int:  # a float or a string of digits: json_format's rules
        raise Unusual
    setattr(message, name, value)


def _message(message: Message, name: str, value: Any, depth: int) -> None:
    if type(value) is not dict:
        raise Unusual
    child: Message = getattr(message, name)
    child.SetInParent()
    read_message(child, value, depth + 1)


def _strings(message: Message, name: str, value: Any, depth: int) -> None:
    if type(value) is not list:
        raise Unusual
    getattr(message, name).extend([_text(item) for item in value])


def _messages(message: Message, name: str, value: Any, depth: int) -> None:
    if type(value) is not list:
        raise Unusual
    container = getattr(message, name)
    for item in value:
        if type(item) is not dict:
            raise Unusual
        read_message(container.add(), item, depth + 1)


def _string_map(message: Message, name: str, value: Any, depth: int) -> None:
    if type(value) is not dict:
        raise Unusual
    mapping = getattr(message, name)
    for key, item in value.items():
        mapping[_text(key)] = _text(item)


def _struct_field(message: Message, name: str, value: Any, depth: int) -> None:
    child = getattr(message, name)
    child.SetInParent()
    _fill_struct(child, value, depth + 1)


def _structs(message: Message, name: str, value: Any, depth: int) -> None:
    if type(value) is not list:
        raise Unusual
    container = getattr(message, name)
    for item in value:
        _fill_struct(container.add(), item, depth + 1)


def _value_field(message: Message, name: str, value: Any, depth: int) -> None:
    child = getattr(message, name)
    child.SetInParent()
    _fill_value(child, value, depth + 1)


def _fill_struct(message: struct_pb2.Struct, value: Any, depth: int) -> None:
    if type(value) is not dict or depth > MAX_DEPTH:
        raise Unusual
    message.Clear()  # as json_format: an empty object is a present, empty Struct
    fields = message.fields
    for key, item in value.items():
        _fill_value(fields[key], item, depth + 1)


def _fill_value(message: struct_pb2.Value, value: Any, depth: int) -> None:
    kind = type(value)
    if kind is str:
        message.string_value = value
    elif kind is bool:
        message.bool_value = value
    elif kind is int or kind is float:  # json.loads gives finite floats only (transcode.py)
        message.number_value = value
    elif kind is dict:
        _fill_struct(message.struct_value, value, depth + 1)
    elif kind is list:
        if depth + 1 > MAX_DEPTH:
            raise Unusual
        values = message.list_value
        values.ClearField("values")
        for item in value:
            _fill_value(values.values.add(), item, depth + 2)
    elif value is None:
        message.null_value = struct_pb2.NULL_VALUE
    else:
        raise Unusual
