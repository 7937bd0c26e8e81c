"""atomic.write_atomic: the destination holds the old bytes or the new, the file takes the mode
it is told (or the mode of the file it replaces), and no temporary file is left behind."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from gateway.atomic import write_atomic


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    ("mode", "like_mode", "expected"),
    [
        pytest.param(None, None, 0o600, id="default-private"),
        pytest.param(0o666, None, 0o666 & ~_umask(), id="mode-less-umask"),
        pytest.param(None, 0o644, 0o644, id="like-the-replaced-file"),
        pytest.param(None, 0o440, 0o440, id="like-a-read-only-file"),
    ],
)
def test_the_file_takes_its_mode(
    tmp_path: Path, mode: int | None, like_mode: int | None, expected: int
) -> None:
    path = tmp_path / "doc.json"
    like = None
    if like_mode is not None:
        path.write_text("old")
        path.chmod(like_mode)
        like = path.stat()
    if mode is None:
        write_atomic(path, b"new", like=like)
    else:
        write_atomic(path, b"new", mode=mode, like=like)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()  # a directory cannot be replaced by a file: the rename fails
    (blocked / "inside").write_text("kept")
    with pytest.raises(OSError, match="Is a directory"):
        write_atomic(blocked, b"new")
    assert (blocked / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked"]


def test_a_symlink_at_the_destination_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("untouched")
    link = tmp_path / "doc.json"
    link.symlink_to(target)
    write_atomic(link, b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert target.read_text() == "untouched"


def test_threads_writing_one_file_at_once_each_write_whole(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    contents = [bytes([65 + n]) * 4096 for n in range(8)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(50):
                write_atomic(path, data)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(data,)) for data in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert path.read_bytes() in contents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]
