"""The OpenAPI document is derived from the descriptors and agrees with the routes and the JSON."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import message_factory

from bridge.bindings import bindings_from_service, service_descriptor
from bridge.openapi import FIELD_CONSTRAINTS, REQUIRED_BODIES, openapi_document
from bridge.printer import message_to_json

DOCUMENT = openapi_document(service_descriptor())
SCHEMAS = DOCUMENT["components"]["schemas"]
BINDINGS = bindings_from_service(service_descriptor())


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix)
    return resolve(SCHEMAS[ref.removeprefix(prefix)])


def refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if "$ref" in value else []
        return found + [r for item in value.values() for r in refs(item)]
    if isinstance(value, list):
        return [r for item in value for r in refs(item)]
    return []


def admits_null(schema: dict[str, Any]) -> bool:
    if "anyOf" in schema:
        return any(admits_null(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind is None:
        return "$ref" not in schema  # no type: any JSON
    return kind == "null" or (isinstance(kind, list) and "null" in kind)


def test_it_is_an_openapi_3_1_document() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["info"]["title"]
    assert DOCUMENT["info"]["version"]


def test_every_ref_resolves() -> None:
    for ref in refs(DOCUMENT):
        resolve({"$ref": ref})


@pytest.mark.parametrize("binding", BINDINGS, ids=[b.method.name for b in BINDINGS])
def test_every_binding_is_an_operation_with_its_parameters(binding: Any) -> None:
    operation = DOCUMENT["paths"][binding.template.text][binding.http_method.lower()]
    assert operation["operationId"] == binding.method.name
    by_place: dict[str, set[str]] = {}
    for parameter in operation["parameters"]:
        by_place.setdefault(parameter["in"], set()).add(parameter["name"])
    assert by_place.get("path", set()) == set(binding.template.variables)
    assert by_place["query"] == set(binding.query_fields) | {"secure_token"}
    assert by_place["header"] == {"X-Request-Id"}
    assert ("requestBody" in operation) == bool(binding.body)
    # The errors the bridge answers itself are listed; /health needs no token and has no input.
    errors = {"431"} if binding.method.name == "Health" else {"400", "401", "421", "431"}
    if binding.body:
        errors |= {"413", "415"}
    assert set(operation["responses"]) == {"200", "default", *errors}
    for status, response in operation["responses"].items():  # answers carry the request's id
        assert set(response.get("headers", ())) == (set() if status == "431" else {"X-Request-Id"})


def test_no_operation_without_a_binding() -> None:
    operations = {(path, verb) for path, item in DOCUMENT["paths"].items() for verb in item}
    assert operations == {(b.template.text, b.http_method.lower()) for b in BINDINGS}


RUN_REF = {"$ref": "#/components/schemas/codex_gateway.v1.RunInput"}


@pytest.mark.parametrize(
    ("path", "verb", "required", "schema"),
    [
        pytest.param(
            "/completion",
            "post",
            True,
            {"allOf": [RUN_REF, REQUIRED_BODIES["Complete"]]},
            id="run-needs-a-prompt",
        ),
        pytest.param(
            "/sessions/{session_id}/nudge",
            "post",
            False,
            {"anyOf": [RUN_REF, {"type": "null"}]},
            id="nudge-needs-nothing",
        ),
        pytest.param(
            "/sessions/{session_id}/cancel",
            "post",
            False,
            {"type": "object", "properties": {}},  # its one field is the path's
            id="body-star",
        ),
        pytest.param(
            "/triggers",
            "post",
            True,
            {
                "anyOf": [
                    {"$ref": "#/components/schemas/TriggerInput"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/TriggerInput"}},
                ]
            },
            id="value-object-or-array",
        ),
        pytest.param(
            "/triggers/{trigger_id}",
            "patch",
            True,
            {"type": "object", "minProperties": 1},
            id="struct-not-empty",
        ),
    ],
)
def test_request_bodies(path: str, verb: str, required: bool, schema: dict[str, Any]) -> None:
    body = DOCUMENT["paths"][path][verb]["requestBody"]
    assert body["required"] is required
    assert body["content"]["application/json"]["schema"] == schema
    assert "application/json" in body["description"]


@pytest.mark.parametrize(
    ("path", "name", "constraints"),
    [
        pytest.param("/sessions", "limit", {"minimum": 1}, id="limit"),
        pytest.param("/triggers", "trigger_file", {"pattern": "^[^\\x00]*$"}, id="no-nul"),
        pytest.param("/status", "secure_token", {"pattern": "^[ -~]*$"}, id="secure-token"),
        pytest.param("/sessions/{session_id}", "tail_lines", {"minimum": 1}, id="tail-lines"),
        pytest.param(
            "/sessions/{session_id}/search",
            "max_results",
            {"minimum": 1, "maximum": 1000},
            id="max-results",
        ),
        pytest.param(
            "/sessions/{session_id}/search",
            "q",
            {"minLength": 1, "maxLength": 1000},
            id="q",
        ),
    ],
)
def test_query_parameters_state_what_the_gateway_refuses(
    path: str, name: str, constraints: dict[str, Any]
) -> None:
    (parameter,) = [p for p in DOCUMENT["paths"][path]["get"]["parameters"] if p["name"] == name]
    assert constraints.items() <= parameter["schema"].items()
    assert parameter["required"] is (name == "q")


def test_every_constraint_names_a_field() -> None:
    fields = {
        field.full_name
        for binding in BINDINGS
        for message in (binding.request_class.DESCRIPTOR, *_nested(binding))
        for field in message.fields
    }
    assert set(FIELD_CONSTRAINTS) <= fields
    assert set(REQUIRED_BODIES) <= {binding.method.name for binding in BINDINGS}


def _nested(binding: Any) -> list[Any]:
    return [f.message_type for f in binding.request_class.DESCRIPTOR.fields if f.message_type]


def test_response_body_field_is_the_response_schema() -> None:
    ok = DOCUMENT["paths"]["/sessions"]["get"]["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    assert schema == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/codex_gateway.v1.SessionSummary"},
    }


def test_streams_answer_ndjson_or_sse() -> None:
    ok = DOCUMENT["paths"]["/sessions/{session_id}/tail"]["get"]["responses"]["200"]
    assert set(ok["content"]) == {"application/x-ndjson", "text/event-stream"}
    item = ok["content"]["application/x-ndjson"]["schema"]["properties"]["result"]
    assert item == {"$ref": "#/components/schemas/codex_gateway.v1.TailSessionResponse"}


def test_field_schemas() -> None:
    result = SCHEMAS["codex_gateway.v1.RunResult"]["properties"]
    assert result["codex_session_id"] == {"type": ["string", "null"]}
    assert result["duration_ms"]["type"] == "integer"
    assert result["attempts"]["format"] == "int32"
    assert result["tool_calls"] == {"type": "array", "items": {"type": "object"}}
    assert admits_null(result["usage"])
    stream = SCHEMAS["codex_gateway.v1.StreamCompletionResponse"]["properties"]
    assert stream["started"] == {"$ref": "#/components/schemas/codex_gateway.v1.RunStarted"}


@pytest.mark.parametrize("name", sorted(n for n in SCHEMAS if n.startswith("codex_gateway.")))
def test_the_bridge_json_of_an_empty_message_fits_its_schema(name: str) -> None:
    descriptor = service_descriptor().file.pool.FindMessageTypeByName(name)
    document = message_to_json(message_factory.GetMessageClass(descriptor)())
    properties = SCHEMAS[name]["properties"]
    assert set(document) <= set(properties)
    for key, value in document.items():
        schema = properties[key]
        if value is None:
            assert admits_null(schema), key
        elif isinstance(value, bool):
            assert "boolean" in resolve(schema)["type"], key
        elif isinstance(value, int):
            assert resolve(schema)["type"] in ("integer", ["integer", "null"], "number"), key
