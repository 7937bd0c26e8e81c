"""gateway/regular_file.py: only regular files within the cap are read, and nothing blocks.

Every case runs in a worker thread under a deadline, so an open that blocks (a FIFO without a
writer) fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway import regular_file
from gateway.regular_file import NotRegularFile

CAP = 64 * 1024


def make_fifo(tmp: Path) -> Path:
    path = tmp / "fifo"
    os.mkfifo(path)
    return path


def make_socket(tmp: Path) -> Path:
    path = tmp / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    _SOCKETS.append(server)
    return path


def make_link_to_fifo(tmp: Path) -> Path:
    link = tmp / "link"
    link.symlink_to(make_fifo(tmp))
    return link


def make_link_to_file(tmp: Path) -> Path:
    target = tmp / "target.json"
    target.write_text("{}")
    link = tmp / "link"
    link.symlink_to(target)
    return link


def make_device(tmp: Path) -> Path:
    """A character device node (/dev/zero's numbers) if we may create one, else /dev/zero."""
    path = tmp / "zero"
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except PermissionError:
        return Path("/dev/zero")
    return path


def make_directory(tmp: Path) -> Path:
    path = tmp / "dir"
    path.mkdir()
    return path


def make_huge(tmp: Path) -> Path:
    path = tmp / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(8 * 1024**3)  # sparse: 8 GiB that take no disk
    return path


_SOCKETS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _SOCKETS:
        _SOCKETS.pop().close()


REFUSED = [
    pytest.param(make_fifo, "a FIFO", id="fifo"),
    pytest.param(make_socket, "a socket", id="unix-socket"),
    pytest.param(make_link_to_fifo, "a symbolic link", id="symlink-to-fifo"),
    pytest.param(make_link_to_file, "a symbolic link", id="symlink-not-followed"),
    pytest.param(make_device, "a device", id="device"),
    pytest.param(make_directory, "a directory", id="directory"),
    pytest.param(make_huge, "larger than", id="huge-file"),
]


@pytest.mark.parametrize(("make", "reason"), REFUSED)
async def test_read_refuses_without_blocking(
    tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(NotRegularFile) as caught:
        await asyncio.wait_for(regular_file.read_async(path, CAP), 10)
    assert reason in str(caught.value)


@pytest.mark.parametrize(("make", "reason"), [p for p in REFUSED if p.id != "huge-file"])
async def test_head_refuses_without_blocking(
    tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(NotRegularFile):
        await asyncio.wait_for(regular_file.head_async(path, 100), 10)


async def test_a_symlink_to_a_fifo_is_refused_when_followed_too(tmp_path: Path) -> None:
    link = make_link_to_fifo(tmp_path)
    with pytest.raises(NotRegularFile) as caught:
        await asyncio.wait_for(regular_file.read_async(link, CAP, follow=True), 10)
    assert "a FIFO" in str(caught.value)


async def test_a_huge_file_gives_its_head_only(tmp_path: Path) -> None:
    found = await asyncio.wait_for(regular_file.head_async(make_huge(tmp_path), 100), 10)
    assert found.data == b"\0" * 100 and found.size == 8 * 1024**3


def test_a_regular_file_is_read_whole_up_to_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_bytes(b"x" * CAP)
    assert regular_file.read(path, CAP) == b"x" * CAP
    path.write_bytes(b"x" * (CAP + 1))
    with pytest.raises(NotRegularFile):
        regular_file.read(path, CAP)


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        regular_file.read(tmp_path / "missing", CAP)
    regular_file.check(tmp_path / "missing")  # nothing to refuse


@pytest.mark.parametrize(("make", "reason"), [p for p in REFUSED if p.id != "huge-file"])
def test_check_refuses_by_stat_alone(
    tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    path = make(tmp_path)
    if make is make_link_to_file:
        regular_file.check(path)  # check follows links: it sees the regular file behind
        return
    with pytest.raises(NotRegularFile):
        regular_file.check(path)


def test_lock_and_temp_files_are_never_a_fifo_or_a_link(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path)
    with pytest.raises(NotRegularFile):
        regular_file.open_for_append(fifo)
    link = tmp_path / "lock-link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NotRegularFile):
        regular_file.open_for_append(link)
    assert not (tmp_path / "elsewhere").exists()
    regular_file.write_new(fifo, b"data")  # the FIFO is replaced, not written into
    assert fifo.read_bytes() == b"data" and stat.S_IMODE(fifo.stat().st_mode) == 0o600


def test_messages_quote_a_short_prefix_of_the_path(tmp_path: Path) -> None:
    long_dir = tmp_path / ("d" * 200)
    long_dir.mkdir()
    error = NotRegularFile(long_dir, "a directory")
    assert len(str(error)) < 120 and str(error).endswith("a directory")
