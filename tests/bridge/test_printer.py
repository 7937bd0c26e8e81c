"""Printing messages as the bridge's JSON: the contract's rules, and agreement with the two-pass
printer it replaced (json_format.MessageToDict, then a walk that applied those rules) on
arbitrary values of every message the service answers with."""

from __future__ import annotations

import functools
import json
from typing import Any

from google.protobuf import descriptor_pb2, json_format, message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.bindings import bindings_from_service, service_descriptor
from bridge.printer import message_to_json, response_json
from codex_gateway.v1 import runs_pb2, sessions_pb2, status_pb2, triggers_pb2

BINDINGS = {b.method.name: b for b in bindings_from_service(service_descriptor())}
_T = FieldDescriptor

# --- responses ----------------------------------------------------------------------------------


def test_unset_presence_fields_are_null_and_int64_are_numbers() -> None:
    result = runs_pb2.RunResult(session_id="s", duration_ms=2**40, output="done")
    document = message_to_json(result)
    assert document["codex_session_id"] is None  # optional string
    assert document["model"] is None
    assert document["usage"] is None  # unset message
    assert document["metadata"] is None  # unset Struct
    assert document["duration_ms"] == 2**40
    assert document["attempts"] == 0  # no presence: its default
    assert document["messages"] == []
    assert document["output"] == "done"


def test_set_presence_fields_and_nested_messages_are_walked() -> None:
    result = runs_pb2.RunResult(codex_session_id="", model="m")
    result.usage.total_tokens = 5
    document = message_to_json(result)
    assert document["codex_session_id"] == ""  # set to empty is not null
    assert document["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_input_tokens": 0,
        "total_tokens": 5,
        "reasoning_output_tokens": 0,
    }


def test_unset_oneof_members_are_omitted() -> None:
    message = runs_pb2.StreamCompletionResponse(started=runs_pb2.RunStarted(run_id="r"))
    assert message_to_json(message) == {
        "started": {"session_id": "", "run_id": "r", "model": None, "logs_path": ""},
        "seq": None,
    }
    assert message_to_json(runs_pb2.StreamCompletionResponse()) == {"seq": None}


def test_a_set_oneof_member_prints_in_its_declared_place() -> None:
    message = sessions_pb2.TailSessionResponse(line=sessions_pb2.LogLine(text="x"), seq=7)
    assert list(message_to_json(message)) == ["line", "seq"]


def test_struct_is_its_json_with_integral_numbers_as_integers() -> None:
    result = runs_pb2.RunResult()
    result.metadata.update({"n": 5, "f": 2.5, "nested": {"list": [1, "a", None, True]}})
    assert message_to_json(result)["metadata"] == {
        "n": 5,
        "f": 2.5,
        "nested": {"list": [1, "a", None, True]},
    }
    assert isinstance(message_to_json(result)["metadata"]["n"], int)


def test_doubles_print_like_protojson() -> None:
    document = message_to_json(status_pb2.GetStatusResponse(uptime=3600.0))
    assert document["uptime"] == 3600
    assert isinstance(document["uptime"], int)
    assert message_to_json(sessions_pb2.Signal(score=0.25))["score"] == 0.25


def test_repeated_and_map_fields() -> None:
    trigger = triggers_pb2.Trigger(tags=["a"], env={"K": "V"}, timeout_ms=7)
    document = message_to_json(trigger)
    assert document["tags"] == ["a"]
    assert document["env"] == {"K": "V"}
    assert document["timeout_ms"] == 7
    assert document["schedule"] is None
    assert document["next_fire"] is None


def test_response_body_selects_a_field() -> None:
    response = sessions_pb2.ListSessionsResponse(
        sessions=[sessions_pb2.SessionSummary(session_id="a", execution_timeout_ms=10)]
    )
    body = response_json(BINDINGS["ListSessions"], response)
    assert isinstance(body, list)
    assert body[0]["session_id"] == "a"
    assert body[0]["execution_timeout_ms"] == 10
    assert body[0]["codex_session_id"] is None
    assert response_json(BINDINGS["Complete"], runs_pb2.CompleteResponse()) is None


def test_whole_response_without_response_body() -> None:
    response = status_pb2.HealthResponse(status="ok")
    assert response_json(BINDINGS["Health"], response) == {"status": "ok"}


# --- agreement with the two-pass printer ----------------------------------------------------


def oracle(message: Message) -> Any:
    """The printer the bridge used before: MessageToDict, then the contract's fixes."""
    printed = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _fix_message(printed, message.DESCRIPTOR)


