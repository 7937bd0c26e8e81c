"""Reading request bodies (bridge/reader.py): the usual shapes in one pass, and agreement with
json_format (what the bridge read every body with before) on arbitrary bodies for every request
message the REST API takes: the same message, or the same 400."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import transcode
from bridge.bindings import Binding, bindings_from_service, service_descriptor
from bridge.errors import InvalidRequest
from bridge.reader import MAX_DEPTH, Unusual, read_message
from bridge.transcode import build_request
from codex_gateway.v1 import runs_pb2

BINDINGS = {b.method.name: b for b in bindings_from_service(service_descriptor())}
WITH_BODY = sorted(name for name, binding in BINDINGS.items() if binding.body)
_T = FieldDescriptor


def oracle(binding: Binding, body: bytes) -> tuple[str, Any]:
    """What the bridge answered before bridge/reader.py: the shape checks, then ParseDict."""
    request = binding.request_class()
    try:
        value = transcode.parse_json_body(body)
        transcode.merge_body_by_json_format(request, binding.body, value)
    except InvalidRequest as exc:
        return "error", exc.message
    return "ok", request.SerializeToString(deterministic=True)


def outcome(binding: Binding, body: bytes) -> tuple[str, Any]:
    try:
        request = build_request(binding, path_params={}, query=[], body=body)
    except InvalidRequest as exc:
        return "error", exc.message
    return "ok", request.SerializeToString(deterministic=True)


def read(message: Message, document: dict[str, Any]) -> Message:
    read_message(message, document)
    return message


# --- the usual shapes are read here ---------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"run": {"prompt": "hi"}}, id="prompt"),
        pytest.param({"run": {}}, id="empty-run"),
        pytest.param(
            {
                "run": {
                    "prompt": "h\u00e9llo \U0001f600",
                    "model": "m",
                    "timeout_ms": 60_000,
                    "json_mode": True,
                    "persistent": False,
                    "env": {"A": "1", "B": ""},
                    "messages": [{"role": "user", "content": "x"}],
                    "metadata": {"n": 1, "f": 2.5, "s": "x", "b": True, "z": None},
                    "output_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                }
            },
            id="everything-usual",
        ),
        pytest.param({"run": {"metadata": {}, "env": {}}}, id="empty-struct-and-map"),
        pytest.param({"run": {"metadata": {"l": [[], {}, [1, [2]], None]}}}, id="nested-lists"),
    ],
)
def test_usual_bodies_are_read_without_json_format(document: dict[str, Any]) -> None:
    expected = runs_pb2.CompleteRequest()
    json_format.ParseDict(document, expected, ignore_unknown_fields=True)
    assert read(runs_pb2.CompleteRequest(), document) == expected
    assert read(runs_pb2.CompleteRequest(), document).SerializeToString(
        deterministic=True
    ) == expected.SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    "structured",
    [
        pytest.param(1, id="number"),
        pytest.param("s", id="string"),
        pytest.param(False, id="bool"),
        pytest.param({}, id="empty-object"),
        pytest.param([], id="empty-list"),
        pytest.param({"a": [1, {"b": None}, []]}, id="nested"),
    ],
)
def test_a_value_field_is_read_as_json_format_reads_it(structured: Any) -> None:
    # No request has a google.protobuf.Value field today; a result does.
    document = {"structured": structured}
    expected = runs_pb2.RunResult()
    json_format.ParseDict(document, expected)
    got = read(runs_pb2.RunResult(), document)
    assert got.HasField("structured")
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


def test_present_but_empty_messages_stay_present() -> None:
    request = read(runs_pb2.CompleteRequest(), {"run": {"metadata": {}}})
    assert request.HasField("run")
    assert request.run.HasField("metadata")
    assert not request.run.HasField("output_schema")


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"run": {"prompt": None}}, id="null"),
        pytest.param({"run": {"systemPrompt": "x"}}, id="json-name"),
        pytest.param({"run": {"unknown": 1}}, id="unknown-key"),
        pytest.param({"run": {"timeout_ms": "5"}}, id="integer-as-string"),
        pytest.param({"run": {"timeout_ms": 5.0}}, id="integer-as-float"),
        pytest.param({"run": {"timeout_ms": 2**70}}, id="integer-out-of-range"),
        pytest.param({"run": {"json_mode": 1}}, id="bool-as-number"),
        pytest.param({"run": {"prompt": 5}}, id="number-for-string"),
        pytest.param({"run": {"prompt": "\ud800"}}, id="lone-surrogate"),
        pytest.param({"run": {"images": [{"data": "aGk="}]}}, id="bytes"),
        pytest.param({"run": {"env": {"A": 1}}}, id="map-value-not-a-string"),
        pytest.param({"run": {"metadata": {"n": 10**400}}}, id="huge-number-in-struct"),
        pytest.param({"run": []}, id="list-for-message"),
    ],
)
def test_unusual_bodies_are_left_to_json_format(document: dict[str, Any]) -> None:
    with pytest.raises(Unusual):
        read_message(runs_pb2.CompleteRequest(), document)


def test_deep_nesting_is_left_to_json_format() -> None:
    nested: Any = "x"
    for _ in range(MAX_DEPTH):
        nested = {"a": nested}
    with pytest.raises(Unusual):
        read_message(runs_pb2.CompleteRequest(), {"run": {"metadata": nested}})
    body = json.dumps({"run": {"metadata": nested}}).encode()
    assert outcome(BINDINGS["Complete"], body) == oracle(BINDINGS["Complete"], body)


# --- agreement with json_format ---------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["\ud800", "a\udc00", "\U0001f600", "5", "1e3", "true", "aGk=", "!!"]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@functools.cache
def _names(message: Descriptor) -> tuple[str, ...]:
    """Every key that names a field (its proto and JSON names), and two that name none."""
    names = (name for field in message.fields for name in (field.name, field.json_name))
    return (*dict.fromkeys(names), "unknown", "[ext]")


def _value_for(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    target = field.message_type
    if target is not None and target.GetOptions().map_entry:
        single = st.dictionaries(
            st.text(max_size=4), _single(target.fields_by_name["value"], depth)
        )
        return st.one_of(single, _JSON)
    if field.is_repeated:
        return st.one_of(st.lists(_single(field, depth), max_size=3), _JSON)
    return _single(field, depth)


def _single(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    target = field.message_type
    if target is not None:
        if target.full_name.startswith("google.protobuf.") or depth > 3:
            return _JSON
        return st.one_of(_document(target, depth + 1), _JSON)
    usual: dict[int, st.SearchStrategy[Any]] = {
        _T.TYPE_STRING: st.text(max_size=8),
        _T.TYPE_BOOL: st.booleans(),
        _T.TYPE_INT32: st.integers(min_value=-(2**31), max_value=2**31 - 1),
        _T.TYPE_INT64: st.integers(min_value=-(2**63), max_value=2**63 - 1),
        _T.TYPE_UINT32: st.integers(min_value=0, max_value=2**32 - 1),
    }
    return st.one_of(usual.get(field.type, _SCALARS), _SCALARS)


@st.composite
def _document_of(draw: st.DrawFn, message: Descriptor, depth: int) -> dict[str, Any]:
    document: dict[str, Any] = {}
    keys = draw(st.lists(st.sampled_from(_names(message)), max_size=6, unique=True))
    for key in keys:
        field = message.fields_by_name.get(key) or next(
            (f for f in message.fields if f.json_name == key), None
        )
        document[key] = draw(_JSON if field is None else _value_for(field, depth))
    return document


def _document(message: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    return _document_of(message, depth)


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[Binding, bytes]:
    binding = BINDINGS[draw(st.sampled_from(WITH_BODY))]
    descriptor = binding.request_class.DESCRIPTOR
    if binding.body == "*":
        value: Any = draw(st.one_of(_document(descriptor), _JSON))
    else:
        field = descriptor.fields_by_name[binding.body]
        value = draw(st.one_of(_value_for(field, 0), _JSON))
    return binding, json.dumps(value).encode()


@settings(max_examples=1500)
@given(_bodies())
def test_bodies_are_read_as_json_format_reads_them(case: tuple[Binding, bytes]) -> None:
    binding, body = case
    assert outcome(binding, body) == oracle(binding, body)
