"""Snapshots and changes on real repositories (gateway/changes/): what a run changed and nothing
else, never a trace in the workspace's git state, nothing the repository's config names ever
run, a workspace in a subdirectory, renames, binaries, a bounded diff, and where there is no
git, the files codex reported."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gateway.changes.diff import (
    DEFAULT_MAX_DIFF_BYTES,
    MAX_MAX_DIFF_BYTES,
    MIN_MAX_DIFF_BYTES,
    Summary,
    changes_between,
    clamp_max_diff_bytes,
    parse_name_status,
    parse_numstat,
    summary_between,
)
from gateway.changes.git import Git, git_environment
from gateway.changes.reported import (
    MAX_PATH_CHARS,
    MAX_REPORTED_FILES,
    ReportedChanges,
    load,
    save,
)
from gateway.changes.snapshot import STORE_NAME, NotARepository, Snapshot, take
from gateway.changes.tracker import hardlinks_protected
from tests.gitrepos import git_state, make_repo, set_config, sh


@pytest.fixture
def git() -> Git:
    return Git(git_environment({"PATH": os.environ.get("PATH", os.defpath)}))


async def test_the_changes_are_the_runs_own_and_the_repository_is_untouched(
    tmp_path: Path, git: Git
) -> None:
    repo = make_repo(tmp_path / "ws")
    # Already there before the run: an uncommitted edit and an untracked file.
    sh("printf 'b\\n' >> other.txt && printf 'pre\\n' > untracked.txt", repo)
    files = tmp_path / "session"
    files.mkdir()
    before = git_state(repo)
    status_before = sh("git status --porcelain", repo)
    base = await take(git, repo, [tmp_path], files)
    # The run: an edit of a tracked file, a new file.
    sh("printf 'four\\n' >> tracked.txt && printf 'x\\ny\\n' > created.txt", repo)
    after = await take(git, repo, [tmp_path], files)
    assert git_state(repo) == before

    store = files / STORE_NAME
    changes = await changes_between(git, store, base, after.tree)
    shown = {(f.path, f.status, f.additions, f.deletions) for f in changes.files}
    assert shown == {("tracked.txt", "modified", 1, 0), ("created.txt", "added", 2, 0)}
    assert await summary_between(git, store, base, after.tree) == Summary("git", 2, 3, 0)
    assert base.commit == sh("git rev-parse HEAD", repo).strip()
    assert git_state(repo) == before
    assert set(sh("git status --porcelain", repo).splitlines()) == {
        *status_before.splitlines(),
        " M tracked.txt",
        "?? created.txt",
    }
    assert sh("git stash list", repo) == ""


async def test_renames_deletions_and_binary_files(tmp_path: Path, git: Git) -> None:
    repo = make_repo(tmp_path / "ws")
    body = "".join(f"line {n}\n" for n in range(40))
    sh(f"printf '{body}' > long.txt && head -c 600 /dev/urandom > blob.bin", repo)
    sh("git add . && git commit -qm more", repo)
    files = tmp_path / "session"
    base = await take(git, repo, [tmp_path], files)
    sh("git mv -f long.txt moved.txt && rm other.txt && head -c 700 /dev/urandom > blob.bin", repo)
    after = await take(git, repo, [tmp_path], files)
    changes = await changes_between(git, files / STORE_NAME, base, after.tree)
    by_path = {f.path: f for f in changes.files}
    assert by_path["moved.txt"].status == "renamed"
    assert by_path["moved.txt"].old_path == "long.txt"
    assert by_path["other.txt"].status == "deleted" and by_path["other.txt"].deletions == 1
    assert by_path["blob.bin"].binary and by_path["blob.bin"].additions == 0


async def test_a_repository_without_commits_has_no_base_commit(tmp_path: Path, git: Git) -> None:
    repo = tmp_path / "ws"
    repo.mkdir()
    sh("git init -q && printf 'x\\n' > first.txt", repo)
    base = await take(git, repo, [tmp_path], tmp_path / "session")
    assert base.commit is None
    sh("printf 'y\\n' > second.txt", repo)
    after = await take(git, repo, [tmp_path], tmp_path / "session")
    changes = await changes_between(git, tmp_path / "session" / STORE_NAME, base, after.tree)
    assert [(f.path, f.status) for f in changes.files] == [("second.txt", "added")]
    assert not (repo / ".git" / "index").exists()


async def test_a_workspace_in_a_subdirectory_reports_its_subtree_relative_to_itself(
    tmp_path: Path, git: Git
) -> None:
    repo = make_repo(tmp_path / "repo")
    sub = repo / "pkg" / "app"
    sub.mkdir(parents=True)
    sh("printf 'm\\n' > main.py && git add . && git commit -qm sub", sub)
    files = tmp_path / "session"
    base = await take(git, sub, [tmp_path], files)
    assert base.prefix == "pkg/app/"
    sh("printf 'n\\n' >> main.py && printf 'z\\n' > new.py", sub)
    sh("printf 'outside\\n' >> tracked.txt && printf 'o\\n' > outside.txt", repo)
    after = await take(git, sub, [tmp_path], files)
    changes = await changes_between(git, files / STORE_NAME, base, after.tree, with_diff=True)
    assert {(f.path, f.status) for f in changes.files} == {
        ("main.py", "modified"),
        ("new.py", "added"),
    }
    assert changes.diff is not None and "outside" not in changes.diff
    assert "a/main.py" in changes.diff


async def test_nothing_the_repository_config_names_is_run(tmp_path: Path, git: Git) -> None:
    repo = make_repo(tmp_path / "ws")
    marker = tmp_path / "ran"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-index-change", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        (hooks / hook).chmod(0o755)
    monitor = tmp_path / "monitor.sh"
    monitor.write_text(f"#!/bin/sh\necho fsmonitor >> {marker}\nexit 1\n")
    monitor.chmod(0o755)
    for key, value in {
        "core.fsmonitor": str(monitor),
        "core.hooksPath": str(hooks),
        "filter.evil.clean": f"echo clean >> {marker}; cat",
        "filter.evil.smudge": f"echo smudge >> {marker}; cat",
        "filter.evil.process": f"sh -c 'echo process >> {marker}'",
        "filter.evil.required": "true",
        "filter.dotted.name.clean": f"echo dotted >> {marker}; cat",
        "diff.evil.textconv": f"sh -c 'echo textconv >> {marker}; cat \"$0\"'",
        "diff.evil.command": f"sh -c 'echo extdiff >> {marker}'",
        "diff.external": f"sh -c 'echo external >> {marker}'",
        "core.pager": f"sh -c 'echo pager >> {marker}; cat'",
    }.items():
        set_config(repo, key, value)
    (repo / ".gitattributes").write_text("*.txt filter=evil diff=evil\n*.md filter=dotted.name\n")
    files = tmp_path / "session"
    base = await take(git, repo, [tmp_path], files)
    sh("printf 'more\\n' >> tracked.txt && printf 'doc\\n' > readme.md", repo)
    after = await take(git, repo, [tmp_path], files)
    changes = await changes_between(git, files / STORE_NAME, base, after.tree, with_diff=True)
    assert {f.path for f in changes.files} == {"tracked.txt", "readme.md"}
    assert changes.diff is not None and "+more" in changes.diff
    assert not marker.exists(), marker.read_text()


async def test_the_diff_is_cut_at_its_bound_with_a_marker(tmp_path: Path, git: Git) -> None:
    repo = make_repo(tmp_path / "ws")
    files = tmp_path / "session"
    base = await take(git, repo, [tmp_path], files)
    sh("seq 1 5000 > big.txt", repo)
    after = await take(git, repo, [tmp_path], files)
    store = files / STORE_NAME
    whole = await changes_between(git, store, base, after.tree, with_diff=True)
    assert whole.diff is not None and not whole.diff_truncated and "+5000\n" in whole.diff
    cut = await changes_between(git, store, base, after.tree, with_diff=True, max_diff_bytes=1024)
    assert cut.diff_truncated and cut.diff is not None
    body, marker = cut.diff.rsplit("[gateway: diff truncated", 1)
    assert len(body.encode()) <= 1024 and body.endswith("\n")
    assert "max_diff_bytes" in marker
    assert whole.diff.startswith(body)
    assert cut.summary == whole.summary == Summary("git", 1, 5000, 0)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        pytest.param(None, DEFAULT_MAX_DIFF_BYTES, id="default"),
        pytest.param(0, MIN_MAX_DIFF_BYTES, id="zero"),
        pytest.param(-5, MIN_MAX_DIFF_BYTES, id="negative"),
        pytest.param(5000, 5000, id="within"),
        pytest.param(2**31 - 1, MAX_MAX_DIFF_BYTES, id="huge"),
    ],
)
def test_max_diff_bytes_is_clamped(requested: int | None, expected: int) -> None:
    assert clamp_max_diff_bytes(requested) == expected


async def test_no_repository_is_not_a_snapshot(tmp_path: Path, git: Git) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(NotARepository):
        await take(git, plain, [tmp_path], tmp_path / "session")


async def test_a_repository_outside_the_roots_is_not_read(tmp_path: Path, git: Git) -> None:
    elsewhere = make_repo(tmp_path / "elsewhere")
    root = tmp_path / "root"
    workspace = root / "ws"
    workspace.mkdir(parents=True)
    # The agent can write its workspace: a .git file naming a repository it should not see.
    (workspace / ".git").write_text(f"gitdir: {elsewhere / '.git'}\n")
    with pytest.raises(NotARepository, match="outside the workspace roots"):
        await take(git, workspace, [root], tmp_path / "session")


async def test_a_broken_repository_fails_the_snapshot_not_the_caller(
    tmp_path: Path, git: Git
) -> None:
    repo = make_repo(tmp_path / "ws")
    (repo / ".git" / "index").write_bytes(b"DIRC garbage")
    with pytest.raises(Exception) as caught:
        await take(git, repo, [tmp_path], tmp_path / "session")
    assert "git" in str(caught.value)
    assert not list((tmp_path / "session" / STORE_NAME / "tmp").iterdir())  # no index left


def test_snapshot_records_round_trip() -> None:
    snap = Snapshot("t" * 40, None, "sub/", "/r/.git/objects")
    assert Snapshot.from_json(snap.as_json()) == snap
    assert Snapshot.from_json({"tree": 1}) is None
    assert Summary.from_json(Summary("git", 1, 2, 3).as_json()) == Summary("git", 1, 2, 3)
    assert Summary.from_json({"source": "git", "files": True, "additions": 0}) is None


def test_name_status_and_numstat_parsing() -> None:
    names = parse_name_status(b"M\0a.txt\0R087\0old name\0new name\0A\0b\0D\0c\0T\0d\0")
    assert [(f.path, f.status, f.old_path) for f in names] == [
        ("a.txt", "modified", None),
        ("new name", "renamed", "old name"),
        ("b", "added", None),
        ("c", "deleted", None),
        ("d", "modified", None),
    ]
    counts = parse_numstat(b"1\t2\ta.txt\0-\t-\tbin\0" + b"3\t0\t\0old name\0new name\0")
    assert counts == {"a.txt": (1, 2, False), "bin": (0, 0, True), "new name": (3, 0, False)}


def _file_change(path: str, kind: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "item.completed",
        "item": {
            "id": "item_1",
            "type": "file_change",
            "changes": [{"path": path, "kind": kind}],
            "status": status,
        },
    }


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([("/ws/a.txt", "add")], {"a.txt": "added"}, id="add"),
        pytest.param([("/ws/d/b.txt", "update")], {"d/b.txt": "modified"}, id="update"),
        pytest.param([("c.txt", "delete")], {"c.txt": "deleted"}, id="relative-delete"),
        pytest.param([("/ws/a", "add"), ("/ws/a", "update")], {"a": "added"}, id="add-update"),
        pytest.param([("/ws/a", "add"), ("/ws/a", "delete")], {}, id="add-delete"),
        pytest.param([("/ws/a", "delete"), ("/ws/a", "add")], {"a": "modified"}, id="recreate"),
        pytest.param([("/etc/x", "update")], {"/etc/x": "modified"}, id="outside"),
        pytest.param([("/ws/../ws/e", "update")], {"e": "modified"}, id="normalised"),
        pytest.param([("/ws/a", "rename")], {}, id="unknown-kind"),
    ],
)
def test_reported_changes_from_file_change_items(
    events: list[tuple[str, str]], expected: dict[str, str]
) -> None:
    reported = ReportedChanges(Path("/ws"))
    for path, kind in events:
        reported.observe(_file_change(path, kind))
    assert reported.files == expected


def test_reported_changes_skip_failed_patches_and_other_items_and_stay_bounded() -> None:
    reported = ReportedChanges(Path("/ws"))
    reported.observe(_file_change("/ws/a", "add", status="failed"))
    reported.observe({"type": "item.started", "item": {"type": "file_change", "changes": []}})
    reported.observe({"type": "item.completed", "item": {"type": "file_change", "changes": 5}})
    reported.observe({"type": "item.completed", "item": "nope"})
    assert reported.files == {}
    for n in range(MAX_REPORTED_FILES + 5):
        reported.observe(_file_change(f"/ws/f{n}", "add"))
    assert len(reported.files) == MAX_REPORTED_FILES and reported.omitted == 5
    assert reported.as_json()[0] == {"path": "f0", "status": "added"}


async def test_a_repository_above_the_workspace_root_is_not_looked_for(
    tmp_path: Path, git: Git
) -> None:
    outer = make_repo(tmp_path / "outer")
    root = outer / "roots" / "ws"
    root.mkdir(parents=True)
    with pytest.raises(NotARepository, match="within its root"):
        await take(git, root, [root], tmp_path / "session")


def test_reported_files_are_kept_per_run_and_read_back(tmp_path: Path) -> None:
    directory = tmp_path / "reported"
    files = [{"path": "a.txt", "status": "added"}, {"path": "b/c", "status": "deleted"}]
    save(directory, "run-1", files)
    assert load(directory, "run-1") == files
    assert load(directory, "run-2") is None
    (directory / "run-3.json").write_text("{not json")
    assert load(directory, "run-3") is None
    (directory / "run-4.json").write_text('[{"path": 1}, {"path": "x", "status": "added"}, 7]')
    assert load(directory, "run-4") == [{"path": "x", "status": "added"}]


def test_an_overlong_reported_path_is_left_out() -> None:
    reported = ReportedChanges(Path("/ws"))
    reported.observe(_file_change("/ws/" + "p" * (MAX_PATH_CHARS + 1), "add"))
    reported.observe(_file_change("/ws/short", "add"))
    assert reported.files == {"short": "added"} and reported.omitted == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("1\n", True, id="protected"),
        pytest.param("0\n", False, id="off"),
        pytest.param(None, False, id="unknown"),
    ],
)
def test_snapshots_with_an_agent_user_need_protected_hardlinks(
    tmp_path: Path, content: str | None, expected: bool
) -> None:
    setting = tmp_path / "protected_hardlinks"
    if content is not None:
        setting.write_text(content)
    assert hardlinks_protected(setting) is expected
