"""Images attached to a run's prompt (codex's `-i`): as asked for, then checked and written."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageInput:
    """One image as a request gives it: its bytes with their media type, or a path inside the
    run's workspace."""

    data: bytes | None = None
    media_type: str | None = None
    path: str | None = None
