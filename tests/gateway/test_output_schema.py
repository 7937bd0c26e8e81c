"""A run's output schema: what is refused before a run, and how an answer is judged."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.runs.schema import (
    MAX_DEPTH,
    MAX_ERROR_CHARS,
    MAX_ERRORS,
    MAX_SCHEMA_BYTES,
    OutputSchema,
    SchemaError,
    depth,
    pointer,
)

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def nested(levels: int) -> dict[str, Any]:
    """A schema whose JSON nests `levels` objects deep (built without recursion)."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range((levels - 1) // 2):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema if depth(schema, 10**9) == levels else {"items": schema}


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        data = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/schema+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def schema_host() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that would serve any schema asked of it, and what it was asked."""
    requests: list[str] = []
    handler = type("Handler", (_Recorder,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def refused(schema: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        OutputSchema(schema)
    assert caught.value.field == "output_schema"
    return caught.value


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        pytest.param([], "must be a JSON object", id="array"),
        pytest.param("x", "must be a JSON object", id="string"),
        pytest.param(True, "must be a JSON object", id="boolean-schema"),
        pytest.param({"type": "nope"}, "not a valid JSON Schema", id="unknown-type"),
        pytest.param({"minimum": "x"}, "not a valid JSON Schema", id="keyword-of-wrong-type"),
        pytest.param({"required": "name"}, "not a valid JSON Schema", id="required-not-list"),
        pytest.param({"$ref": "#/nowhere"}, "not a valid JSON Schema", id="dangling-ref"),
        pytest.param({"minimum": float("nan")}, "JSON cannot carry", id="nan"),
    ],
)
def test_an_unacceptable_schema_is_refused(schema: object, says: str) -> None:
    assert says in refused(schema).message


def test_a_schema_over_64_kib_is_refused_and_one_at_the_limit_is_not() -> None:
    def sized(size: int) -> dict[str, Any]:
        schema = {"type": "object", "description": ""}
        padding = size - len(json.dumps(schema, separators=(",", ":")))
        return {"type": "object", "description": "x" * padding}

    assert len(OutputSchema(sized(MAX_SCHEMA_BYTES)).text) == MAX_SCHEMA_BYTES
    assert f"at most {MAX_SCHEMA_BYTES}" in refused(sized(MAX_SCHEMA_BYTES + 1)).message
    # Bytes, not characters: 3 bytes each in UTF-8.
    assert "bytes serialized" in refused({"description": "€" * (MAX_SCHEMA_BYTES // 3)}).message


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000, 100_000])
def test_a_deep_schema_is_refused_before_any_library_sees_it(levels: int) -> None:
    schema = nested(levels)
    assert depth(schema, 10**9) == levels
    assert f"nested deeper than {MAX_DEPTH}" in refused(schema).message


def test_a_schema_at_the_depth_limit_is_accepted() -> None:
    schema = nested(MAX_DEPTH - 1)
    assert depth(schema, MAX_DEPTH) <= MAX_DEPTH
    OutputSchema(schema)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda url: {"$ref": f"{url}/person.json"}, id="root-ref"),
        pytest.param(
            lambda url: {"properties": {"a": {"$ref": f"{url}/a.json#/defs/x"}}}, id="nested-ref"
        ),
        pytest.param(lambda url: {"$schema": f"{url}/meta.json"}, id="metaschema"),
        pytest.param(
            lambda url: {"$id": f"{url}/base/", "$ref": "other.json"}, id="relative-to-remote-id"
        ),
        pytest.param(lambda url: {"$dynamicRef": f"{url}/d.json"}, id="dynamic-ref"),
    ],
)
def test_a_remote_reference_is_never_fetched(
    schema_host: tuple[str, list[str]], where: Any
) -> None:
    url, requests = schema_host
    error = refused(where(url))
    assert "JSON Schema" in error.message
    assert requests == []


def test_a_file_reference_is_not_read() -> None:
    error = refused({"$ref": "file:///etc/passwd"})
    assert "not fetched" in error.message or "JSON Schema" in error.message


def test_local_references_work() -> None:
    schema = OutputSchema(
        {"$defs": {"n": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/$defs/n"}}
    )
    assert schema.judge("[1, 2]").value == [1, 2]
    assert schema.judge('[1, "2"]').errors == (SchemaError("/1", '"2" is not of type "integer"'),)


def test_a_valid_answer_is_parsed() -> None:
    answer = OutputSchema(PERSON).judge('\n  {"name": "Ada", "age": 36}\n')
    assert answer.valid
    assert answer.value == {"name": "Ada", "age": 36}


@pytest.mark.parametrize(
    ("output", "errors"),
    [
        pytest.param(
            '{"name": "Ada", "age": "old"}',
            [("/age", '"old" is not of type "integer"')],
            id="wrong-type",
        ),
        pytest.param('{"name": "Ada"}', [("", '"age" is a required property')], id="missing"),
        pytest.param(
            '{"name": "Ada", "age": -1, "x": 1}',
            [
                ("", "Additional properties are not allowed ('x' was unexpected)"),
                ("/age", "-1 is less than the minimum of 0"),
            ],
            id="two-errors",
        ),
    ],
)
def test_a_wrong_answer_lists_its_errors_by_json_pointer(
    output: str, errors: list[tuple[str, str]]
) -> None:
    answer = OutputSchema(PERSON).judge(output)
    assert not answer.valid and answer.value is None
    assert sorted((e.path, e.message) for e in answer.errors) == sorted(errors)


@pytest.mark.parametrize(
    "output",
    [
        pytest.param('```json\n{"name": "Ada", "age": 36}\n```', id="fenced"),
        pytest.param('Here it is: {"name": "Ada", "age": 36}', id="prose"),
        pytest.param("", id="empty"),
        pytest.param('{"name": "Ada", "age": 36} {}', id="two-values"),
        pytest.param('{"name": "Ada", "age": NaN}', id="nan"),
    ],
)
def test_an_answer_that_is_not_strict_json_is_wrong(output: str) -> None:
    answer = OutputSchema(PERSON).judge(output)
    assert [e.path for e in answer.errors] == [""]
    assert "not JSON" in answer.errors[0].message


def test_a_deeply_nested_answer_is_wrong_not_a_crash() -> None:
    schema = OutputSchema({"type": "array"})
    for levels in (300, 100_000):
        answer = schema.judge("[" * levels + "]" * levels)
        assert not answer.valid
        assert "nested" in answer.errors[0].message


def test_the_error_list_is_bounded() -> None:
    schema = OutputSchema(
        {"type": "array", "items": {"type": "integer", "description": "d" * 1000}}
    )
    long_key = "k" * 5000
    answer = schema.judge(json.dumps(["x" * 5000] * 100))
    assert len(answer.errors) == MAX_ERRORS
    assert all(len(e.message) <= MAX_ERROR_CHARS for e in answer.errors)
    keyed = OutputSchema({"additionalProperties": {"type": "integer"}})
    paths = [e.path for e in keyed.judge(json.dumps({long_key: "x"})).errors]
    assert len(paths) == 1 and len(paths[0]) <= 128 and paths[0].startswith("/kkk")


@pytest.mark.parametrize(
    ("parts", "expected"),
    [([], ""), (["a", 0], "/a/0"), (["a/b", "m~n"], "/a~1b/m~0n"), ([""], "/")],
)
def test_pointer(parts: list[str | int], expected: str) -> None:
    assert pointer(parts) == expected


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


def _recursive_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_recursive_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_recursive_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_depth_agrees_with_a_recursive_count(value: object) -> None:
    assert depth(value, 10**6) == _recursive_depth(value)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_judging_any_output_never_raises(value: object) -> None:
    schema = OutputSchema(PERSON)
    for output in (json.dumps(value), json.dumps(value)[:-1], str(value)):
        answer = schema.judge(output)
        assert answer.valid == (answer.value is not None or answer.errors == ())


def test_the_grpc_violations_stay_within_their_byte_budget() -> None:
    """Trailing metadata past grpcio's 8 KiB soft limit is refused at random by clients."""
    from gateway.api.service import MAX_VIOLATION_BYTES, schema_violations

    few = schema_violations([("/a", "wrong"), ("", "missing")])
    assert [(v.type, v.subject, v.description) for v in few.violations] == [
        ("OUTPUT_SCHEMA", "/a", "wrong"),
        ("OUTPUT_SCHEMA", "", "missing"),
    ]
    many = schema_violations([("/" + "p" * 300, "m" * 300)] * MAX_ERRORS)
    assert many.ByteSize() <= MAX_VIOLATION_BYTES + 64
    assert 1 < len(many.violations) < MAX_ERRORS
    assert many.violations[-1].description == f"and {MAX_ERRORS - len(many.violations) + 1} more"
    assert all(len(v.subject) <= 256 and len(v.description) <= 256 for v in many.violations)
