"""Tracebacks that do not parse source, for the test process on Python 3.11.

3.11 keeps the recursion depth of its AST-to-object conversion in one per-interpreter counter
(CPython gh-106905), and its traceback module parses each source line with `ast.parse` to place
the `^~~~` carets. A garbage collection during a parse can run a finalizer that formats a
traceback (asyncio's "exception was never retrieved" report, pytest's hook for an exception in
`__del__`), which parses again, and the outer parse fails with "SystemError: AST constructor
recursion depth mismatch"; so does a parse in another thread. When the outer parse was pytest
formatting a failure report, the whole run died of an INTERNALERROR (CI, before this guard).

The guard takes the carets out of tracebacks: formatting one then never parses, so nothing but
pytest's own report formatting and assertion rewriting (both in the main thread, neither from a
finalizer) parses, and no parse can start inside another. Tracebacks keep every line; only the
caret line under a part of a line goes. `python -m tests.ast_guard` shows the failure and the fix.
"""

from __future__ import annotations

import ast
import gc
import sys
import traceback


def install() -> None:
    """Python 3.12 fixed the counter: nothing to do there."""
    if sys.version_info < (3, 12) and hasattr(
        traceback, "_extract_caret_anchors_from_line_segment"
    ):
        traceback._extract_caret_anchors_from_line_segment = lambda segment: None  # type: ignore[attr-defined]


def _fail() -> int:
    missing: dict[str, int] = {}
    return missing["key"] + 1  # a part of the line fails: 3.11 places carets under it


class _FormatsATracebackWhenCollected:
    def __init__(self) -> None:
        self.cycle = self  # only the garbage collector frees it

    def __del__(self) -> None:
        try:
            _fail()
        except KeyError as exc:
            traceback.format_exception(exc)


def demonstrate(parses: int = 100) -> int:
    """How many of `parses` parses fail while garbage whose finalizer formats a traceback is
    collected during them."""
    source = "\n".join(
        f"x{i} = [a for a in range({i}) if (lambda q: q + {i})(a)]" for i in range(300)
    )
    threshold = gc.get_threshold()
    gc.set_threshold(100, 2, 2)
    failures = 0
    try:
        for _ in range(parses):
            for _ in range(50):
                _FormatsATracebackWhenCollected()
            try:
                ast.parse(source)
            except SystemError:
                failures += 1
    finally:
        gc.set_threshold(*threshold)
        gc.collect()
    return failures


if __name__ == "__main__":
    print(f"carets: {demonstrate()} of 100 parses failed")
    install()
    print(f"no carets: {demonstrate()} of 100 parses failed")
