"""Responses: compact JSON, as every body and stream item is sent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused rather than sent as invalid JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def json_response(status: int, value: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        encode_json(value), status_code=status, headers=headers, media_type="application/json"
    )
