"""Searching a session log: exact (case-insensitive) or fuzzy (rapidfuzz), in bounded memory.

The log is read in line-aligned blocks, never whole. Offsets are character offsets into the
searched text and `line` is 1-based, both exact whatever the text holds (blank-line runs,
non-ASCII: case-insensitive matching uses the regex engine's simple case folding, which never
changes lengths). Fuzzy hits are ranked by score, ties in file order. `exact` and `fuzzy` run in
a worker thread (`search_session` puts them there): each block is a bounded amount of work, so
the event loop keeps its turns.
"""

from __future__ import annotations

import asyncio
import heapq
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy
from rapidfuzz import fuzz, process, utils

from gateway import regular_file
from gateway.errors import InvalidRequest, at_least_one
from gateway.sessions.files import STDOUT, Session
from gateway.sessions.logs import tail_start

BLOCK_BYTES = 1 << 20
FUZZY_BATCH_LINES = 4096
DEFAULT_MIN_SCORE = 0.6
MAX_QUERY_CHARS = 1000
DEFAULT_RESULTS = 5
MAX_RESULTS = 1000
MAX_TAIL_LINES = 1_000_000


@dataclass(frozen=True)
class Hit:
    line: int
    score: float
    start: int
    end: int
    window_start: int
    window_end: int
    context: str
    kind: str  # text_match | fuzzy_text_hit


@dataclass(frozen=True)
class Query:
    """A search of a session's stdout.log, as asked (None: not given)."""

    text: str
    fuzzy: bool = False
    max_results: int | None = None
    tail_lines: int | None = None
    """Only the last lines (capped at MAX_TAIL_LINES)."""
    min_score: float | None = None
    """Fuzzy only: 0 to 1, DEFAULT_MIN_SCORE when not given."""


async def search_session(session: Session, query: Query, *, context_chars: int) -> list[Hit]:
    """The hits of `query` in the session's stdout.log, found in a worker thread; a query out
    of bounds is InvalidRequest naming its field."""
    text = query.text
    if not text.strip():
        raise InvalidRequest("Query parameter q is required", field="q")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"q is longer than {MAX_QUERY_CHARS} characters", field="q")
    max_results = DEFAULT_RESULTS if query.max_results is None else query.max_results
    if not 1 <= max_results <= MAX_RESULTS:
        raise InvalidRequest(
            f"max_results must be between 1 and {MAX_RESULTS}", field="max_results"
        )
    tail_lines = None
    if query.tail_lines is not None:
        tail_lines = min(at_least_one(query.tail_lines, "tail_lines"), MAX_TAIL_LINES)
    path = session.files_dir / STDOUT
    if not query.fuzzy:
        return await asyncio.to_thread(
            exact,
            path,
            text,
            max_results=max_results,
            context_chars=context_chars,
            tail_lines=tail_lines,
        )
    min_score = query.min_score
    if min_score is not None and not 0 <= min_score <= 1:
        raise InvalidRequest("min_score must be between 0 and 1", field="min_score")
    return await asyncio.to_thread(
        fuzzy,
        path,
        text,
        max_results=max_results,
        context_chars=context_chars,
        min_score=DEFAULT_MIN_SCORE if min_score is None else min_score,
        tail_lines=tail_lines,
    )


@dataclass(frozen=True)
class _Block:
    text: str
    first_line: int  # 1-based number of the block's first line
    first_char: int  # character offset of the block in the whole text


def _blocks(path: Path, tail_lines: int | None) -> Iterator[_Block]:
    """The file (or its last `tail_lines` lines, numbered from 1) in line-aligned blocks:
    memory stays a few blocks whatever `tail_lines` and the file's size."""
    try:
        handle = regular_file.open_for_reading(path)
    except OSError:  # missing, or not a regular file (NotRegularFile)
        return
    line, char = 1, 0
    carry = b""
    with handle:
        if tail_lines is not None:
            handle.seek(tail_start(handle, tail_lines, handle.seek(0, 2)))
        while True:
            data = handle.read(BLOCK_BYTES)
            if not data:
                break
            data = carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # no newline yet: keep reading (bounded by the next block)
                if len(data) < 8 * BLOCK_BYTES:
                    carry = data
                    continue
                cut = len(data)
            carry = data[cut:]
            text = data[:cut].decode(errors="replace")
            yield _Block(text, line, char)
            line += text.count("\n")
            char += len(text)
    if carry:
        yield _Block(carry.decode(errors="replace"), line, char)


def _window(block: _Block, start: int, end: int, context_chars: int) -> tuple[int, int, str]:
    """A context window around [start, end) within its line (block-relative offsets in)."""
    text = block.text
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    lo = max(line_start, start - context_chars)
    hi = min(line_end, end + context_chars)
    return block.first_char + lo, block.first_char + hi, text[lo:hi]


