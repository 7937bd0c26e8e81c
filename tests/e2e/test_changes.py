"""What a run changed, end to end: the real codex edits and creates files in a git workspace
that already had uncommitted changes and untracked files; the result, the run record, the
webhook and GET /sessions/:id/changes (gRPC GetSessionChanges) report exactly the run's edits,
the workspace's git state is untouched by the gateway, and `git status` is what codex left.
Also: the diff and its bound, a run still running, a run that timed out, a workspace in a
subdirectory of its repository, a workspace outside git (codex's own reports), and a
repository whose config names programs (never run)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pwd
import stat
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import json_format

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.config import AgentUser, Config, WebhookConfig
from tests.fakes import AGENTS_DIR
from tests.fakes.webhook_receiver import Receiver
from tests.gitrepos import git_state, make_repo, set_config, sh
from tests.harness import RunningGateway, running_bridge, running_gateway

EDIT = (
    "[[scenario:tool]] [[cmd:printf 'four\\n' >> tracked.txt && printf 'x\\ny\\n' > created.txt]]"
)


def changes_request(session_id: str, **fields: object) -> sessions_pb2.GetSessionChangesRequest:
    return sessions_pb2.GetSessionChangesRequest(session_id=session_id, **fields)  # type: ignore[arg-type]


def files_of(response: sessions_pb2.GetSessionChangesResponse) -> set[tuple[str, str, int, int]]:
    return {(f.path, f.status, f.additions, f.deletions) for f in response.files}


async def until(check: Callable[[], bool], timeout_s: float = 20) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_the_changes_of_a_run_are_exactly_its_edits_on_both_protocols(
    config: Config, receiver_for: Callable[..., Receiver]
) -> None:
    repo = make_repo(config.default_workspace)
    sh("printf 'b\\n' >> other.txt && printf 'pre\\n' > untracked.txt", repo)
    status_before = set(sh("git status --porcelain", repo).splitlines())
    head = sh("git rev-parse HEAD", repo).strip()
    before = git_state(repo)
    hook = receiver_for()
    config = dataclasses.replace(config, webhook=WebhookConfig(url=hook.url))
    async with (
        running_gateway(config, background=True) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as rest,
    ):
        result = (
            await gw.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=EDIT)))
        ).result
        assert result.status == "completed", result.error
        assert result.changes == runs_pb2.ChangesSummary(
            source="git", files=2, additions=3, deletions=0
        )
        # The gateway left no trace in the repository's git state; codex left its edits.
        assert git_state(repo) == before
        assert set(sh("git status --porcelain", repo).splitlines()) == {
            *status_before,
            " M tracked.txt",
            "?? created.txt",
        }

        session_id = result.session_id
        on_grpc = await gw.stub.GetSessionChanges(changes_request(session_id))
        assert on_grpc.run_id == result.run_id and on_grpc.source == "git"
        assert files_of(on_grpc) == {
            ("tracked.txt", "modified", 1, 0),
            ("created.txt", "added", 2, 0),
        }
        assert on_grpc.base_commit == head and not on_grpc.running
        assert not on_grpc.HasField("diff") and not on_grpc.diff_truncated
        assert on_grpc.summary == result.changes

        response = await rest.get(f"/sessions/{session_id}/changes", params={"diff": "true"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["source"] == "git" and body["base_commit"] == head
        assert body["summary"] == {"source": "git", "files": 2, "additions": 3, "deletions": 0}
        assert {(f["path"], f["status"]) for f in body["files"]} == {
            ("tracked.txt", "modified"),
            ("created.txt", "added"),
        }
        assert "+four" in body["diff"] and "b/created.txt" in body["diff"]
        assert "pre" not in body["diff"] and "other.txt" not in body["diff"]
        assert body["diff_truncated"] is False

        # The run record and the webhook carry the summary too.
        detail = await rest.get(f"/sessions/{session_id}")
        assert detail.json()["run_history"][-1]["changes"]["files"] == 2
        await until(lambda: len(hook.accepted()) == 1)
        payload = json.loads(hook.accepted()[0].body)
        assert payload["changes"] == {"source": "git", "files": 2, "additions": 3, "deletions": 0}

        # A second run of the session: the default is now its changes; the first's stay.
        second = await rest.post(
            f"/sessions/{session_id}/prompt",
            json={"prompt": "[[scenario:tool]] [[cmd:seq 1 5000 > big.txt]]"},
        )
        assert second.status_code == 200, second.text
        assert second.json()["changes"] == {
            "source": "git",
            "files": 1,
            "additions": 5000,
            "deletions": 0,
        }
        last = (await rest.get(f"/sessions/{session_id}/changes")).json()
        assert last["run_id"] == second.json()["run_id"]
        assert [(f["path"], f["additions"]) for f in last["files"]] == [("big.txt", 5000)]
        first = await gw.stub.GetSessionChanges(changes_request(session_id, run_id=result.run_id))
        assert files_of(first) == files_of(on_grpc)

        cut = await rest.get(
            f"/sessions/{session_id}/changes", params={"diff": "true", "max_diff_bytes": "1"}
        )
        assert cut.status_code == 200, cut.text
        assert cut.json()["diff_truncated"] is True
        kept, marker = cut.json()["diff"].split("[gateway: diff truncated", 1)
        assert len(kept.encode()) <= 1024 and "max_diff_bytes" in marker
        on_grpc_cut = await gw.stub.GetSessionChanges(
            changes_request(session_id, diff=True, max_diff_bytes=2000)
        )
        assert on_grpc_cut.diff_truncated and len(on_grpc_cut.diff.encode()) < 2200

        # The unhappy paths, on both protocols.
        for params, status in (
            ({"run_id": "no-such-run"}, 404),
            ({"max_diff_bytes": "lots"}, 400),
            ({"diff": "perhaps"}, 400),
        ):
            wrong = await rest.get(f"/sessions/{session_id}/changes", params=params)
            assert wrong.status_code == status, (params, wrong.text)
            assert "error" in wrong.json()
        assert (await rest.get("/sessions/no-such-session/changes")).status_code == 404
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.GetSessionChanges(changes_request(session_id, run_id="no-such-run"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no-such-run" in (caught.value.details() or "")
        # Nothing was left in the session's store but its objects.
        store = Path(detail.json()["dir"]) / "changes.git"
        assert not list((store / "tmp").iterdir())


async def test_outside_git_the_changes_are_the_files_codex_reported(
    gateway: RunningGateway, rest: httpx.AsyncClient
) -> None:
    result = (
        await gateway.stub.Complete(
            runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="[[scenario:patch]] add it"))
        )
    ).result
    assert result.status == "completed", result.error
    assert result.changes == runs_pb2.ChangesSummary(source="codex_events", files=1)
    on_grpc = await gateway.stub.GetSessionChanges(changes_request(result.session_id, diff=True))
    assert on_grpc.source == "codex_events"
    assert files_of(on_grpc) == {("hello.txt", "added", 0, 0)}
    assert not on_grpc.HasField("base_commit") and not on_grpc.HasField("diff")
    body = (await rest.get(f"/sessions/{result.session_id}/changes")).json()
    assert body["source"] == "codex_events"
    assert body["files"] == [
        {
            "path": "hello.txt",
            "status": "added",
            "old_path": None,
            "additions": 0,
            "deletions": 0,
            "binary": False,
        }
    ]


async def test_a_run_in_progress_shows_its_changes_so_far_and_a_timeout_keeps_them(
    config_for: Callable[..., Config],
) -> None:
    config = config_for()
    repo = make_repo(config.default_workspace)
    async with running_gateway(config) as gw:
        run = asyncio.ensure_future(
            gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(
                        prompt="[[scenario:tool]] [[cmd:printf 'x\\n' > during.txt && sleep 60]]",
                        timeout_ms=8000,
                    )
                )
            )
        )
        seen: list[sessions_pb2.GetSessionChangesResponse] = []

        async def poll() -> None:
            while True:
                listing = await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())
                if listing.sessions:
                    now = await gw.stub.GetSessionChanges(
                        changes_request(listing.sessions[0].session_id)
                    )
                    if now.running and {f.path for f in now.files} == {"during.txt"}:
                        seen.append(now)
                        return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(poll(), 30)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await run
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        session_id = (
            (await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())).sessions[0].session_id
        )
        after = await gw.stub.GetSessionChanges(changes_request(session_id))
        assert not after.running and files_of(after) == {("during.txt", "added", 1, 0)}
        detail = await gw.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id))
        record = detail.session.run_history[-1]
        assert record.status == "timeout" and record.changes.files == 1
    assert (repo / "during.txt").exists()


async def test_a_workspace_in_a_subdirectory_reports_paths_relative_to_it(
    config: Config,
) -> None:
    repo = make_repo(config.default_workspace)
    sub = repo / "pkg"
    sub.mkdir()
    sh("printf 'm\\n' > main.py && git add . && git commit -qm pkg", sub)
    sh("printf 'elsewhere\\n' >> tracked.txt", repo)  # outside the workspace, before the run
    async with running_gateway(config) as gw:
        result = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(
                        prompt="[[scenario:tool]] [[cmd:printf 'n\\n' >> main.py]]",
                        workspace=str(sub),
                    )
                )
            )
        ).result
        assert result.status == "completed", result.error
        found = await gw.stub.GetSessionChanges(changes_request(result.session_id, diff=True))
    assert files_of(found) == {("main.py", "modified", 1, 0)}
    assert "a/main.py" in found.diff and "elsewhere" not in found.diff


async def test_a_repository_naming_programs_in_its_config_runs_none_of_them(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    # A stand-in agent (not codex, which may run git itself): only the gateway runs git here.
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py")
    repo = make_repo(config.default_workspace)
    marker = tmp_path / "ran"
    monitor = tmp_path / "monitor.sh"
    monitor.write_text(f"#!/bin/sh\necho fsmonitor >> {marker}\nexit 1\n")
    monitor.chmod(0o755)
    set_config(repo, "core.fsmonitor", str(monitor))
    set_config(repo, "filter.evil.clean", f"echo clean >> {marker}; cat")
    set_config(repo, "filter.evil.process", f"sh -c 'echo process >> {marker}'")
    set_config(repo, "diff.evil.textconv", f"sh -c 'echo textconv >> {marker}; cat \"$0\"'")
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
    sh("printf 'dirty\\n' >> tracked.txt", repo)
    async with running_gateway(config) as gw:
        result = (
            await gw.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="go")))
        ).result
        assert result.status == "completed", result.error
        assert result.changes.source == "git" and result.changes.files == 0
        found = await gw.stub.GetSessionChanges(changes_request(result.session_id, diff=True))
    assert found.source == "git" and not found.files and found.diff == ""
    assert not marker.exists(), marker.read_text()


def test_the_wire_names_are_snake_case() -> None:
    message = sessions_pb2.GetSessionChangesResponse(base_commit="c", diff_truncated=True)
    shown = json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert shown == {"base_commit": "c", "diff_truncated": True}


async def test_a_secure_sessions_changes_need_its_token(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py", secure_token="s3cret")
    make_repo(config.default_workspace)
    token = (("x-secure-token", "s3cret"),)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as rest,
    ):
        result = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="go", secure=True)),
                metadata=token,
            )
        ).result
        request = changes_request(result.session_id)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.GetSessionChanges(request)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (await gw.stub.GetSessionChanges(request, metadata=token)).source == "git"
        path = f"/sessions/{result.session_id}/changes"
        assert (await rest.get(path)).status_code == 403
        allowed = await rest.get(path, headers={"x-secure-token": "s3cret"})
        assert allowed.status_code == 200, allowed.text


async def test_a_broken_repository_never_fails_the_run(config_for: Callable[..., Config]) -> None:
    config = config_for(codex_bin=AGENTS_DIR / "counter_agent.py")
    repo = make_repo(config.default_workspace)
    (repo / ".git" / "index").write_bytes(b"DIRC not an index")
    async with running_gateway(config) as gw:
        result = (
            await gw.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="go")))
        ).result
        assert result.status == "completed", result.error
        assert result.changes == runs_pb2.ChangesSummary(source="codex_events")
        found = await gw.stub.GetSessionChanges(changes_request(result.session_id))
    assert found.source == "codex_events" and not found.files


def _runnable_by_anyone(path: Path) -> bool:
    folders = path.resolve().parents
    return all(f.stat().st_mode & stat.S_IXOTH for f in folders) and bool(
        path.stat().st_mode & stat.S_IXOTH
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")
@pytest.mark.skipif(
    not Path("/usr/bin/python3").exists() or not _runnable_by_anyone(AGENTS_DIR / "probe_agent.py"),
    reason="no interpreter or agent another user can run",
)
async def test_with_an_agent_user_the_changes_are_recorded_and_its_git_stays_its_own(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    nobody = pwd.getpwnam("nobody")
    user = AgentUser(nobody.pw_name, nobody.pw_uid, nobody.pw_gid, Path(nobody.pw_dir))
    config = config_for(
        codex_bin=AGENTS_DIR / "probe_agent.py",
        agent_user=user,
        child_env={"PATH": "/usr/bin:/bin", "HOME": nobody.pw_dir, "LANG": "C.UTF-8"},
    )
    repo = make_repo(config.default_workspace)
    for path in (repo, *repo.rglob("*")):
        os.lchown(path, nobody.pw_uid, nobody.pw_gid)  # the agent user's repository
    before = git_state(repo)
    async with running_gateway(config) as gw:
        result = (
            await gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="write:made.txt"))
            )
        ).result
        assert result.status == "completed", result.error
        found = await gw.stub.GetSessionChanges(changes_request(result.session_id))
    assert (repo / "made.txt").stat().st_uid == nobody.pw_uid
    assert files_of(found) == {("made.txt", "added", 1, 0)}
    assert git_state(repo) == before
    assert {p.stat().st_uid for p in (repo / ".git").rglob("*")} == {nobody.pw_uid}
