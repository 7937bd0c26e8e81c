"""Request bodies, read with a byte limit that is enforced before anything is parsed.

A declared `Content-Length` over the limit is refused without reading a byte; a body without one
(chunked) is counted as it arrives and reading stops at the first chunk past the limit, so no more
than the limit plus one chunk is ever held.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from starlette.types import Receive

from .errors import InvalidRequest, PayloadTooLarge

_DIGITS: Final = re.compile(rb"[0-9]+")


class ClientDisconnected(Exception):
    """The client went away before its body was read; there is nobody to answer."""


def check_declared_length(headers: Iterable[tuple[bytes, bytes]], limit: int) -> None:
    """Refuse a `Content-Length` over `limit` (the server has already rejected a malformed one)."""
    for name, value in headers:
        if name == b"content-length":
            digits = value.strip()
            if not _DIGITS.fullmatch(digits):
                raise InvalidRequest("Invalid Content-Length header")
            # Past 18 digits it is over any limit; int() is never asked for a huge number.
            if len(digits) > 18 or int(digits) > limit:
                raise PayloadTooLarge(limit)


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, or `PayloadTooLarge` as soon as more than `limit` bytes have arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