def _fix_message(printed: Any, message: Descriptor) -> Any:
    if message.full_name.startswith("google.protobuf."):
        return _integral_numbers(printed)
    fixed: dict[str, Any] = {}
    for field in message.fields:
        if field.name in printed:
            fixed[field.name] = _fix_field(field, printed[field.name])
        elif field.containing_oneof is not None and field.name not in _optional(message):
            continue
        elif field.has_presence:
            fixed[field.name] = None
    return fixed


def _fix_field(field: FieldDescriptor, value: Any) -> Any:
    target = field.message_type
    if target is not None and target.GetOptions().map_entry:
        value_field = target.fields_by_name["value"]
        return {key: _fix_single(value_field, item) for key, item in value.items()}
    if field.is_repeated:
        return [_fix_single(field, item) for item in value]
    return _fix_single(field, value)


def _fix_single(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        return None if value is None else _fix_message(value, field.message_type)
    if field.cpp_type in (_T.CPPTYPE_INT64, _T.CPPTYPE_UINT64) and isinstance(value, str):
        return int(value)
    return _integral_numbers(value)


def _integral_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _integral_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_numbers(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


@functools.cache
def _optional(message: Descriptor) -> frozenset[str]:
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    return frozenset(f.name for f in proto.field if f.proto3_optional)


JSON_LEAVES = st.none() | st.booleans() | st.text(max_size=8) | st.integers(-(2**60), 2**60)
JSON_VALUES = st.recursive(
    JSON_LEAVES | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_INTS = {
    _T.CPPTYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    _T.CPPTYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    _T.CPPTYPE_UINT32: st.integers(0, 2**32 - 1),
    _T.CPPTYPE_UINT64: st.integers(0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.cpp_type in _INTS:
        return _INTS[field.cpp_type]
    if field.cpp_type == _T.CPPTYPE_BOOL:
        return st.booleans()
    if field.cpp_type == _T.CPPTYPE_DOUBLE:
        return st.floats() | st.sampled_from([0.0, -0.0, 3600.0, 2.0**60, 1e-300])
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=10)
    if field.cpp_type == _T.CPPTYPE_STRING:
        return st.text(max_size=10)
    raise AssertionError(f"no strategy for {field.full_name}")


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Arbitrary instances: each field set or not, nested messages up to a depth."""
    cls = message_factory.GetMessageClass(descriptor)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            _fill(draw, message, field, depth)
        return message

    return build()


def _fill(draw: st.DrawFn, message: Any, field: FieldDescriptor, depth: int) -> None:
    target = field.message_type
    if target is not None and target.GetOptions().map_entry:
        mapping = draw(
            st.dictionaries(
                st.text(max_size=5), _scalar(target.fields_by_name["value"]), max_size=3
            )
        )
        getattr(message, field.name).update(mapping)
    elif target is not None and target.full_name == "google.protobuf.Struct":
        values = draw(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3))
        items = [values] if not field.is_repeated else [values, values]
        for value in items:
            sub = (
                getattr(message, field.name).add()
                if field.is_repeated
                else getattr(message, field.name)
            )
            sub.update(value)
    elif target is not None and target.full_name == "google.protobuf.Value":
        value = struct_pb2.Value()
        holder = struct_pb2.Struct()
        holder.update({"v": draw(JSON_VALUES)})
        value.CopyFrom(holder.fields["v"])
        getattr(message, field.name).CopyFrom(value)
    elif target is not None:
        if depth >= 3:
            return
        count = draw(st.integers(0, 2)) if field.is_repeated else 1
        for _ in range(count):
            sub = draw(messages(target, depth + 1))
            if field.is_repeated:
                getattr(message, field.name).add().CopyFrom(sub)
            else:
                getattr(message, field.name).CopyFrom(sub)
    elif field.is_repeated:
        getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=3)))
    else:
        setattr(message, field.name, draw(_scalar(field)))


RESPONSES = sorted(
    {
        b.response_class.DESCRIPTOR.full_name: b.response_class.DESCRIPTOR
        for b in BINDINGS.values()
        # Answered as its google.api.HttpBody's bytes (bridge/endpoint.py), never printed.
        if b.method.name != "GetMetrics"
    }.items()
)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_printer_agrees_with_the_two_pass_printer(data: st.DataObject) -> None:
    for _, descriptor in RESPONSES:
        message = data.draw(messages(descriptor), label=descriptor.full_name)
        # As text: 3600 == 3600.0 in Python, not in the JSON a client reads.
        assert json.dumps(message_to_json(message), sort_keys=True) == json.dumps(
            oracle(message), sort_keys=True
        )
