"""OpenAPI: a 3.1 document of the REST bindings, derived from the proto descriptors alone.

From the bindings `bridge.bindings` reads out of the `google.api.http` annotations: paths from the
bindings, path and query parameters from the request fields, the request body schema from the
`body` selector, the response schema from the response message (or its `response_body` field).
JSON schemas follow the bridge's JSON: proto field names, int64 as integers, fields with presence
nullable, `Struct` as an object and `Value` as any JSON. Streaming RPCs answer NDJSON or SSE.

What the descriptors cannot say, the gateway's own checks, is stated from two tables here
(`FIELD_CONSTRAINTS`, `REQUIRED_BODIES`), so that a schema-valid request is one the gateway
accepts; every operation also lists the errors the bridge itself answers (401, 413, 415, 421,
431) besides 400. The API token is the `bearer` security scheme (what Swagger UI's "Authorize"
at /docs sends; bridge/docs.py).
"""

from __future__ import annotations

import re
from typing import Any, Final

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)

from .bindings import Binding, PathTemplate, bindings_from_service
from .requestid import REQUEST_ID_PATTERN

Schema = dict[str, Any]

OPENAPI_VERSION: Final = "3.1.0"
SECURE_TOKEN_QUERY_PARAM: Final = "secure_token"  # noqa: S105 - a parameter name, not a secret
# The API token (CODEX_GATEWAY_API_TOKEN) as a security scheme: what Swagger UI's "Authorize"
# sends. Optional (`{}`): a gateway without a token takes requests without one.
BEARER_SCHEME: Final = "bearer"
_SECURITY_SCHEMES: Final[dict[str, Schema]] = {
    BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "The gateway's API token (CODEX_GATEWAY_API_TOKEN), when it has one.",
    }
}
_SECURITY: Final[list[dict[str, list[str]]]] = [{BEARER_SCHEME: []}, {}]

