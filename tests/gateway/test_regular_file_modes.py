"""regular_file.write_new: a new file is 0600; one written `like` a file it replaces takes that
file's mode (and, as root, its owner and group)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway import regular_file


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640, 0o664, 0o444])
def test_written_like_a_file_takes_its_mode(tmp_path: Path, mode: int) -> None:
    original = tmp_path / "user.json"
    original.write_text("{}")
    original.chmod(mode)
    tmp = tmp_path / ".user.json.tmp"
    regular_file.write_new(tmp, b"[]", like=original.stat())
    assert stat.S_IMODE(tmp.stat().st_mode) == mode and tmp.read_bytes() == b"[]"


def test_a_new_file_is_private(tmp_path: Path) -> None:
    tmp = tmp_path / "new.json"
    regular_file.write_new(tmp, b"[]")
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_written_like_another_users_file_takes_its_owner(tmp_path: Path) -> None:
    original = tmp_path / "user.json"
    original.write_text("{}")
    os.chown(original, 4321, 4322)
    tmp = tmp_path / ".user.json.tmp"
    regular_file.write_new(tmp, b"[]", like=original.stat())
    assert (tmp.stat().st_uid, tmp.stat().st_gid) == (4321, 4322)
