"""A run's images, checked and copied without a gateway: signatures, the request checks, the
copy at run start (a path swapped after its check), reading confined to a directory, and the
scratch directory that holds the copies."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

import pytest

from gateway import regular_file
from gateway.errors import InvalidRequest, StorageFailed
from gateway.regular_file import NotRegularFile
from gateway.runs.images import ImageInput, check, copy, sniff
from gateway.runs.scratch import Scratch, ScratchClosed


def png(width: int = 2, height: int = 2, *, noise: bool = False) -> bytes:
    """A real (decodable) PNG of a red rectangle, or of random pixels (which do not compress:
    about 3 bytes a pixel)."""
    raw = b"".join(
        b"\x00" + (os.urandom(3 * width) if noise else b"\xff\x00\x00" * width)
        for _ in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 57
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8 " + b"\x00" * 14
MAX = 1000


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(png(), "image/png", id="png"),
        pytest.param(JPEG, "image/jpeg", id="jpeg"),
        pytest.param(GIF, "image/gif", id="gif89a"),
        pytest.param(b"GIF87a" + GIF[6:], "image/gif", id="gif87a"),
        pytest.param(WEBP, "image/webp", id="webp"),
        pytest.param(ELF, None, id="elf"),
        pytest.param(b"RIFF\x1a\x00\x00\x00WAVEfmt ", None, id="riff-not-webp"),
        pytest.param(b"\x89PNG", None, id="truncated-png-signature"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"%PDF-1.7", None, id="pdf"),
    ],
)
def test_sniff_knows_the_supported_signatures(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    (path / "pics").mkdir(parents=True)
    (path / "pics" / "a.png").write_bytes(png())
    (path / "pics" / "big.png").write_bytes(png() + b"\x00" * MAX)
    (path / "pics" / "elf.png").write_bytes(ELF)
    (tmp_path / "outside.png").write_bytes(png())
    (path / "out.png").symlink_to(tmp_path / "outside.png")
    (path / "in.png").symlink_to(path / "pics" / "a.png")
    os.mkfifo(path / "fifo.png")
    return path.resolve()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        pytest.param(
            ImageInput(data=png(), media_type="image/png", path="pics/a.png"),
            "not both",
            id="data-and-path",
        ),
        pytest.param(ImageInput(), "give data", id="neither"),
        pytest.param(ImageInput(media_type="image/png"), "give data", id="only-a-media-type"),
        pytest.param(ImageInput(data=png()), "needs its media_type", id="data-without-type"),
        pytest.param(
            ImageInput(data=b"hello", media_type="text/plain"),
            "is not one of image/png",
            id="not-an-image-type",
        ),
        pytest.param(ImageInput(data=png(), media_type="image/svg+xml"), "is not one of", id="svg"),
        pytest.param(ImageInput(data=b"", media_type="image/png"), "empty", id="empty-data"),
        pytest.param(
            ImageInput(data=ELF, media_type="image/png"),
            "not a PNG, JPEG, GIF or WebP image",
            id="png-that-is-an-elf",
        ),
        pytest.param(
            ImageInput(data=JPEG, media_type="image/png"),
            "is image/jpeg, not the image/png",
            id="jpeg-called-png",
        ),
        pytest.param(
            ImageInput(data=png() + b"\x00" * MAX, media_type="image/png"),
            "over the limit of 1000",
            id="oversize-data",
        ),
        pytest.param(ImageInput(path=""), "path is empty", id="empty-path"),
        pytest.param(ImageInput(path="a\0b.png"), "not a valid path", id="nul"),
        pytest.param(ImageInput(path="x" * 5000), "not a valid path", id="too-long"),
        pytest.param(ImageInput(path="../outside.png"), "outside the run's workspace", id="dotdot"),
        pytest.param(
            ImageInput(path="/etc/hostname"), "outside the run's workspace", id="absolute-outside"
        ),
        pytest.param(
            ImageInput(path="out.png"), "outside the run's workspace", id="symlink-outside"
        ),
        pytest.param(ImageInput(path="fifo.png"), "not a regular file (a FIFO)", id="fifo"),
        pytest.param(ImageInput(path="pics"), "not a regular file (a directory)", id="directory"),
        pytest.param(ImageInput(path="pics/none.png"), "does not exist", id="missing"),
        pytest.param(ImageInput(path="pics/a.png/x"), "does not exist", id="under-a-file"),
        pytest.param(ImageInput(path="pics/big.png"), "over the limit of 1000", id="oversize-file"),
        pytest.param(
            ImageInput(path="pics/a.png", media_type="image/bmp"), "is not one of", id="path-type"
        ),
    ],
)
def test_check_refuses_each_bad_image_naming_it(
    workspace: Path, image: ImageInput, message: str
) -> None:
    good = ImageInput(data=png(), media_type="image/png")
    with pytest.raises(InvalidRequest) as caught:
        check([good, good, image], workspace, max_images=16, max_bytes=MAX)
    assert caught.value.field == "images[2]"
    assert caught.value.message.startswith("images[2]: ")
    assert message in caught.value.message


def test_check_refuses_too_many_images_before_looking_at_any(workspace: Path) -> None:
    many = [ImageInput(path="../nothing")] * 5000
    with pytest.raises(InvalidRequest) as caught:
        check(many, workspace, max_images=16, max_bytes=MAX)
    assert caught.value.field == "images"
    assert caught.value.message == "at most 16 images per run, got 5000"


def test_check_takes_a_media_type_in_any_case_and_paths_inside(workspace: Path) -> None:
    checked = check(
        [
            ImageInput(data=png(), media_type=" Image/PNG "),
            ImageInput(path="pics/a.png"),
            ImageInput(path=str(workspace / "pics" / "a.png"), media_type="image/png"),
            ImageInput(path="in.png"),  # a link that stays inside
            ImageInput(path="pics/../pics/a.png"),
        ],
        workspace,
        max_images=16,
        max_bytes=MAX,
    )
    assert checked[0].media_type == "image/png" and checked[0].data == png()
    assert {image.path for image in checked[1:]} == {workspace / "pics" / "a.png"}


def test_copy_writes_every_image_to_the_scratch_dir_in_order(
    workspace: Path, tmp_path: Path
) -> None:
    checked = check(
        [
            ImageInput(data=GIF, media_type="image/gif"),
            ImageInput(path="pics/a.png"),
            ImageInput(data=JPEG, media_type="image/jpeg"),
        ],
        workspace,
        max_images=16,
        max_bytes=MAX,
    )
    scratch = Scratch("run-1", root=tmp_path / "scratch")
    copies = copy(checked, workspace, scratch, max_bytes=MAX)
    assert [p.name for p in copies] == ["image-1.gif", "image-2.png", "image-3.jpg"]
    assert [p.read_bytes() for p in copies] == [GIF, png(), JPEG]
    assert all(p.parent == scratch.path for p in copies)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in copies)
    scratch.close()
    assert list((tmp_path / "scratch").iterdir()) == []


@pytest.mark.parametrize(
    ("swap", "message"),
    [
        pytest.param(
            lambda ws: (ws / "pics" / "a.png").write_bytes(ELF),
            "not a PNG, JPEG, GIF or WebP image",
            id="rewritten-as-an-elf",
        ),
        pytest.param(
            lambda ws: _replace(ws / "pics" / "a.png", symlink=ws.parent / "outside.png"),
            "outside the run's workspace",
            id="swapped-for-a-symlink-out",
        ),
        pytest.param(
            lambda ws: _replace(ws / "pics", symlink=ws.parent),
            "outside the run's workspace",
            id="its-directory-swapped-for-a-symlink-out",
        ),
        pytest.param(
            lambda ws: _replace(ws / "pics" / "a.png", fifo=True),
            "not a regular file (a FIFO)",
            id="swapped-for-a-fifo",
        ),
        pytest.param(
            lambda ws: (ws / "pics" / "a.png").write_bytes(png() + b"\x00" * MAX),
            "larger than 1000 bytes",
            id="grown-over-the-limit",
        ),
        pytest.param(lambda ws: (ws / "pics" / "a.png").unlink(), "does not exist", id="removed"),
    ],
)
def test_copy_refuses_a_path_that_changed_since_its_check_and_leaves_nothing(
    workspace: Path, tmp_path: Path, swap: object, message: str
) -> None:
    """What codex gets is read once, at run start, from the file as it is then (opened, and the
    opened file checked): a link or directory swapped after the request's check leads nowhere."""
    (tmp_path / "a.png").write_bytes(png())
    checked = check(
        [ImageInput(data=GIF, media_type="image/gif"), ImageInput(path="pics/a.png")],
        workspace,
        max_images=16,
        max_bytes=MAX,
    )
    assert callable(swap)
    swap(workspace)
    scratch = Scratch("run-2", root=tmp_path / "scratch")
    with pytest.raises(InvalidRequest) as caught:
        copy(checked, workspace, scratch, max_bytes=MAX)
    assert caught.value.field == "images[1]"
    assert message in caught.value.message
    scratch.close()
    assert list((tmp_path / "scratch").iterdir()) == []


