"""Workspace confinement: a run's working directory must resolve inside a configured root."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.errors import InvalidRequest


def resolve_workspace(requested: str | None, *, default: Path, roots: Sequence[Path]) -> Path:
    """The real directory to run in. Relative paths are taken from the default workspace;
    symlinks are followed before the check, so a link out of a root is refused."""
    if requested is None or not requested.strip():
        return default
    if "\0" in requested:
        raise InvalidRequest("workspace contains a NUL byte", field="workspace")
    candidate = default / requested.strip()
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise InvalidRequest(
            f"workspace does not exist: {requested.strip()}", field="workspace"
        ) from None
    if not resolved.is_dir():
        raise InvalidRequest(
            f"workspace is not a directory: {requested.strip()}", field="workspace"
        )
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise InvalidRequest(
            f"workspace is outside the allowed roots: {requested.strip()}", field="workspace"
        )
    return resolved
