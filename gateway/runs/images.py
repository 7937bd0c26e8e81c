"""Images attached to a run's prompt (codex's `--image`): as asked for, checked, then copied.

An image is given inline (`data` with its `media_type`) or as a `path` inside the run's
workspace. Two steps:

- `check` (the runner's `_prepare`, before the run takes a slot; cheap, nothing is opened): the
  count, exactly one of `data` or `path`, the media type and the bytes' signature and size of
  inline data; a path's syntax, its confinement to the workspace (symlinks followed) and what
  `stat` says of it (a regular file within the size limit).
- `copy` (at run start, in a worker thread): every image is written to the run's scratch
  directory, a path image as a copy of the bytes read and checked then (the file is opened
  with symlinks followed and its opened descriptor checked to lie in the workspace, never
  blocking on a FIFO). codex gets the copies: a link swapped in the workspace after the check
  cannot send another file to the model.

Every violation is a 400 naming the image (`images[3]: ...`, field `images[3]`).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway import regular_file
from gateway.errors import InvalidRequest, StorageFailed, quote
from gateway.regular_file import NotRegularFile
from gateway.runs.scratch import Scratch
from gateway.runs.workspace import confine

# The media types codex and the model take, with the extension of the copy codex reads.
MEDIA_TYPES: Final = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
}
MAX_PATH_CHARS: Final = 4096  # PATH_MAX


@dataclass(frozen=True)
class ImageInput:
    """One image as a request gives it: its bytes with their media type, or a path inside the
    run's workspace."""

    data: bytes | None = None
    media_type: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed `check`: inline bytes of a known media type, or a path (as given,
    and as it resolved inside the workspace then)."""

    index: int
    data: bytes | None = None
    media_type: str | None = None
    shown: str = ""
    path: Path | None = None


def sniff(data: bytes) -> str | None:
    """The supported media type whose signature starts `data`, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check(
    images: Sequence[ImageInput], workspace: Path, *, max_images: int, max_bytes: int
) -> tuple[CheckedImage, ...]:
    """The request's images checked as far as can be without reading a file; else 400."""
    if len(images) > max_images:
        raise InvalidRequest(
            f"at most {max_images} images per run, got {len(images)}", field="images"
        )
    return tuple(
        _check_one(index, image, workspace, max_bytes) for index, image in enumerate(images)
    )


def _check_one(index: int, image: ImageInput, workspace: Path, max_bytes: int) -> CheckedImage:
    if image.data is not None and image.path is not None:
        raise _refused(index, "give data or path, not both")
    media_type = None
    if image.media_type is not None:
        media_type = image.media_type.strip().lower()
        if media_type not in MEDIA_TYPES:
            raise _refused(
                index,
                f"media_type {quote(image.media_type)} is not one of {', '.join(MEDIA_TYPES)}",
            )
    if image.data is not None:
        data = _checked_data(index, image.data, media_type, max_bytes)
        return CheckedImage(index, data=data, media_type=media_type)
    if image.path is None:
        raise _refused(index, "give data (with its media_type) or path")
    shown = image.path
    if not shown.strip():
        raise _refused(index, "path is empty")
    if "\0" in shown or len(shown) > MAX_PATH_CHARS:
        raise _refused(index, f"path is not a valid path: {quote(shown)}")
    try:
        resolved = confine(
            workspace / shown,
            (workspace,),
            shown=shown,
            field="path",
            outside="the run's workspace",
        )
    except InvalidRequest as exc:
        raise _refused(index, exc.message) from None
    _check_stat(index, resolved, shown, max_bytes)
    return CheckedImage(index, media_type=media_type, shown=shown, path=resolved)


def _checked_data(index: int, data: bytes, media_type: str | None, max_bytes: int) -> bytes:
    if media_type is None:
        raise _refused(index, f"data needs its media_type ({', '.join(MEDIA_TYPES)})")
    if not data:
        raise _refused(index, "data is empty")
    if len(data) > max_bytes:
        raise _refused(index, f"data is {len(data)} bytes, over the limit of {max_bytes}")
    _check_signature(index, data, media_type, "data")
    return data


def _check_signature(index: int, data: bytes, media_type: str | None, what: str) -> str:
    """The media type of `data` by its signature, which must be `media_type` when given."""
    found = sniff(data)
    if found is None:
        raise _refused(index, f"{what} is not a PNG, JPEG, GIF or WebP image (by its first bytes)")
    if media_type is not None and found != media_type:
        raise _refused(index, f"{what} is {found}, not the {media_type} its media_type says")
    return found


def _check_stat(index: int, resolved: Path, shown: str, max_bytes: int) -> None:
    """A regular file within the limit, by stat (nothing opened: a FIFO cannot block)."""
    try:
        regular_file.check(resolved)
        size = resolved.stat().st_size
    except OSError as exc:
        raise _unreadable(index, shown, exc) from None
    if size > max_bytes:
        raise _refused(
            index, f"path is {size} bytes, over the limit of {max_bytes}: {quote(shown)}"
        )


def _unreadable(index: int, shown: str, exc: OSError) -> InvalidRequest:
    if isinstance(exc, NotRegularFile):
        if exc.reason.startswith("larger than"):
            return _refused(index, f"path is {exc.reason}: {quote(shown)}")
        if exc.reason == regular_file.OUTSIDE:
            return _refused(index, f"path is outside the run's workspace: {quote(shown)}")
        return _refused(index, f"path is not a regular file ({exc.reason}): {quote(shown)}")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return _refused(index, f"path does not exist: {quote(shown)}")
    return _refused(index, f"path cannot be read ({exc.strerror or exc}): {quote(shown)}")


def copy(
    images: Sequence[CheckedImage], workspace: Path, scratch: Scratch, *, max_bytes: int
) -> list[Path]:
    """Each image written to `scratch` as `image-<n>.<ext>`, in order: the files codex gets.
    Blocks on disk I/O (a worker thread: `copy_async`); 400 for a path that no longer passes."""
    copies = []
    for image in images:
        data = image.data
        media_type = image.media_type
        if data is None:
            data = _read(image, workspace, max_bytes)
            media_type = _check_signature(image.index, data, media_type, "path")
        if media_type is None:  # checked inline data always has one
            raise _refused(image.index, "data needs its media_type")
        name = f"image-{image.index + 1}.{MEDIA_TYPES[media_type]}"
        try:
            copies.append(scratch.write(name, data))
        except OSError as exc:  # the temp dir full or unwritable: the gateway's, not the client's
            raise StorageFailed(f"Cannot write the run's images: {exc.strerror or exc}") from exc
    return copies


async def copy_async(
    images: Sequence[CheckedImage], workspace: Path, scratch: Scratch, *, max_bytes: int
) -> list[Path]:
    if not images:
        return []
    return await asyncio.to_thread(copy, images, workspace, scratch, max_bytes=max_bytes)


def _read(image: CheckedImage, workspace: Path, max_bytes: int) -> bytes:
    # Opened as given (not as it resolved at the check), and the opened file's own path is
    # checked: whatever changed since, only a file inside the workspace is read.
    try:
        return regular_file.read_confined(workspace / image.shown, max_bytes, (workspace,))
    except OSError as exc:
        raise _unreadable(image.index, image.shown, exc) from None


def _refused(index: int, reason: str) -> InvalidRequest:
    return InvalidRequest(f"images[{index}]: {reason}", field=f"images[{index}]")
