"""Transcoding: an HTTP request into the RPC's request message, and a message into JSON.

Requests, in grpc-gateway's order: the body (`*` is the whole message, a field name is that
field), then the path parameters (so the path wins over the body), then query parameters for the
remaining top-level scalar fields. The body is read by bridge/reader.py when it has the usual
shapes, else by json_format. Anything a client can send that does not fit is
`InvalidRequest` (400) naming the parameter or field, never an exception of another kind.

Responses are printed by bridge/printer.py.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import struct
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from .bindings import Binding
from .errors import InvalidRequest
from .reader import Unusual, read_message

ScalarValue = str | bool | int | float | bytes

_BAD_ESCAPE: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_INTEGER: Final = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
_MAX_ECHO: Final = 64  # characters of a bad value quoted back in an error message

_T = FieldDescriptor
_INT_RANGES: Final[Mapping[int, tuple[int, int]]] = {
    _T.TYPE_INT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _T.TYPE_INT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _T.TYPE_UINT32: (0, 2**32 - 1),
    _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_UINT64: (0, 2**64 - 1),
    _T.TYPE_FIXED64: (0, 2**64 - 1),
}
_INT64_TYPES: Final = frozenset(
    {_T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64, _T.TYPE_UINT64, _T.TYPE_FIXED64}
)
_FLOAT32_MAX: Final = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]


# --- requests -------------------------------------------------------------------------------


def decode_component(raw: bytes, *, what: str, plus_as_space: bool = False) -> str:
    """Strict percent-decoding of one path segment or query name/value into UTF-8 text."""
    if plus_as_space:
        raw = raw.replace(b"+", b" ")
    if _BAD_ESCAPE.search(raw):
        raise InvalidRequest(f"Malformed percent-encoding in {what}")
    try:
        return urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"Invalid UTF-8 in {what}") from exc


def parse_query(query_string: bytes) -> list[tuple[str, str]]:
    """`a=1&b=x+y` into decoded (name, value) pairs, in order; `a` alone has the value ''."""
    pairs: list[tuple[str, str]] = []
    for piece in query_string.split(b"&"):
        if not piece:
            continue
        raw_name, _, raw_value = piece.partition(b"=")
        name = decode_component(raw_name, what="the query string", plus_as_space=True)
        value = decode_component(
            raw_value, what=f"query parameter '{_echo(name)}'", plus_as_space=True
        )
        pairs.append((name, value))
    return pairs


def parse_scalar(field: FieldDescriptor, text: str, *, what: str) -> ScalarValue:
    """One query or path value as the field's type; `InvalidRequest` naming `what` if it isn't."""
    kind = field.type
    if kind == _T.TYPE_STRING:
        return text
    if kind == _T.TYPE_BOOL:
        folded = text.lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        raise _bad_value(what, "a boolean (true or false)", text)
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        # The length check keeps int() far from its digit limit.
        if not _INTEGER.fullmatch(text) or len(text) > 40:
            raise _bad_value(what, "an integer", text)
        number = int(text)
        if not low <= number <= high:
            raise InvalidRequest(f"Invalid value for {what}: {_echo(text)} is out of range")
        return number
    if kind in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
        if not _FLOAT.fullmatch(text):
            raise _bad_value(what, "a number", text)
        real = float(text)
        limit = _FLOAT32_MAX if kind == _T.TYPE_FLOAT else math.inf
        if not math.isfinite(real) or abs(real) > limit:
            raise InvalidRequest(f"Invalid value for {what}: {_echo(text)} is out of range")
        return real
    if kind == _T.TYPE_ENUM and field.enum_type is not None:
        value = field.enum_type.values_by_name.get(text)
        if value is not None:
            return int(value.number)
        if _INTEGER.fullmatch(text) and len(text) < 12:
            return int(text)
        raise _bad_value(what, "one of " + ", ".join(field.enum_type.values_by_name), text)
    if kind == _T.TYPE_BYTES:
        decoded = _base64(text)
        if decoded is None:
            raise _bad_value(what, "base64 bytes", text)
        return decoded
    raise InvalidRequest(f"Invalid {what}: not a scalar field")


def _base64(text: str) -> bytes | None:
    """Standard or URL-safe alphabet, padding optional, nothing else (grpc-gateway's rule)."""
    standard = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_json_body(raw: bytes) -> Any:
    """The request body as JSON; an empty body is `{}`."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:  # json's own stack guard: an attack, or a very odd client
        raise InvalidRequest("Invalid JSON payload: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, digits
        raise InvalidRequest("Invalid JSON payload") from exc


def build_request(
    binding: Binding,
    *,
    path_params: Mapping[str, bytes],
    query: Sequence[tuple[str, str]],
    body: bytes | None,
) -> Message:
    """The RPC request for one HTTP request (`body` is None when the binding takes none)."""
    request = binding.request_class()
    if binding.body:
        _merge_body(request, binding.body, parse_json_body(body or b""))
    for variable, raw in path_params.items():
        what = f"path parameter '{variable}'"
        _set_scalar(request, variable.split("."), decode_component(raw, what=what), what)
    for name, values in _group(query, binding.query_fields).items():
        field = binding.query_fields[name]
        what = f"query parameter '{name}'"
        if field.is_repeated:
            getattr(request, name).extend(parse_scalar(field, v, what=what) for v in values)
        elif len(values) > 1:
            raise InvalidRequest(f"Query parameter '{name}' is given more than once")
        else:
            setattr(request, name, parse_scalar(field, values[0], what=what))
    return request


def _group(
    query: Iterable[tuple[str, str]], fields: Mapping[str, FieldDescriptor]
) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in query:
        if name in fields:
            grouped.setdefault(name, []).append(value)
    return grouped


def _merge_body(request: Message, body_field: str, value: Any) -> None:
    document = value if body_field == "*" else {body_field: value}
    if isinstance(document, dict):
        try:
            read_message(request, document)
            return
        except Unusual:
            request.Clear()  # json_format reads it all again, or words the refusal
    merge_body_by_json_format(request, body_field, value)


def merge_body_by_json_format(request: Message, body_field: str, value: Any) -> None:
    """The body read by the shape checks and json_format alone: every body bridge/reader.py
    finds unusual, every refusal's wording, and the oracle of tests/bridge/test_reader.py."""
    if body_field == "*":
        if not isinstance(value, dict):
            raise InvalidRequest("Invalid request body: expected a JSON object")
        _check_shape(value, _descriptor(request), "")
        document = value
    else:
        field = _descriptor(request).fields_by_name[body_field]
        _check_field_shape(field, value, "")
        document = {body_field: value}
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidRequest(f"Invalid request body: {_echo(str(exc), 200)}") from exc
    # json_format's less polished paths; OverflowError: an integer too big for a double in a
    # Struct (a 400-digit number in `metadata`).
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise InvalidRequest(f"Invalid request body: {_echo(str(exc), 200)}") from exc


def _check_shape(value: dict[str, Any], message: Descriptor, path: str) -> None:
    """Refuse non-objects where a message is expected, which json_format lets through."""
    for key, item in value.items():
        field = message.fields_by_name.get(key) or _by_json_name(message).get(key)
        if field is not None:
            _check_field_shape(field, item, f"{path}{field.name}")


def _check_field_shape(field: FieldDescriptor, value: Any, path: str) -> None:
    if field.type == _T.TYPE_BYTES:
        _check_bytes(field, value, path or "request body")
        return
    target = field.message_type
    if target is None or target.full_name.startswith("google.protobuf.") or value is None:
        return
    where = path or "request body"
    if target.GetOptions().map_entry:
        value_field = target.fields_by_name["value"]
        if isinstance(value, dict):
            for key, item in value.items():
                _check_element(value_field, item, f"{where}[{key!r}]")
        return
    if field.is_repeated:
        if isinstance(value, list):
            for index, item in enumerate(value):
                _check_element(field, item, f"{where}[{index}]")
        return
    if not isinstance(value, dict):
        raise InvalidRequest(f"Invalid value for field '{where}': expected a JSON object")
    _check_shape(value, target, f"{path}." if path else "")


def _check_bytes(field: FieldDescriptor, value: Any, where: str) -> None:
    """Strict base64 for bytes (json_format skips what is not in the alphabet, so that `!!!!`
    would decode into something), and a message that names the field."""
    if field.is_repeated and isinstance(value, list):
        for index, item in enumerate(value):
            _check_bytes_value(item, f"{where}[{index}]")
    else:
        _check_bytes_value(value, where)


def _check_bytes_value(value: Any, where: str) -> None:
    if value is None:
        return  # json_format's rules for null
    # MIME-style line breaks are common in base64 text; any other character is an error.
    if not isinstance(value, str) or _base64(value.replace("\r", "").replace("\n", "")) is None:
        shown = value if isinstance(value, str) else json.dumps(value)[:_MAX_ECHO]
        raise _bad_value(f"field '{where}'", "base64 bytes", shown)


def _check_element(field: FieldDescriptor, item: Any, where: str) -> None:
    target = field.message_type
    if target is None or target.full_name.startswith("google.protobuf.") or item is None:
        return  # json_format reports a null element itself
    if not isinstance(item, dict):
        raise InvalidRequest(f"Invalid value for field '{where}': expected a JSON object")
    _check_shape(item, target, f"{where}.")


def _descriptor(message: Message) -> Descriptor:
    # The stubs type DESCRIPTOR as a union of the upb and pure-Python classes; both are this.
    return cast(Descriptor, message.DESCRIPTOR)


@functools.cache
def _by_json_name(message: Descriptor) -> Mapping[str, FieldDescriptor]:
    return {f.json_name: f for f in message.fields}


def _set_scalar(message: Message, path: Sequence[str], text: str, what: str) -> None:
    for name in path[:-1]:
        message = getattr(message, name)
    field = _descriptor(message).fields_by_name[path[-1]]
    setattr(message, field.name, parse_scalar(field, text, what=what))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number


def _bad_value(what: str, expected: str, text: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for {what}: expected {expected}, got {_echo(text)!r}")


def _echo(text: str, limit: int = _MAX_ECHO) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
