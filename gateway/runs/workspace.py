"""Workspace confinement: a run's working directory must resolve inside a configured root."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from gateway.errors import InvalidRequest, quote


def within(path: Path | str, roots: Iterable[Path | str]) -> bool:
    """Whether `path` is one of `roots` or below one, all absolute and normal (as given:
    resolve both first when links matter). Compared as text, which a Path's is, and so is the
    kernel's name for an open directory: building Paths cost more than the check (per spawn)."""
    text = str(path)
    for root in roots:
        top = str(root)
        if text == top or text.startswith(top if top.endswith("/") else f"{top}/"):
            return True
    return False


def confine(
    path: Path,
    roots: Sequence[Path],
    *,
    shown: str,
    field: str,
    where: str = "",
    outside: str | None = None,
) -> Path:
    """`path` with every symlink followed, if that lies inside one of `roots`; else 400
    ("<field> is outside <outside>", by default the allowed <where>roots).

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
        outside = outside or f"the allowed {where}roots"
        raise InvalidRequest(f"{field} is outside {outside}: {quote(shown)}", field=field)
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


def open_confined(path: Path, roots: Sequence[Path], *, shown: str) -> int:
    """A descriptor of the directory `path` names now, verified on the opened directory itself
    to lie inside one of `roots` (400 otherwise). The caller spawns in exactly that directory
    (`/proc/self/fd/<fd>` as the child's cwd) and closes it.

    A run waits for a slot between its request's check and its spawn: a directory swapped for
    a symlink meanwhile must not move it out of the roots. Whatever links the path went
    through, the opened directory's own path (from /proc/self/fd) is what is checked.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ValueError):
        raise InvalidRequest(
            f"workspace is not an existing directory: {quote(shown)}", field="workspace"
        ) from None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")  # noqa: PTH115  # hot path, per spawn
    except OSError:
        os.close(fd)
        raise InvalidRequest(
            f"workspace cannot be resolved: {quote(shown)}", field="workspace"
        ) from None
    if not real.startswith("/") or not within(real, _real(tuple(roots))):
        os.close(fd)
        raise InvalidRequest(
            "workspace is outside the allowed roots (it changed since it was checked): "
            f"{quote(shown)}",
            field="workspace",
        )
    return fd


@functools.lru_cache(maxsize=64)
def _real(roots: tuple[Path, ...]) -> tuple[Path, ...]:
    """The configured roots as they resolved when first used: they are the operator's, and
    checked at every spawn."""
    return tuple(root.resolve() for root in roots)
