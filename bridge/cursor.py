"""Resuming a stream: a streamed message's `seq` is its SSE `id`, and `Last-Event-ID` resumes.

A server-streaming RPC whose messages carry a `seq` (a position in a session's log) and whose
request has an `after_seq` field can be resumed: the browser's `EventSource` sends the last
`id:` it saw as the `Last-Event-ID` header when it reconnects, and that fills `after_seq`
unless the query string set it. Nothing else in the bridge knows about cursors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from google.protobuf.message import Message

from .errors import InvalidRequest

SEQ_FIELD: Final = "seq"
AFTER_FIELD: Final = "after_seq"
_MAX_ID_CHARS = 19  # an int64


def resume_from_header(request: Message, headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Set the request's `after_seq` from a `Last-Event-ID` header (the query string wins)."""
    if AFTER_FIELD not in request.DESCRIPTOR.fields_by_name or request.HasField(AFTER_FIELD):
        return
    for name, value in headers:
        if name == b"last-event-id":
            text = value.decode("latin-1").strip()
            if not text:
                return  # the spec's way of saying "no last event"
            if (
                len(text) > _MAX_ID_CHARS
                or not text.isascii()
                or not text.isdigit()
                or int(text) >= 2**63
            ):
                raise InvalidRequest(
                    f"Last-Event-ID must be the seq of an item (a number), not {text[:40]!r}"
                )
            setattr(request, AFTER_FIELD, int(text))
            return


def event_id(value: Any) -> int | None:
    """The SSE id of a streamed message as JSON: its `seq`, if it has one."""
    if isinstance(value, dict):
        seq = value.get(SEQ_FIELD)
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0:
            return seq
    return None