def exact(
    path: Path,
    query: str,
    *,
    max_results: int,
    context_chars: int,
    tail_lines: int | None = None,
) -> list[Hit]:
    if query.isascii():
        needle = query.lower().encode()
        find = _ascii_finder(needle)
    else:
        pattern = re.compile(re.escape(query), re.IGNORECASE)

        def find(text: str) -> Iterator[tuple[int, int]]:
            for match in pattern.finditer(text):
                yield match.start(), match.end()

    hits: list[Hit] = []
    for block in _blocks(path, tail_lines):
        line = block.first_line
        counted_to = 0
        for start, end in find(block.text):
            line += block.text.count("\n", counted_to, start)
            counted_to = start
            window_start, window_end, context = _window(block, start, end, context_chars)
            hits.append(
                Hit(
                    line=line,
                    score=1.0,
                    start=block.first_char + start,
                    end=block.first_char + end,
                    window_start=window_start,
                    window_end=window_end,
                    context=context,
                    kind="text_match",
                )
            )
            if len(hits) >= max_results:
                return hits
    return hits


def _ascii_finder(needle: bytes) -> Callable[[str], Iterator[tuple[int, int]]]:
    """An ASCII query can only match ASCII text, and lower-casing bytes touches ASCII letters
    only, so offsets survive: search the lower-cased bytes, a C loop, instead of a regex."""

    def find(text: str) -> Iterator[tuple[int, int]]:
        if not needle:
            return
        ascii_text = text.isascii()
        haystack = text.encode().lower()
        position = haystack.find(needle)
        chars, bytes_seen = 0, 0
        while position >= 0:
            if ascii_text:
                start = position
            else:  # map the byte offset to a character offset, incrementally
                chars += len(haystack[bytes_seen:position].decode(errors="replace"))
                bytes_seen = position
                start = chars
            yield start, start + len(needle)
            position = haystack.find(needle, position + len(needle))

    return find


def fuzzy(
    path: Path,
    query: str,
    *,
    max_results: int,
    context_chars: int,
    min_score: float = DEFAULT_MIN_SCORE,
    tail_lines: int | None = None,
) -> list[Hit]:
    """The best-scoring lines (rapidfuzz partial_ratio: the best-matching substring), ranked."""
    needle = utils.default_process(query)
    if not needle:
        return []
    best: list[tuple[float, int, Hit]] = []  # min-heap of (score, -line, hit)
    cutoff = min_score * 100
    for block in _blocks(path, tail_lines):
        for offsets, lines in _line_batches(block):
            for text, score, index in _scores(needle, lines, cutoff):
                start, line_number = offsets[index]
                hit = Hit(
                    line=line_number,
                    score=round(score / 100, 4),
                    start=block.first_char + start,
                    end=block.first_char + start + len(text),
                    window_start=block.first_char + start,
                    window_end=block.first_char + start + min(len(text), 2 * context_chars),
                    context=text.strip()[: 2 * context_chars],
                    kind="fuzzy_text_hit",
                )
                entry = (hit.score, -line_number, hit)
                if len(best) < max_results:
                    heapq.heappush(best, entry)
                elif entry[:2] > best[0][:2]:
                    heapq.heapreplace(best, entry)
            if len(best) >= max_results:
                cutoff = max(cutoff, best[0][0] * 100)
    return [hit for _, _, hit in sorted(best, key=lambda e: (-e[0], -e[1]))]


def _scores(needle: str, lines: list[str], cutoff: float) -> Iterator[tuple[str, float, int]]:
    """partial_ratio aligns the shorter string inside the longer, so a line shorter than the
    query would "contain" it: such lines are scored as wholes (ratio) instead.

    `cdist` scores the batch in C++ with the GIL released (`extract_iter` holds it throughout),
    so a long fuzzy search in a worker thread leaves the event loop its turns.
    """
    short = numpy.fromiter((len(line) < len(needle) for line in lines), bool, len(lines))
    for scorer, chosen in ((fuzz.partial_ratio, ~short), (fuzz.ratio, short)):
        indices = numpy.flatnonzero(chosen)
        if not indices.size:
            continue
        choices = lines if indices.size == len(lines) else [lines[i] for i in indices]
        scores = process.cdist(
            [needle],
            choices,
            scorer=scorer,
            processor=utils.default_process,
            score_cutoff=cutoff,
            dtype=numpy.float64,
            workers=1,
        )[0]
        for position in numpy.flatnonzero(scores >= cutoff):
            index = int(indices[position])
            yield lines[index], float(scores[position]), index


def _line_batches(block: _Block) -> Iterator[tuple[list[tuple[int, int]], list[str]]]:
    """Non-blank lines of a block in batches, with each line's (char offset, line number)."""
    offsets: list[tuple[int, int]] = []
    lines: list[str] = []
    position = 0
    number = block.first_line
    for line in block.text.split("\n"):
        if line.strip():
            offsets.append((position, number))
            lines.append(line)
            if len(lines) >= FUZZY_BATCH_LINES:
                yield offsets, lines
                offsets, lines = [], []
        position += len(line) + 1
        number += 1
    if lines:
        yield offsets, lines
