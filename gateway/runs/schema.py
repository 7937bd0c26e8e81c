"""A run's output schema: the JSON Schema its final answer must match, checked before the run
and used to judge the answer after it.

codex passes the schema to the model (`--output-schema`) but does not check the answer; the
gateway does, with `jsonschema_rs`. A schema is refused (400, `field="output_schema"`) unless it
is a JSON object of at most `MAX_SCHEMA_BYTES` serialized, nested at most `MAX_DEPTH` deep, and
valid per its metaschema. The depth is measured here, iteratively, before any library sees the
schema: a recursive validator (in Rust, or Python's own `json`) on a 100,000-deep document
overflows its stack. A `$ref` or `$schema` naming anything outside the schema is never fetched:
the validator's retriever refuses every URI, so such a schema is refused as invalid.

An answer is the final agent message parsed as strict JSON (surrounding whitespace aside; a
```json fence is not JSON) and validated; what is wrong with it is a bounded list of
`SchemaError`s, each an instance path (a JSON pointer) and a short message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jsonschema_rs

from gateway.errors import InvalidRequest

MAX_SCHEMA_BYTES: Final = 64 * 1024
MAX_DEPTH: Final = 32
"""Of objects and arrays: about what protobuf carries (a Struct takes three nested messages per
level of objects, and decoding stops at 100), so a schema accepted here can be shown in a
Trigger message and read back by any client. Deeper ones never arrive over gRPC (the request
does not decode); a REST body or a trigger file reaches this check first."""
MAX_ANSWER_DEPTH: Final = 256
MAX_ERRORS: Final = 20
MAX_PATH_CHARS: Final = 128
MAX_ERROR_CHARS: Final = 200
FIELD: Final = "output_schema"


@dataclass(frozen=True)
class SchemaError:
    """What is wrong with an answer: where (a JSON pointer into the answer; "" is all of it)."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


@dataclass(frozen=True)
class Answer:
    """An answer judged: its parsed value when it is valid, else what is wrong with it."""

    value: Any
    errors: tuple[SchemaError, ...]

    @property
    def valid(self) -> bool:
        return not self.errors


class OutputSchema:
    """A checked schema (`InvalidRequest` when it is not acceptable) and its validator."""

    def __init__(self, schema: object, *, field: str = FIELD) -> None:
        if not isinstance(schema, dict):
            raise InvalidRequest(f"{field} must be a JSON object (a JSON Schema)", field=field)
        if depth(schema, MAX_DEPTH) > MAX_DEPTH:
            raise InvalidRequest(f"{field} is nested deeper than {MAX_DEPTH} levels", field=field)
        try:
            text = json.dumps(schema, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (ValueError, TypeError):
            raise InvalidRequest(f"{field} holds a value JSON cannot carry", field=field) from None
        self.text = text.encode()
        if len(self.text) > MAX_SCHEMA_BYTES:
            raise InvalidRequest(
                f"{field} is {len(self.text)} bytes serialized; at most {MAX_SCHEMA_BYTES}",
                field=field,
            )
        try:
            self._validator = jsonschema_rs.validator_for(schema, retriever=_refuse)
        except jsonschema_rs.ValidationError as exc:
            raise InvalidRequest(
                f"{field} is not a valid JSON Schema: {_first_line(exc.message)}", field=field
            ) from None
        except (jsonschema_rs.ReferencingError, ValueError) as exc:
            raise InvalidRequest(
                f"{field} is not a usable JSON Schema: {_first_line(str(exc))}", field=field
            ) from None
        self.schema: dict[str, Any] = schema

    def judge(self, output: str) -> Answer:
        """The final agent message as JSON, validated."""
        try:
            value = json.loads(output.strip(), parse_constant=_not_json)
        except RecursionError:
            return _wrong("", "the answer is not usable JSON: nested too deeply")
        except ValueError as exc:
            return _wrong("", f"the answer is not JSON ({exc}); answer with the JSON value only")
        if depth(value, MAX_ANSWER_DEPTH) > MAX_ANSWER_DEPTH:
            return _wrong("", f"the answer is nested deeper than {MAX_ANSWER_DEPTH} levels")
        errors: list[SchemaError] = []
        for error in self._validator.iter_errors(value):
            errors.append(
                SchemaError(
                    _capped(pointer(error.instance_path), MAX_PATH_CHARS),
                    _capped(_first_line(error.message), MAX_ERROR_CHARS),
                )
            )
            if len(errors) == MAX_ERRORS:
                break
        return Answer(None if errors else value, tuple(errors))


def check(schema: object, *, field: str = FIELD) -> OutputSchema | None:
    """A request's schema checked (None: the request has none)."""
    return None if schema is None else OutputSchema(schema, field=field)


def depth(value: object, limit: int) -> int:
    """How deep objects and arrays nest in `value` (a scalar: 0), counted up to `limit` + 1."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        children: Iterator[object]
        if isinstance(item, dict):
            children = iter(item.values())
        elif isinstance(item, list | tuple):
            children = iter(item)
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level) for child in children)
    return deepest


def pointer(parts: list[str | int]) -> str:
    """A JSON pointer (RFC 6901) from path segments."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _refuse(uri: str) -> Any:
    raise ValueError(f"{uri[:200]} is not fetched: a schema must be self-contained")


def _wrong(path: str, message: str) -> Answer:
    return Answer(None, (SchemaError(path, _capped(message, MAX_ERROR_CHARS)),))


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def repair_prompt(errors: Sequence[SchemaError]) -> str:
    """The repair turn's prompt: what is wrong with the answer, and what to answer instead."""
    lines = [f"- {error.path or '(the whole answer)'}: {error.message}" for error in errors]
    return (
        "Your final answer does not match the required JSON schema (the output schema of this"
        " run). Validation errors, by JSON pointer into your answer:\n"
        + "\n".join(lines)
        + "\n\nReply again with only the corrected JSON value that matches the schema: no"
        " prose, no Markdown, no code fences.\n"
    )
