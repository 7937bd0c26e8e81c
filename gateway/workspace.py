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
    shown = requested.strip()
    try:
        # Symlinks are followed as far as the path exists; the check comes before existence so
        # that nothing about paths outside the roots is revealed.
        resolved = (default / shown).resolve()
        if resolved.resolve() != resolved:  # a symlink loop left part of it unresolved
            raise RuntimeError(shown)
    except (OSError, RuntimeError):
        raise InvalidRequest(f"workspace cannot be resolved: {shown}", field="workspace") from None
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise InvalidRequest(f"workspace is outside the allowed roots: {shown}", field="workspace")
    try:
        is_directory = resolved.is_dir()
    except (OSError, ValueError):  # a name over NAME_MAX, say: not a directory we can use
        is_directory = False
    if not is_directory:
        raise InvalidRequest(f"workspace is not an existing directory: {shown}", field="workspace")
    return resolved
