"""Checks of the request id every REST error body carries (bridge/requestid.py)."""

from __future__ import annotations

from typing import Any

import httpx

from bridge.requestid import is_sane


def without_request_id(body: Any, expected: str | None = None) -> Any:
    """`body` (an error body or stream error item) without its `request_id`, which must be a
    sane id (and `expected`, when given), so the rest can be compared exactly."""
    assert isinstance(body, dict), body
    rest = dict(body)
    request_id = rest.pop("request_id", None)
    assert isinstance(request_id, str), body
    assert is_sane(request_id), body
    if expected is not None:
        assert request_id == expected, (request_id, expected)
    return rest


def error_json(response: httpx.Response) -> Any:
    """The response's JSON error body without its `request_id`, which must be the one of the
    response's `X-Request-Id` header."""
    return without_request_id(response.json(), response.headers["x-request-id"])