_T = FieldDescriptor
_INT32: Final[Schema] = {"type": "integer", "format": "int32", "minimum": -(2**31)}
_INT64: Final[Schema] = {
    "type": "integer",
    "format": "int64",
    "minimum": -(2**63),
    "maximum": 2**63 - 1,
}
_UINT64: Final[Schema] = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
_INTEGERS: Final[dict[int, Schema]] = {
    _T.TYPE_INT32: {**_INT32, "maximum": 2**31 - 1},
    _T.TYPE_SINT32: {**_INT32, "maximum": 2**31 - 1},
    _T.TYPE_SFIXED32: {**_INT32, "maximum": 2**31 - 1},
    _T.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    _T.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    _T.TYPE_INT64: _INT64,
    _T.TYPE_SINT64: _INT64,
    _T.TYPE_SFIXED64: _INT64,
    _T.TYPE_UINT64: _UINT64,
    _T.TYPE_FIXED64: _UINT64,
}
_WELL_KNOWN: Final[dict[str, Schema]] = {
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"type": "object"},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "minimum": 0},
    "google.protobuf.Int64Value": {"type": "integer", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "integer", "minimum": 0},
}
_V1: Final = "codex_gateway.v1."
# The gateway refuses (400) what these do not admit; keyed by the request field's full name.
FIELD_CONSTRAINTS: Final[dict[str, Schema]] = {
    f"{_V1}ListSessionsRequest.limit": {"minimum": 1},
    f"{_V1}ListSessionsRequest.since": {"format": "date-time"},
    f"{_V1}GetSessionRequest.tail_lines": {"minimum": 1},
    f"{_V1}GetSessionRequest.tail": {"minimum": 1},
    f"{_V1}SearchSessionRequest.q": {"minLength": 1, "maxLength": 1000, "pattern": "\\S"},
    f"{_V1}SearchSessionRequest.max_results": {"minimum": 1, "maximum": 1000},
    f"{_V1}SearchSessionRequest.tail_lines": {"minimum": 1},
    f"{_V1}SearchSessionRequest.min_score": {"minimum": 0, "maximum": 1},
    f"{_V1}TailSessionRequest.tail_lines": {"minimum": 1},
    f"{_V1}RunInput.messages": {"maxItems": 10_000},
    f"{_V1}RunInput.model": {
        "pattern": "^\\s*(?:[A-Za-z0-9][A-Za-z0-9._:/@+-]*)?\\s*$",
        "maxLength": 200,
    },
    f"{_V1}RunInput.resume_session_id": {
        "pattern": "^\\s*[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
        "[0-9a-fA-F]{12}\\s*$"
    },
    f"{_V1}RunInput.env": {
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "description": "Variables for the agent; names that change what runs are refused.",
    },
    **{
        f"{_V1}{message}.trigger_file": {"pattern": "^[^\\x00]*$"}  # a path: no NUL byte
        for message in (
            "ListTriggersRequest",
            "GetTriggerRequest",
            "CreateTriggersRequest",
            "UpdateTriggerRequest",
            "DeleteTriggerRequest",
        )
    },
    f"{_V1}UpdateTriggerRequest.patch": {"minProperties": 1},
    f"{_V1}CreateTriggersRequest.triggers": {
        "anyOf": [
            {"$ref": "#/components/schemas/TriggerInput"},
            {"type": "array", "items": {"$ref": "#/components/schemas/TriggerInput"}},
        ]
    },
}
_SOME_TEXT: Final[Schema] = {"type": "string", "pattern": "\\S"}
# A trigger as POST /triggers takes it (a JSON object, not a proto message): what the gateway's
# trigger normaliser refuses. The schedule's modes and their fields are checked by the gateway.
_TRIGGER_INPUT: Final[Schema] = {
    "type": "object",
    "required": ["schedule"],
    "anyOf": [
        {"required": ["prompt_text"], "properties": {"prompt_text": _SOME_TEXT}},
        {"required": ["prompt"], "properties": {"prompt": _SOME_TEXT}},
    ],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\x00-\\x1f]+$"},
        "enabled": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "env": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        },
        "cwd": {"type": "string"},
        "system_prompt": {"type": "string"},
        "schedule": {"type": "object"},
    },
}
# Operations whose body must be present (not null), with what it must hold beyond its schema.
REQUIRED_BODIES: Final[dict[str, Schema]] = {
    # A run: a prompt with text, or messages one of which has text.
    "Complete": {
        "anyOf": [
            {"required": ["prompt"], "properties": {"prompt": _SOME_TEXT}},
            {
                "required": ["messages"],
                "properties": {
                    "messages": {
                        "type": "array",
                        "contains": {
                            "type": "object",
                            "required": ["content"],
                            "properties": {"content": _SOME_TEXT},
                        },
                    }
                },
            },
        ]
    },
    "CreateTriggers": {},
    "UpdateTrigger": {},
}
REQUIRED_BODIES["StreamCompletion"] = REQUIRED_BODIES["PromptSession"] = REQUIRED_BODIES["Complete"]
# Errors every operation may answer from the bridge itself, besides its gRPC status's.
_BRIDGE_ERRORS: Final = {
    "400": "Invalid request",
    "401": "Missing or wrong API token (when one is configured)",
    "421": "Host not served here (CODEX_GATEWAY_ALLOWED_HOSTS)",
    "431": "Request header fields too large",
}
_BODY_ERRORS: Final = {
    "413": "Request body over CODEX_GATEWAY_MAX_BODY_BYTES",
    "415": "Request body not declared application/json",
}
_ERROR_REF: Final = "#/components/schemas/Error"
# Every request's id (bridge/requestid.py): honoured when sane, else one is made; answered in the
# X-Request-Id response header of every response and in error bodies.
_REQUEST_ID_PARAMETER: Final[dict[str, Any]] = {
    "name": "X-Request-Id",
    "in": "header",
    "required": False,
    "description": "The request's id, kept in logs, error bodies and the response "
    "(honoured when it is 1-128 of letters, digits and ._:=+/-; else one is made).",
    "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
}
_RESPONSE_HEADERS: Final[dict[str, Any]] = {
    "X-Request-Id": {
        "description": "The request's id: the caller's when sane, else a new one.",
        "schema": {"type": "string"},
    }
}
_ERROR_SCHEMA: Final[Schema] = {
    "type": "object",
    "description": "Every error: a human message, the gRPC status name and documented extras.",
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string"},
        "reason": {"type": "string"},
        "retry_after": {"type": "integer"},
        # The request's id, also in the X-Request-Id response header (bridge/requestid.py).
        "request_id": {"type": "string"},
        # A run that did not complete: why (kind, message, retry_after_ms; README "Failures").
        "failure": {"$ref": "#/components/schemas/codex_gateway.v1.RunFailure"},
        # 422: a run's answer that did not match its output_schema, error by error.
        "schema_errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["error"],
}


