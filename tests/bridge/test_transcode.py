"""Transcoding: path, query and body into the request message."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, wrappers_pb2
from hypothesis import given
from hypothesis import strategies as st

from bridge.bindings import Binding, bindings_from_service, service_descriptor
from bridge.errors import InvalidRequest
from bridge.printer import message_to_json
from bridge.transcode import (
    build_request,
    decode_component,
    parse_json_body,
    parse_query,
    parse_scalar,
)
from codex_gateway.v1 import runs_pb2, sessions_pb2

BINDINGS = {b.method.name: b for b in bindings_from_service(service_descriptor())}
GET_SESSION = BINDINGS["GetSession"]
SEARCH = BINDINGS["SearchSession"]


def field(binding: Binding, name: str) -> Any:
    return binding.request_class.DESCRIPTOR.fields_by_name[name]


# --- percent-decoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"abc", "abc", id="plain"),
        pytest.param(b"a%20b", "a b", id="space"),
        pytest.param(b"a%2Fb", "a/b", id="encoded-slash"),
        pytest.param(b"%C3%A9t%C3%A9", "\u00e9t\u00e9", id="utf-8"),
        pytest.param(b"a+b", "a+b", id="plus-is-literal-in-paths"),
        pytest.param(b"%00", "\x00", id="nul"),
        pytest.param(b"%2a%2A", "**", id="either-case-hex"),
    ],
)
def test_decode_component(raw: bytes, expected: str) -> None:
    assert decode_component(raw, what="path parameter 'x'") == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"%zz", id="not-hex"),
        pytest.param(b"%", id="lone-percent"),
        pytest.param(b"abc%2", id="truncated"),
        pytest.param(b"%%41", id="double-percent"),
        pytest.param(b"%ff", id="not-utf-8"),
        pytest.param(b"%ED%A0%80", id="surrogate"),
        pytest.param(b"%C3", id="truncated-utf-8"),
    ],
)
def test_decode_component_refuses_malformed_escapes(raw: bytes) -> None:
    with pytest.raises(InvalidRequest, match="path parameter 'x'"):
        decode_component(raw, what="path parameter 'x'")


@given(st.binary(max_size=64))
def test_decode_component_fails_only_with_invalid_request(raw: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        decode_component(raw, what="x", plus_as_space=True)


# --- query strings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(b"", [], id="empty"),
        pytest.param(b"a=1&b=x+y", [("a", "1"), ("b", "x y")], id="plus-is-space"),
        pytest.param(b"a=1&&a=2", [("a", "1"), ("a", "2")], id="repeated"),
        pytest.param(b"flag", [("flag", "")], id="no-value"),
        pytest.param(b"q=a%3Db%26c", [("q", "a=b&c")], id="encoded-separators"),
        pytest.param(b"q=%E2%9C%93", [("q", "\u2713")], id="utf-8"),
    ],
)
def test_parse_query(query: bytes, expected: list[tuple[str, str]]) -> None:
    assert parse_query(query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param(b"limit=%zz", "query parameter 'limit'", id="bad-escape-in-value"),
        pytest.param(b"li%zzmit=1", "query string", id="bad-escape-in-name"),
        pytest.param(b"q=%ff", "query parameter 'q'", id="not-utf-8"),
    ],
)
def test_parse_query_refuses_malformed_escapes(query: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_query(query)


@pytest.mark.parametrize(
    ("binding", "name", "text", "expected"),
    [
        *(
            pytest.param(GET_SESSION, "include_events", text, True, id=f"bool-{text}")
            for text in ("true", "TRUE", "1", "yes", "On")
        ),
        *(
            pytest.param(GET_SESSION, "include_events", text, False, id=f"bool-{text}")
            for text in ("false", "False", "0", "no", "OFF")
        ),
        pytest.param(GET_SESSION, "tail_lines", "200", 200, id="int"),
        pytest.param(GET_SESSION, "tail_lines", "-5", -5, id="negative-int"),
        pytest.param(GET_SESSION, "tail_lines", "+7", 7, id="plus-int"),
        pytest.param(GET_SESSION, "tail_lines", "2147483647", 2**31 - 1, id="int32-max"),
        pytest.param(SEARCH, "min_score", "0.5", 0.5, id="double"),
        pytest.param(SEARCH, "min_score", "1e-3", 0.001, id="double-exponent"),
        pytest.param(SEARCH, "min_score", "3", 3.0, id="double-integral"),
        pytest.param(SEARCH, "q", "anything at all", "anything at all", id="string"),
    ],
)
def test_parse_scalar(binding: Binding, name: str, text: str, expected: object) -> None:
    value = parse_scalar(field(binding, name), text, what=f"query parameter '{name}'")
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("binding", "name", "text"),
    [
        pytest.param(GET_SESSION, "include_events", "maybe", id="bool-word"),
        pytest.param(GET_SESSION, "include_events", "", id="bool-empty"),
        pytest.param(GET_SESSION, "include_events", "2", id="bool-two"),
        pytest.param(GET_SESSION, "tail_lines", "abc", id="int-word"),
        pytest.param(GET_SESSION, "tail_lines", "1.5", id="int-fraction"),
        pytest.param(GET_SESSION, "tail_lines", "0x10", id="int-hex"),
        pytest.param(GET_SESSION, "tail_lines", "1_000", id="int-underscore"),
        pytest.param(GET_SESSION, "tail_lines", " 5", id="int-space"),
        pytest.param(GET_SESSION, "tail_lines", "\u0665", id="int-arabic-digit"),
        pytest.param(GET_SESSION, "tail_lines", "", id="int-empty"),
        pytest.param(GET_SESSION, "tail_lines", "2147483648", id="int32-overflow"),
        pytest.param(GET_SESSION, "tail_lines", "9" * 5000, id="int-huge"),
        pytest.param(SEARCH, "min_score", "NaN", id="double-nan"),
        pytest.param(SEARCH, "min_score", "inf", id="double-inf"),
        pytest.param(SEARCH, "min_score", "1e999", id="double-overflow"),
        pytest.param(SEARCH, "min_score", "abc", id="double-word"),
    ],
)
def test_parse_scalar_refuses_bad_values_naming_the_parameter(
    binding: Binding, name: str, text: str
) -> None:
    with pytest.raises(InvalidRequest, match=f"query parameter '{name}'"):
        parse_scalar(field(binding, name), text, what=f"query parameter '{name}'")


# --- building requests ------------------------------------------------------------------------


def test_path_and_query_fill_the_request() -> None:
    request = build_request(
        GET_SESSION,
        path_params={"session_id": b"session%2Dabc"},
        query=[("tail_lines", "10"), ("include_stderr", "yes"), ("unknown", "ignored")],
        body=None,
    )
    assert request == sessions_pb2.GetSessionRequest(
        session_id="session-abc", tail_lines=10, include_stderr=True
    )


def test_query_does_not_override_the_path() -> None:
    request = build_request(
        GET_SESSION, path_params={"session_id": b"a"}, query=[("session_id", "b")], body=None
    )
    assert request.session_id == "a"


def test_a_repeated_singular_query_parameter_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="'limit' is given more than once"):
        build_request(
            BINDINGS["ListSessions"],
            path_params={},
            query=[("limit", "1"), ("limit", "2")],
            body=None,
        )


def test_secure_token_is_not_a_request_field() -> None:
    request = build_request(
        GET_SESSION, path_params={"session_id": b"a"}, query=[("secure_token", "t")], body=None
    )
    assert request == sessions_pb2.GetSessionRequest(session_id="a")


def test_a_malformed_path_parameter_is_invalid() -> None:
    with pytest.raises(InvalidRequest, match="path parameter 'session_id'"):
        build_request(GET_SESSION, path_params={"session_id": b"%zz"}, query=[], body=None)


def test_body_field_receives_the_whole_body() -> None:
    body = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}], "timeout_ms": 5000, "extra": 1}
    )
    request = build_request(
        BINDINGS["PromptSession"],
        path_params={"session_id": b"s1"},
        query=[],
        body=body.encode(),
    )
    assert request.session_id == "s1"
    assert request.run.messages[0].content == "hi"
    assert request.run.timeout_ms == 5000


def test_body_star_is_the_request_and_the_path_wins() -> None:
    request = build_request(
        BINDINGS["CancelSession"],
        path_params={"session_id": b"from-path"},
        query=[],
        body=b'{"session_id": "from-body"}',
    )
    assert request == sessions_pb2.CancelSessionRequest(session_id="from-path")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'[1, {"a": true}]', [1, {"a": True}], id="array"),
        pytest.param(b'{"id": "x"}', {"id": "x"}, id="object"),
        pytest.param(b'"text"', "text", id="string"),
    ],
)
def test_a_value_body_takes_any_json(body: bytes, expected: Any) -> None:
    request = build_request(
        BINDINGS["CreateTriggers"], path_params={}, query=[("trigger_file", "t.json")], body=body
    )
    assert request.trigger_file == "t.json"
    round_trip = json.loads(json.dumps(message_to_json(request)["triggers"]))
    assert round_trip == expected


@pytest.mark.parametrize("body", [b"", b"   ", b"\n"])
def test_an_empty_body_is_an_empty_object(body: bytes) -> None:
    request = build_request(BINDINGS["Complete"], path_params={}, query=[], body=body)
    assert request == runs_pb2.CompleteRequest(run=runs_pb2.RunInput())


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{", id="truncated"),
        pytest.param(b"{'a': 1}", id="single-quotes"),
        pytest.param(b'{"a": NaN}', id="nan"),
        pytest.param(b'{"a": Infinity}', id="infinity"),
        pytest.param(b'{"a": 1e999}', id="overflowing-number"),
        pytest.param(b'{"a": ' + b"9" * 5000 + b"}", id="huge-integer"),
        pytest.param(b"\xff\xfe{}", id="not-utf-8"),
    ],
)
def test_invalid_json_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match=r"^Invalid JSON payload$"):
        build_request(BINDINGS["Complete"], path_params={}, query=[], body=body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="unclosed"),
        pytest.param(b'{"output_schema": ' + b'{"a": ' * 100_000, id="deep-schema"),
    ],
)
def test_json_nested_too_deeply_is_refused_saying_so(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match=r"^Invalid JSON payload: nested too deeply$"):
        build_request(BINDINGS["Complete"], path_params={}, query=[], body=body)


@pytest.mark.parametrize(
    ("name", "body", "mentions"),
    [
        pytest.param("Complete", b'{"messages": [null]}', "messages", id="null-message"),
        pytest.param("Complete", b'{"messages": ["x"]}', "messages[0]", id="string-message"),
        pytest.param("Complete", b'{"messages": [[1]]}', "messages[0]", id="array-message"),
        pytest.param("Complete", b'{"messages": {"a": 1}}', "messages", id="object-not-list"),
        pytest.param("Complete", b'{"timeout_ms": "abc"}', "timeout_ms", id="string-for-int"),
        pytest.param("Complete", b'{"timeout_ms": 1.5}', "timeout_ms", id="fraction-for-int"),
        pytest.param("Complete", b'{"timeout_ms": true}', "timeout_ms", id="bool-for-int"),
        pytest.param("Complete", b'{"json_mode": "yes"}', "json_mode", id="string-for-bool"),
        pytest.param("Complete", b'{"prompt": 5}', "prompt", id="number-for-string"),
        pytest.param("Complete", b'{"env": {"A": 1}}', "env", id="number-in-string-map"),
        pytest.param("Complete", b'{"env": ["A"]}', "env", id="array-for-map"),
        pytest.param("Complete", b'{"metadata": [1]}', "metadata", id="array-for-struct"),
        pytest.param("Complete", b'{"prompt": "\\ud800"}', "prompt", id="lone-surrogate"),
        pytest.param("Complete", b'"just a string"', "request body", id="string-body"),
        pytest.param("Complete", b"[1, 2]", "request body", id="array-body"),
        pytest.param("Complete", b"42", "request body", id="number-body"),
        pytest.param("CancelSession", b"[]", "JSON object", id="array-for-body-star"),
        pytest.param("CancelSession", b"null", "JSON object", id="null-for-body-star"),
        pytest.param("UpdateTrigger", b"[1]", "patch", id="array-for-struct-body"),
    ],
)
def test_json_that_does_not_fit_is_refused_naming_the_field(
    name: str, body: bytes, mentions: str
) -> None:
    path = {v: b"x" for v in BINDINGS[name].template.variables}
    with pytest.raises(InvalidRequest) as caught:
        build_request(BINDINGS[name], path_params=path, query=[], body=body)
    assert mentions in caught.value.message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param("aGVsbG8=", b"hello", id="padded"),
        pytest.param("aGVsbG8", b"hello", id="unpadded"),
        pytest.param("aGVs\r\nbG8=", b"hello", id="mime-line-break"),
        pytest.param("_-_-", b"\xff\xef\xfe", id="url-safe"),
        pytest.param(None, b"", id="null"),
    ],
)
def test_bytes_in_a_body_are_base64(data: str | None, expected: bytes) -> None:
    body = json.dumps({"images": [{"data": data}]}).encode()
    request = build_request(BINDINGS["Complete"], path_params={}, query=[], body=body)
    assert request.run.images[0].data == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("!!!!not base64", id="outside-the-alphabet"),
        pytest.param("aGVs bG8=", id="a-space"),
        pytest.param("a", id="one-character-too-many"),
        pytest.param("aGVsbG8=x", id="after-the-padding"),
        pytest.param(123, id="a-number"),
        pytest.param({"a": 1}, id="an-object"),
    ],
)
def test_bytes_that_are_not_base64_are_refused_naming_the_field(data: Any) -> None:
    """json_format skips characters outside the alphabet (`!!!!` decodes to something) and
    names no field; the bridge refuses them and names the image's field."""
    body = json.dumps({"images": [{"path": "a.png"}, {"data": data}]}).encode()
    with pytest.raises(InvalidRequest) as caught:
        build_request(BINDINGS["Complete"], path_params={}, query=[], body=body)
    assert caught.value.message.startswith(
        "Invalid value for field 'images[1].data': expected base64 bytes, got "
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["prompt", "messages", "role", "content", "env", "metadata", "x"])
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(st.sampled_from(sorted(n for n, b in BINDINGS.items() if b.body)), json_values)
def test_any_json_body_transcodes_or_is_invalid_request(name: str, value: Any) -> None:
    path = {v: b"x" for v in BINDINGS[name].template.variables}
    try:
        body = json.dumps(value).encode()
    except ValueError:
        return
    with contextlib.suppress(InvalidRequest):
        build_request(BINDINGS[name], path_params=path, query=[], body=body)


