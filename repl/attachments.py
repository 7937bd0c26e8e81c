"""Attachments: what a run carries besides its prompt, an output schema and images.

`schema <file>` and `image <path>` read their files here, at the command, so a bad file is told at
once and not by the gateway one run later. The gateway checks everything again (a schema's
validity and size, an image's type against its bytes, a workspace path's confinement).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .errors import UsageError

Json = dict[str, Any]

WORKSPACE_PREFIX: Final = "ws:"
"""`image ws:<path>`: a file inside the run's workspace, read by the gateway."""
MAX_FILE_BYTES: Final = 64 * 1024 * 1024
"""A file this big is a mistake (the gateway's own limits are far lower): not read at all."""

# Media types by the bytes a file starts with (the gateway checks the same way).
_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def media_type(data: bytes) -> str | None:
    """The image type the bytes are (PNG, JPEG, GIF or WebP), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)


@dataclass(frozen=True, slots=True)
class Image:
    """One image for the next run: bytes read here, or a path inside the run's workspace."""

    name: str
    """How the user named it (the local path, or `ws:<path>`)."""
    data: bytes | None = None
    media_type: str | None = None
    workspace_path: str | None = None

    def field(self) -> Json:
        """The image as an `ImageInput` in JSON (bytes as base64)."""
        if self.workspace_path is not None:
            return {"path": self.workspace_path}
        return {
            "data": base64.b64encode(self.data or b"").decode("ascii"),
            "media_type": self.media_type or "",
        }

    def describe(self) -> str:
        if self.workspace_path is not None:
            return f"{self.name} (in the workspace)"
        return f"{self.name} ({self.media_type}, {_size(len(self.data or b''))})"


@dataclass(frozen=True, slots=True)
class Attachments:
    """The output schema and images a run is sent with."""

    output_schema: Json | None = None
    images: tuple[Image, ...] = ()

    def fields(self) -> Json:
        """The `RunInput` fields these attachments set (none when there are none)."""
        fields: Json = {}
        if self.output_schema is not None:
            fields["output_schema"] = self.output_schema
        if self.images:
            fields["images"] = [image.field() for image in self.images]
        return fields


def load_image(name: str) -> Image:
    """`name` as an image: `ws:<path>` as a workspace path, else a local file read now."""
    if name.startswith(WORKSPACE_PREFIX):
        path = name[len(WORKSPACE_PREFIX) :]
        if not path:
            raise UsageError("usage: image ws:<path inside the run's workspace>")
        return Image(name, workspace_path=path)
    data = _read(Path(name).expanduser(), "image")
    kind = media_type(data)
    if kind is None:
        raise UsageError(f"not a PNG, JPEG, GIF or WebP image: {name}")
    return Image(name, data=data, media_type=kind)


def load_schema(name: str) -> Json:
    """The JSON Schema in the file `name`: a JSON object, else a UsageError saying what is wrong."""
    data = _read(Path(name).expanduser(), "schema")
    try:
        schema = json.loads(data)
    except UnicodeDecodeError:
        raise UsageError(f"the schema file {name} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"the schema file {name} is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise UsageError(f"the schema file {name} is nested too deeply") from None
    if not isinstance(schema, dict):
        raise UsageError(f"the schema file {name} holds a JSON {_kind(schema)}, not an object")
    return schema


def _read(path: Path, what: str) -> bytes:
    try:
        if not path.is_file():
            raise UsageError(f"no such {what} file: {path}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UsageError(f"the {what} file {path} is too big ({_size(size)})")
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:.1f} MiB"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
