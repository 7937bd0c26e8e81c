"""The test process's tracebacks do not parse source (tests/ast_guard.py), so garbage collected
during a parse cannot break it."""

from __future__ import annotations

import traceback

from tests import ast_guard


def test_a_parse_survives_finalizers_that_format_tracebacks() -> None:
    assert ast_guard.demonstrate() == 0


def test_tracebacks_still_name_every_line() -> None:
    try:
        ast_guard._fail()
    except KeyError as exc:
        text = "".join(traceback.format_exception(exc))
    assert 'return missing["key"] + 1' in text
    assert "KeyError: 'key'" in text
