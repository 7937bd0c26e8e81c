"""Request bodies are limited before they are parsed, by declared length and by counting."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bridge.body import ClientDisconnected, check_declared_length, read_body
from bridge.errors import InvalidRequest, PayloadTooLarge


class Chunks:
    """An ASGI `receive` that hands out the given body chunks and counts how many were taken."""

    def __init__(self, chunks: Iterable[bytes], *, disconnect: bool = False) -> None:
        self.chunks = list(chunks)
        self.disconnect = disconnect
        self.taken = 0

    async def __call__(self) -> dict[str, object]:
        if self.taken == len(self.chunks):
            assert self.disconnect, "read past the last chunk"
            return {"type": "http.disconnect"}
        self.taken += 1
        more = self.taken < len(self.chunks) or self.disconnect
        return {"type": "http.request", "body": self.chunks[self.taken - 1], "more_body": more}


@pytest.mark.parametrize(
    ("chunks", "body"),
    [
        pytest.param([b""], b"", id="empty"),
        pytest.param([b"abc"], b"abc", id="one"),
        pytest.param([b"ab", b"", b"cd"], b"abcd", id="several"),
        pytest.param([b"x" * 10], b"x" * 10, id="exactly-the-limit"),
    ],
)
async def test_read_body_within_the_limit(chunks: list[bytes], body: bytes) -> None:
    assert await read_body(Chunks(chunks), limit=10) == body


async def test_read_body_stops_at_the_first_chunk_past_the_limit() -> None:
    receive = Chunks([b"x" * 6, b"x" * 6, b"x" * 6, b"x" * 6])
    with pytest.raises(PayloadTooLarge, match="exceeds 10 bytes"):
        await read_body(receive, limit=10)
    assert receive.taken == 2


async def test_a_client_that_leaves_mid_body() -> None:
    with pytest.raises(ClientDisconnected):
        await read_body(Chunks([b"abc"], disconnect=True), limit=10)


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        pytest.param([], None, id="none"),
        pytest.param([(b"content-length", b"10")], None, id="at-limit"),
        pytest.param([(b"content-length", b"11")], PayloadTooLarge, id="over"),
        pytest.param([(b"content-length", b"9" * 40)], PayloadTooLarge, id="absurd"),
        pytest.param([(b"content-length", b"-1")], InvalidRequest, id="negative"),
        pytest.param([(b"content-length", b"abc")], InvalidRequest, id="not-a-number"),
    ],
)
def test_check_declared_length(
    headers: list[tuple[bytes, bytes]], error: type[Exception] | None
) -> None:
    if error is None:
        check_declared_length(headers, 10)
    else:
        with pytest.raises(error):
            check_declared_length(headers, 10)
