"""Command lines: parsing, and what Tab completes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from repl.commands import COMMANDS, parse
from repl.completion import KnownSessions, ReplCompleter
from repl.errors import UsageError


@pytest.mark.parametrize(
    ("line", "name", "rest"),
    [
        pytest.param("run hello world", "run", "hello world", id="run"),
        pytest.param("  RUN   spaced  out ", "run", "spaced  out", id="case-and-spaces"),
        pytest.param("run\nline one\nline two", "run", "line one\nline two", id="pasted"),
        pytest.param("quit", "exit", "", id="alias"),
        pytest.param("search abc two words --f", "search", "abc two words --f", id="search"),
        pytest.param("fork abc go on from here", "fork", "abc go on from here", id="fork"),
        pytest.param("image ws:shots/a b.png", "image", "ws:shots/a b.png", id="image-spaces"),
    ],
)
def test_parse(line: str, name: str, rest: str) -> None:
    invocation = parse(line)
    assert invocation is not None
    assert (invocation.command.name, invocation.rest) == (name, rest)


def test_blank_lines_are_nothing_and_unknown_commands_say_so() -> None:
    assert parse("   ") is None
    with pytest.raises(UsageError, match="unknown command 'nope'"):
        parse("nope x")


@given(st.text())
def test_any_line_is_an_invocation_nothing_or_a_usage_error(line: str) -> None:
    try:
        invocation = parse(line)
    except UsageError:
        return
    assert invocation is None or invocation.command in COMMANDS


def _completions(text: str, sessions: KnownSessions | None = None) -> list[str]:
    completer = ReplCompleter(sessions or KnownSessions())
    document = Document(text, len(text))
    return [c.text for c in completer.get_completions(document, CompleteEvent())]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", [*(c.name for c in COMMANDS), "quit"], id="everything"),
        pytest.param("s", ["schema", "search", "setenv", "show"], id="prefix"),
        pytest.param("SH", ["show"], id="any-case"),
        pytest.param("mode ", ["full", "compact"], id="fixed-words"),
        pytest.param("mode c", ["compact"], id="fixed-prefix"),
        pytest.param("show abc ", ["events", "triggers"], id="second-argument"),
        pytest.param("watch usage m", ["model"], id="repeating"),
        pytest.param("watch s", ["status", "session_id", "session_url", "structured"], id="watch"),
        pytest.param("changes abc ", ["diff"], id="changes-diff"),
        pytest.param("image c", ["clear"], id="image-clear"),
        pytest.param("schema ", ["clear"], id="schema-clear"),
        pytest.param("timeout ", [], id="free-text"),
        pytest.param("bogus ", [], id="unknown-command"),
    ],
)
def test_completion_of_commands_and_words(text: str, expected: list[str]) -> None:
    assert sorted(_completions(text)) == sorted(expected)


def test_session_ids_complete_newest_first() -> None:
    sessions = KnownSessions()
    sessions.replace([{"session_id": "aaa-old"}, {"session_id": "abc-older"}])
    sessions.add("abd-new")
    sessions.add("aaa-old")  # seen again: newest
    assert _completions("show a", sessions) == ["aaa-old", "abd-new", "abc-older"]
    assert _completions("prompt ab", sessions) == ["abd-new", "abc-older"]
    assert _completions("use ", sessions)[0] == "aaa-old"
    assert _completions("show aaa-old ", sessions) == ["events", "triggers"]
    assert _completions("fork ab", sessions) == ["abd-new", "abc-older"]
    assert _completions("changes aa", sessions) == ["aaa-old"]
