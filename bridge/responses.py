"""Responses: compact JSON, as every body and stream item is sent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused rather than sent as invalid JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def encode_printed(value: Any) -> bytes:
    """`encode_json` of what bridge/printer.py printed (every answer and stream item), by
    orjson: a fifth of the cost. The printer yields no non-finite float, which orjson would
    write as null (doubles print as protojson's "NaN" strings, a Value's are refused); what
    orjson refuses (an integer past 64 bits, a lone surrogate) goes to `encode_json`."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return encode_json(value)


def json_response(status: int, value: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        encode_json(value), status_code=status, headers=headers, media_type="application/json"
    )
