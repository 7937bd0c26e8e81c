"""`schema` and `image` files: read at the command, sent as the proto says."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from google.protobuf import json_format

from codex_gateway.v1 import runs_pb2
from repl.attachments import Attachments, load_image, load_schema, media_type
from repl.client import RunRequest, prompt_body
from repl.errors import UsageError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 16


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        pytest.param(PNG, "image/png", id="png"),
        pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg", id="jpeg"),
        pytest.param(b"GIF89a\x01\x00", "image/gif", id="gif89"),
        pytest.param(b"GIF87a\x01\x00", "image/gif", id="gif87"),
        pytest.param(b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp", id="webp"),
        pytest.param(b"RIFF\x10\x00\x00\x00WAVEfmt ", None, id="riff-not-webp"),
        pytest.param(ELF, None, id="elf"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\x89PNG", None, id="cut-png"),
    ],
)
def test_media_type_is_read_from_the_bytes(data: bytes, kind: str | None) -> None:
    assert media_type(data) == kind


def test_a_local_image_is_sent_as_base64_with_its_type(tmp_path: Path) -> None:
    (tmp_path / "shot.png").write_bytes(PNG)
    image = load_image(str(tmp_path / "shot.png"))
    assert image.field() == {"data": base64.b64encode(PNG).decode(), "media_type": "image/png"}
    assert image.describe() == f"{tmp_path / 'shot.png'} (image/png, 24 B)"


def test_a_workspace_image_is_sent_as_its_path_unread() -> None:
    image = load_image("ws:docs/some shot.png")
    assert image.field() == {"path": "docs/some shot.png"}
    assert image.describe() == "ws:docs/some shot.png (in the workspace)"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("fake.png", "not a PNG, JPEG, GIF or WebP image: {dir}/fake.png", id="elf"),
        pytest.param("missing.png", "no such image file: {dir}/missing.png", id="missing"),
        pytest.param(".", "no such image file: {dir}", id="directory"),
        pytest.param("ws:", "usage: image ws:<path inside the run's workspace>", id="empty-ws"),
    ],
)
def test_bad_images_are_told_at_the_command(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "fake.png").write_bytes(ELF)
    path = name if name.startswith("ws:") else str(tmp_path / name)
    with pytest.raises(UsageError) as caught:
        load_image(path)
    assert str(caught.value) == message.format(dir=tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_image_says_why(tmp_path: Path) -> None:
    locked = tmp_path / "locked.png"
    locked.write_bytes(PNG)
    locked.chmod(0)
    with pytest.raises(UsageError, match=r"cannot read the image file .*locked\.png: Permission"):
        load_image(str(locked))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{oops", "is not JSON: Expecting property name", id="not-json"),
        pytest.param("[1, 2]", "holds a JSON array, not an object", id="array"),
        pytest.param('"x"', "holds a JSON string, not an object", id="string"),
        pytest.param("null", "holds a JSON null, not an object", id="null"),
        pytest.param("[" * 100_000 + "]" * 100_000, "nested too deeply", id="deep"),
    ],
)
def test_a_bad_schema_file_is_one_clear_message(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "schema.json").write_text(text)
    with pytest.raises(UsageError, match=message):
        load_schema(str(tmp_path / "schema.json"))


def test_a_schema_file_that_is_not_utf8_or_missing_says_so(tmp_path: Path) -> None:
    (tmp_path / "latin.json").write_bytes(b'{"title": "\xe9"}')
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        load_schema(str(tmp_path / "latin.json"))
    with pytest.raises(UsageError, match="no such schema file"):
        load_schema(str(tmp_path / "nope.json"))


def test_attachments_become_run_input_fields_on_both_protocols(tmp_path: Path) -> None:
    (tmp_path / "shot.png").write_bytes(PNG)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    attachments = Attachments(
        schema, (load_image(str(tmp_path / "shot.png")), load_image("ws:a.png"))
    )
    bodies = [
        RunRequest("hi", 5000, attachments=attachments).body(),
        prompt_body("hi", 5000, {}, attachments),
    ]
    for body in bodies:
        assert body["output_schema"] == schema
        # gRPC: the same JSON parsed into the message (bytes from base64).
        run = json_format.ParseDict(body, runs_pb2.RunInput())
        assert json_format.MessageToDict(run.output_schema) == schema
        assert [(i.data, i.media_type, i.path) for i in run.images] == [
            (PNG, "image/png", ""),
            (b"", "", "a.png"),
        ]
        assert not run.images[1].HasField("data")
    assert "output_schema" not in RunRequest("hi", 5000).body()
    assert "images" not in prompt_body("hi", 5000, {}, Attachments())
    assert "prompt" not in prompt_body(None, 5000, {}, Attachments())  # a fork without a turn
