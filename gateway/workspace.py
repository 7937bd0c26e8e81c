"""Workspace confinement: a run's working directory must resolve inside a configured root."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.errors import InvalidRequest, quote


def confine(path: Path, roots: Sequence[Path], *, shown: str, field: str, where: str = "") -> Path:
    """`path` with every symlink followed, if that lies inside one of `roots`; else 400.

    Checked before existence, so nothing about paths outside the roots is revealed. A symlink
    loop makes resolve() stop early and leave the rest of the path unresolved (after which
    `loop/..` would normalise away and hide where a later link points): a path that does not
    resolve to itself is refused.
    """
    try:
        resolved = path.resolve()
        if resolved.resolve() != resolved:
            raise RuntimeError(shown)
    except (OSError, RuntimeError):
        raise InvalidRequest(f"{field} cannot be resolved: {quote(shown)}", field=field) from None
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise InvalidRequest(
            f"{field} is outside the allowed {where}roots: {quote(shown)}", field=field
        )
    return resolved


def resolve_workspace(requested: str | None, *, default: Path, roots: Sequence[Path]) -> Path:
    """The real directory to run in. Relative paths are taken from the default workspace;
    symlinks are followed before the check, so a link out of a root is refused."""
    if requested is None or not requested.strip():
        return default
    if "\0" in requested:
        raise InvalidRequest("workspace contains a NUL byte", field="workspace")
    shown = requested.strip()
    resolved = confine(default / shown, roots, shown=shown, field="workspace")
    try:
        is_directory = resolved.is_dir()
    except (OSError, ValueError):  # a name over NAME_MAX, say: not a directory we can use
        is_directory = False
    if not is_directory:
        raise InvalidRequest(
            f"workspace is not an existing directory: {quote(shown)}", field="workspace"
        )
    return resolved
