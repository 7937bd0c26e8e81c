"""Events become protobuf Structs by exact type (gateway/api/views.py `to_struct`), faster than
the library's `Struct.update`, which stays the oracle: the same message, byte for byte, for every
shape JSON gives and for the odd values it never gives."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2

from gateway.api.views import to_struct


class _Text(str):
    __slots__ = ()


def _by_the_library(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({}, id="empty"),
        pytest.param({"s": "x", "n": 3, "f": 2.5, "t": True, "no": False, "z": None}, id="scalars"),
        pytest.param({"zero": 0, "empty": "", "neg": -1.25, "big": 2**60}, id="falsy-and-big"),
        pytest.param({"d": {}, "l": []}, id="empty-containers-are-set"),
        pytest.param({"l": [[], {}, [1, [2, {"z": None}]], "x", True]}, id="nested-lists"),
        pytest.param({"a": {"b": {"c": {"d": [{"e": "deep"}]}}}}, id="nested-objects"),
        pytest.param(
            {"type": "turn.completed", "usage": {"input_tokens": 100, "output_tokens": 10}},
            id="codex-event",
        ),
        pytest.param({"text": "é \u0000 \U0001f600"}, id="unicode"),
        pytest.param({"t": (1, "two"), "s": _Text("sub")}, id="a-tuple-and-a-str-subclass"),
        pytest.param({"inf": float("inf"), "nan": float("nan")}, id="non-finite"),
    ],
)
def test_to_struct_builds_what_struct_update_builds(value: dict[str, Any]) -> None:
    assert to_struct(value).SerializeToString(deterministic=True) == (
        _by_the_library(value).SerializeToString(deterministic=True)
    )


def test_to_struct_refuses_what_struct_update_refuses() -> None:
    with pytest.raises(ValueError, match="Unexpected type"):
        _by_the_library({"x": object()})
    with pytest.raises(ValueError, match="Unexpected type"):
        to_struct({"x": object()})
