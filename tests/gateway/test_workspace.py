"""Workspace confinement: whatever the request says, the run stays inside a root."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.runs.workspace import resolve_workspace

SEGMENTS = st.sampled_from(["..", ".", "a", "b", "out", "loop", "", "/", "a/../..", "~"])


@settings(max_examples=400, deadline=None)
@given(st.lists(SEGMENTS, max_size=6), st.booleans())
def test_a_resolved_workspace_is_always_inside_a_root(parts: list[str], absolute: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp).resolve()
        root = base / "root"
        (root / "a" / "b").mkdir(parents=True)
        (base / "outside").mkdir()
        (root / "out").symlink_to(base / "outside")
        (root / "loop").symlink_to(root / "loop")
        requested = "/".join(parts)
        if absolute:
            requested = str(root) + "/" + requested
        try:
            resolved = resolve_workspace(requested, default=root, roots=[root])
        except InvalidRequest:
            return
        assert resolved.is_relative_to(root) and resolved.is_dir()


@pytest.mark.parametrize(
    "requested",
    ["..", "../", "/", "/etc", "a/../../", "out", "out/", "loop", "a\0b", "~"],
)
def test_escapes_are_refused(tmp_path: Path, requested: str) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "out").symlink_to(tmp_path / "outside")
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(InvalidRequest):
        resolve_workspace(requested, default=root, roots=[root])


def test_blank_means_the_default_and_subdirectories_are_fine(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert resolve_workspace(None, default=tmp_path, roots=[tmp_path]) == tmp_path
    assert resolve_workspace("  ", default=tmp_path, roots=[tmp_path]) == tmp_path
    assert resolve_workspace("a", default=tmp_path, roots=[tmp_path]) == tmp_path / "a"
    assert (
        resolve_workspace(str(tmp_path / "a"), default=tmp_path, roots=[tmp_path]) == tmp_path / "a"
    )