def test_parse_json_body_keeps_the_value() -> None:
    assert parse_json_body(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}


BYTES_FIELD = wrappers_pb2.BytesValue.DESCRIPTOR.fields_by_name["value"]
ENUM_FIELD = descriptor_pb2.FieldDescriptorProto.DESCRIPTOR.fields_by_name["type"]


@pytest.mark.parametrize(
    ("field_descriptor", "text", "expected"),
    [
        pytest.param(BYTES_FIELD, "aGk=", b"hi", id="bytes-padded"),
        pytest.param(BYTES_FIELD, "aGk", b"hi", id="bytes-unpadded"),
        pytest.param(BYTES_FIELD, "-_8", b"\xfb\xff", id="bytes-url-safe"),
        pytest.param(ENUM_FIELD, "TYPE_STRING", 9, id="enum-name"),
        pytest.param(ENUM_FIELD, "9", 9, id="enum-number"),
    ],
)
def test_parse_other_scalars(field_descriptor: Any, text: str, expected: object) -> None:
    assert parse_scalar(field_descriptor, text, what="query parameter 'v'") == expected


@pytest.mark.parametrize(
    ("field_descriptor", "text"),
    [
        pytest.param(BYTES_FIELD, "a b", id="bytes-space"),
        pytest.param(BYTES_FIELD, "!!", id="bytes-symbols"),
        pytest.param(ENUM_FIELD, "TYPE_NOPE", id="enum-unknown-name"),
    ],
)
def test_parse_other_scalars_refuses(field_descriptor: Any, text: str) -> None:
    with pytest.raises(InvalidRequest, match="query parameter 'v'"):
        parse_scalar(field_descriptor, text, what="query parameter 'v'")