def openapi_document(
    service: ServiceDescriptor, *, title: str = "Codex Gateway", version: str = "v1"
) -> dict[str, Any]:
    """The OpenAPI document of every `google.api.http` binding of `service`."""
    builder = _Builder()
    paths: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}  # per method: its main binding, then its additional ones
    for binding in bindings_from_service(service):
        name = binding.method.name
        index = seen[name] = seen.get(name, -1) + 1
        operation_id = name if index == 0 else f"{name}{index}"
        operation = builder.operation(binding, operation_id)
        paths.setdefault(_openapi_path(binding.template), {})[binding.http_method.lower()] = (
            operation
        )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "paths": paths,
        "security": _SECURITY,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA, "TriggerInput": _TRIGGER_INPUT, **builder.schemas},
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def _openapi_path(template: PathTemplate) -> str:
    """The template as OpenAPI writes it: `{name}` for each variable (no `=*`)."""
    variables = iter(template.variables)
    parts = ["{" + next(variables) + "}" if s is None else s for s in template.segments]
    return "/" + "/".join(parts)


class _Builder:
    """Operations and the component schemas of the messages they reach."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def operation(self, rule: Binding, operation_id: str) -> dict[str, Any]:
        method = rule.method
        request: Descriptor = method.input_type
        variables = list(rule.template.variables)
        parameters = [self._path_parameter(request, v) for v in variables]
        if rule.body != "*":
            bound = {v.split(".")[0] for v in variables} | {rule.body}
            parameters += [
                self._query_parameter(f)
                for f in request.fields
                if f.name not in bound and f.type != _T.TYPE_MESSAGE
            ]
        parameters.append(dict(_REQUEST_ID_PARAMETER))
        parameters.append(
            {
                "name": SECURE_TOKEN_QUERY_PARAM,
                "in": "query",
                "required": False,
                "description": "Secure session token (also X-Codex-Secure-Token).",
                "schema": {"type": "string", "pattern": "^[ -~]*$"},
            }
        )
        errors = dict(_BRIDGE_ERRORS)
        if method.name == "Health":
            errors = {"431": errors["431"]}  # no token, any Host, no input
        if rule.body:
            errors.update(_BODY_ERRORS)
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "summary": re.sub(r"(?<!^)(?=[A-Z])", " ", method.name),
            "parameters": parameters,
            "responses": {
                "200": self._success(method, rule),
                **{status: _error(text) for status, text in sorted(errors.items())},
                "default": _error("Error"),
            },
        }
        # A head over the limits is refused before any request exists: no id (connections.py).
        del operation["responses"]["431"]["headers"]
        if method.name == "Health":
            operation["security"] = []  # never needs the token
        if rule.body:
            required = REQUIRED_BODIES.get(method.name)
            body_schema: Schema
            if rule.body == "*":
                # Path parameters win over the body's fields of the same name: not body fields.
                bound = {v.split(".")[0] for v in variables}
                body_schema = {
                    "type": "object",
                    "properties": {
                        f.name: self.field_schema(f) for f in request.fields if f.name not in bound
                    },
                }
            elif required is not None:  # present: not null
                body_schema = self._single_schema(request.fields_by_name[rule.body])
                body_schema = {**body_schema, **_constraints(request.fields_by_name[rule.body])}
            else:
                body_schema = self.field_schema(request.fields_by_name[rule.body])
            if required:
                body_schema = {"allOf": [body_schema, required]}
            operation["requestBody"] = {
                "required": required is not None,
                "description": "JSON: sent with Content-Type: application/json (else 415).",
                "content": {"application/json": {"schema": body_schema}},
            }
        return operation

    def _success(self, method: MethodDescriptor, rule: Binding) -> dict[str, Any]:
        response: Descriptor = method.output_type
        if method.server_streaming:
            item = self.message_ref(response)
            return {
                "description": "A stream of messages: NDJSON, or SSE with Accept: "
                "text/event-stream",
                "headers": _RESPONSE_HEADERS,
                "content": {
                    "application/x-ndjson": {
                        "schema": {
                            "type": "object",
                            "properties": {"result": item, "error": {"$ref": _ERROR_REF}},
                        }
                    },
                    # Each event as schemathesis and browsers parse it: its name and its data.
                    "text/event-stream": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "event": {"type": "string"},
                                "data": {"type": "string"},
                            },
                        }
                    },
                },
            }
        if rule.response_body:
            schema = self.field_schema(response.fields_by_name[rule.response_body])
        else:
            schema = self.message_ref(response)
        return {
            "description": "OK",
            "headers": _RESPONSE_HEADERS,
            "content": {"application/json": {"schema": schema}},
        }

    def _path_parameter(self, request: Descriptor, variable: str) -> dict[str, Any]:
        message = request
        names = variable.split(".")
        for name in names[:-1]:
            message = _message_type(message.fields_by_name[name])
        field = message.fields_by_name[names[-1]]
        schema = {**self.scalar_schema(field), **_constraints(field)}
        if schema.get("type") == "string":
            schema = {**schema, "minLength": 1}
        return {"name": variable, "in": "path", "required": True, "schema": schema}

    def _query_parameter(self, field: FieldDescriptor) -> dict[str, Any]:
        schema = {**self.scalar_schema(field), **_constraints(field)}
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        # A string the gateway needs not empty is a required parameter.
        required = schema.get("minLength", 0) > 0
        return {"name": field.name, "in": "query", "required": required, "schema": schema}

    def field_schema(self, field: FieldDescriptor) -> Schema:
        target = field.message_type
        if target is not None and target.GetOptions().map_entry:
            value = self._single_schema(target.fields_by_name["value"])
            return {"type": "object", "additionalProperties": value, **_constraints(field)}
        single = self._single_schema(field)
        if field.is_repeated:
            return {"type": "array", "items": single, **_constraints(field)}
        single = {**single, **_constraints(field)}
        if field.has_presence and not _in_real_oneof(field):
            return _nullable(single)
        return single

    def _single_schema(self, field: FieldDescriptor) -> Schema:
        if field.message_type is not None:
            return self.message_ref(field.message_type)
        return self.scalar_schema(field)

    def scalar_schema(self, field: FieldDescriptor) -> Schema:
        kind = field.type
        if kind == _T.TYPE_STRING:
            return {"type": "string"}
        if kind == _T.TYPE_BOOL:
            return {"type": "boolean"}
        if kind in _INTEGERS:
            return dict(_INTEGERS[kind])
        if kind == _T.TYPE_DOUBLE:
            return {"type": "number", "format": "double"}
        if kind == _T.TYPE_FLOAT:
            return {"type": "number", "format": "float"}
        if kind == _T.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if kind == _T.TYPE_ENUM:
            if field.enum_type is None:
                raise ValueError(f"{field.full_name} has no enum type")
            return {"type": "string", "enum": list(field.enum_type.values_by_name)}
        raise ValueError(f"{field.full_name} is not a scalar field")

    def message_ref(self, message: Descriptor) -> Schema:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        name = message.full_name
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder first: messages may refer to themselves
            self.schemas[name] = {
                "type": "object",
                "properties": {f.name: self.field_schema(f) for f in message.fields},
            }
        return {"$ref": f"#/components/schemas/{name}"}


def _constraints(field: FieldDescriptor) -> Schema:
    return dict(FIELD_CONSTRAINTS.get(field.full_name, {}))


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _RESPONSE_HEADERS,
        "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
    }


def _nullable(schema: Schema) -> Schema:
    kind = schema.get("type")
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    if isinstance(kind, str):
        nullable = {**schema, "type": [kind, "null"]}
        if "enum" in schema:
            nullable["enum"] = [*schema["enum"], None]
        return nullable
    return schema  # no type (any JSON) already admits null


def _in_real_oneof(field: FieldDescriptor) -> bool:
    if field.containing_oneof is None:
        return False
    proto = descriptor_pb2.DescriptorProto()
    _containing(field).CopyToProto(proto)
    return not proto.field[field.index].proto3_optional


def _message_type(field: FieldDescriptor) -> Descriptor:
    if field.message_type is None:
        raise ValueError(f"{field.full_name} is not a message field")
    return field.message_type


def _containing(field: FieldDescriptor) -> Descriptor:
    if field.containing_type is None:
        raise ValueError(f"{field.full_name} is not a message's field")
    return field.containing_type