def _replace(path: Path, *, symlink: Path | None = None, fifo: bool = False) -> None:
    path.rename(path.with_name(path.name + ".old"))
    if symlink is not None:
        path.symlink_to(symlink)
    if fifo:
        os.mkfifo(path)


def test_read_confined_checks_the_opened_file_not_the_path(workspace: Path) -> None:
    inside = regular_file.read_confined(workspace / "in.png", MAX, (workspace,))
    assert inside == png()
    with pytest.raises(NotRegularFile) as caught:
        regular_file.read_confined(workspace / "out.png", MAX, (workspace,))
    assert caught.value.reason == regular_file.OUTSIDE
    with pytest.raises(NotRegularFile) as fifo:
        regular_file.read_confined(workspace / "fifo.png", MAX, (workspace,))
    assert fifo.value.reason == "a FIFO"


def test_scratch_refuses_writes_after_close(tmp_path: Path) -> None:
    """A copy still running in a worker thread when its run is cancelled: its next write raises
    instead of creating the directory again, so nothing is left behind."""
    root = tmp_path / "scratch"
    scratch = Scratch("run-3", root=root)
    written, closed = threading.Event(), threading.Event()
    results: list[object] = []

    def writer() -> None:
        results.append(scratch.write("one", b"x" * 1_000_000))
        written.set()
        closed.wait(10)
        try:
            scratch.write("two", b"y")
        except ScratchClosed as exc:
            results.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    assert written.wait(10)
    scratch.close()
    closed.set()
    thread.join(10)
    assert isinstance(results[-1], ScratchClosed)
    assert list(root.iterdir()) == []
    with pytest.raises(ScratchClosed):
        scratch.path  # noqa: B018  # the property raises
    scratch.close()  # twice is fine


def test_copy_into_an_unwritable_scratch_root_is_a_storage_failure(
    workspace: Path, tmp_path: Path
) -> None:
    """The temp dir full or unwritable is the gateway's failure (500 naming it), not a bug."""
    checked = check(
        [ImageInput(data=GIF, media_type="image/gif")], workspace, max_images=16, max_bytes=MAX
    )
    root = tmp_path / "not-a-directory"
    root.write_bytes(b"")
    with pytest.raises(StorageFailed, match="Cannot write the run's images"):
        copy(checked, workspace, Scratch("run-4", root=root), max_bytes=MAX)
