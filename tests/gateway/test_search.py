"""Log search on crafted files: offsets, lines and contexts exact whatever the text holds."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.sessions import search
from gateway.sessions.files import STDOUT, FileSessionStore
from gateway.sessions.model import Session

TEXT = st.text(alphabet=st.sampled_from(list("abcAB \n\nxyzÉéİıß日本\t")), max_size=300)  # noqa: RUF001  # dotless i on purpose


def write(tmp: Path, text: str) -> Path:
    path = tmp / "stdout.log"
    path.write_bytes(text.encode())
    return path


@settings(max_examples=300, deadline=None)
@given(
    text=TEXT, query=st.text(alphabet=st.sampled_from(list("abAB É日x ")), min_size=1, max_size=4)
)
def test_exact_offsets_point_at_a_case_insensitive_match(text: str, query: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), text)
        hits = search.exact(path, query, max_results=50, context_chars=5)
    for hit in hits:
        found = text[hit.start : hit.end]
        assert found.lower() == query.lower() or found.casefold() == query.casefold()
        assert hit.line == text.count("\n", 0, hit.start) + 1
        assert text[hit.window_start : hit.window_end] == hit.context
        assert hit.window_start <= hit.start and hit.end <= hit.window_end
    assert [h.start for h in hits] == sorted(h.start for h in hits)
    if query.isascii():
        expected = text.lower().count(query.lower()) if query else 0
        assert len(hits) == min(expected, 50) or len(hits) <= expected


@settings(max_examples=200, deadline=None)
@given(text=TEXT, query=st.text(alphabet=st.sampled_from(list("abcxyz ")), min_size=1, max_size=6))
def test_fuzzy_hits_are_whole_lines_ranked_by_score(text: str, query: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), text)
        hits = search.fuzzy(path, query, max_results=10, context_chars=100, min_score=0.3)
    lines = text.split("\n")
    for hit in hits:
        assert text[hit.start : hit.end] == lines[hit.line - 1]
        assert 0.3 <= hit.score <= 1
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_blank_line_runs_do_not_shift_offsets(tmp_path: Path) -> None:
    text = "a\n\n\n\nneedle here\n\n\nneedle again\n"
    hits = search.exact(write(tmp_path, text), "NEEDLE", max_results=5, context_chars=3)
    assert [(h.line, h.start) for h in hits] == [(5, 5), (8, 19)]
    assert [h.context for h in hits] == ["needle he", "needle ag"]
    fuzzy = search.fuzzy(write(tmp_path, text), "needle again", max_results=5, context_chars=50)
    assert (fuzzy[0].line, fuzzy[0].start, fuzzy[0].score) == (8, 19, 1.0)


def test_unicode_text_keeps_character_offsets(tmp_path: Path) -> None:
    text = "İstanbul ß 日本語 error\nÉCOLE école\n"
    path = write(tmp_path, text)
    (hit,) = search.exact(path, "ERROR", max_results=5, context_chars=100)
    assert text[hit.start : hit.end] == "error" and hit.line == 1
    hits = search.exact(path, "école", max_results=5, context_chars=0)
    assert [text[h.start : h.end] for h in hits] == ["ÉCOLE", "école"]
    assert all(h.line == 2 for h in hits)


def test_a_query_longer_than_the_log_finds_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "short\n")
    assert search.exact(path, "short and then much longer", max_results=5, context_chars=5) == []
    assert search.fuzzy(path, "x" * 500, max_results=5, context_chars=5) == []


def test_missing_and_empty_logs_find_nothing(tmp_path: Path) -> None:
    assert search.exact(tmp_path / "none.log", "a", max_results=5, context_chars=5) == []
    assert search.fuzzy(write(tmp_path, ""), "a", max_results=5, context_chars=5) == []


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_block_boundaries_do_not_change_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    text = "".join(f"line {i} has token{i % 7} and ÉÉ\n" for i in range(300))
    path = write(tmp_path, text)
    expected = search.exact(path, "token3", max_results=100, context_chars=10)
    # A block size no real process chooses, to put block edges everywhere.
    monkeypatch.setattr(search, "BLOCK_BYTES", block)
    assert search.exact(path, "token3", max_results=100, context_chars=10) == expected
    assert len(expected) == len([i for i in range(300) if i % 7 == 3])


def test_max_results_stops_early_and_tail_lines_limits_the_text(tmp_path: Path) -> None:
    path = write(tmp_path, "hit\n" * 100)
    assert len(search.exact(path, "hit", max_results=3, context_chars=0)) == 3
    assert len(search.exact(path, "hit", max_results=50, context_chars=0, tail_lines=4)) == 4


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    store = FileSessionStore([tmp_path / "sessions"], tmp_path / "secure")
    store.load()
    try:
        created = store.create(secure=False)
        store.save(created)
        (created.files_dir / STDOUT).write_text("alpha beta\ngamma alpha\ndelta\n")
        yield created
    finally:
        store.close()


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        pytest.param(search.Query(" \t"), "q", "Query parameter q is required", id="blank"),
        pytest.param(search.Query("a" * 1001), "q", "q is longer than 1000 characters", id="long"),
        pytest.param(
            search.Query("a", max_results=0),
            "max_results",
            "max_results must be between 1 and 1000",
            id="no-results",
        ),
        pytest.param(
            search.Query("a", max_results=1001),
            "max_results",
            "max_results must be between 1 and 1000",
            id="too-many-results",
        ),
        pytest.param(
            search.Query("a", tail_lines=0),
            "tail_lines",
            "tail_lines must be at least 1",
            id="no-tail",
        ),
        pytest.param(
            search.Query("a", fuzzy=True, min_score=1.5),
            "min_score",
            "min_score must be between 0 and 1",
            id="min-score",
        ),
    ],
)
async def test_a_search_out_of_bounds_names_its_field(
    session: Session, query: search.Query, field: str, message: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await search.search_session(session, query, context_chars=10)
    assert (raised.value.field, raised.value.message) == (field, message)


@pytest.mark.parametrize(
    ("query", "lines"),
    [
        pytest.param(search.Query("ALPHA"), [1, 2], id="exact"),
        pytest.param(search.Query("alpha", max_results=1), [1], id="exact-first"),
        pytest.param(search.Query("alpha", tail_lines=2), [1], id="exact-in-the-tail"),
        pytest.param(search.Query("a", min_score=7.0), [1, 1, 1, 2, 2], id="min-score-only-fuzzy"),
        pytest.param(search.Query("gamma alpah", fuzzy=True), [2], id="fuzzy"),
    ],
)
async def test_a_search_reads_the_sessions_stdout(
    session: Session, query: search.Query, lines: list[int]
) -> None:
    hits = await search.search_session(session, query, context_chars=10)
    assert [hit.line for hit in hits] == lines
