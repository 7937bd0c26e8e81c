"""Hardening of secrets, state and the agent's reach (issue 12, findings 2, 4, 10 and 17).

A real gateway process runs probe_agent.py, which reports what it can read: the gateway's and
the bridge's /proc environment blocks and command lines hold no secret whether the secrets came
from the environment (the gateway re-executes itself without them) or from files; as root with
CODEX_GATEWAY_AGENT_USER the agent runs as that user and reads none of the gateway's files;
state lives apart from every workspace and is private; and a queued run whose directory became
a symlink out of the roots does not run there.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, triggers_pb2
from gateway.bridge_process import BRIDGE_ENV_NAMES
from gateway.config import Config, ConfigError, check_state_outside_workspaces
from gateway.errors import InvalidRequest
from gateway.runs.run import RunRequest
from gateway.runs.workspace import open_confined
from tests.fakes import AGENTS_DIR
from tests.faults.spawned import (
    Spawned,
    bridges_of,
    gateway_env,
    running,
    spawn,
    until_serving,
    wait_until,
)
from tests.harness import running_bridge, running_gateway

PROBE = "probe_agent.py"
SECRETS = {
    "CODEX_GATEWAY_API_TOKEN": "api-token-0f3a9c",
    "CODEX_GATEWAY_SECURE_TOKEN": "secure-token-7d21e4",
    "SESSION_WEBHOOK_AUTH_BEARER": "webhook-bearer-55b0aa",
    "SESSION_WEBHOOK_SECRET": "webhook-secret-c3e812",
    "SESSION_WEBHOOK_HEADERS_JSON": '{"X-Private": "webhook-header-9e4d11"}',
    # A credential in the URL (loopback, nothing listens: deliveries fail and are retried).
    "SESSION_WEBHOOK_URL": "http://127.0.0.1:9/hook/webhook-path-a41f07?token=webhook-url-3f81c0",
}
SECRET_VALUES = [
    "api-token-0f3a9c",
    "secure-token-7d21e4",
    "webhook-bearer-55b0aa",
    "webhook-secret-c3e812",
    "webhook-header-9e4d11",
    "webhook-path-a41f07",
    "webhook-url-3f81c0",
]
# Not a gateway variable at all: something else of the deployment's, which the bridge does not
# need (it gets an allow-list of the gateway's environment) and so must not hold.
DEPLOYMENT = {"DEPLOY_DATABASE_URL": "postgres://app:deploy-password-6c2d90@127.0.0.1/app"}
AUTH = {"Authorization": f"Bearer {SECRETS['CODEX_GATEWAY_API_TOKEN']}"}


def report_of(output: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(output)
    return report


def probes(gateway: Spawned, *extra: str) -> str:
    """A prompt asking the agent to read every environment block and command line of the
    gateway and its bridge (and `extra` paths)."""
    pids = [gateway.pid, *bridges_of(gateway.pid)]
    assert len(pids) == 2, "a gateway and its REST bridge"
    paths = [f"/proc/{pid}/{name}" for pid in pids for name in ("environ", "cmdline")]
    return "\n".join(f"probe:{path}" for path in [*paths, "/proc/self/environ", *extra])


async def run_both_ways(gateway: Spawned, prompt: str) -> list[dict[str, Any]]:
    """The probe run once over REST and once over gRPC (with the API token); both reports."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client:
        answer = await client.post("/completion", json={"prompt": prompt}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        rest = report_of(answer.json()["output"])
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        response = await stub.Complete(
            runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt=prompt)),
            metadata=[("authorization", AUTH["Authorization"])],
            timeout=30,
        )
        via_grpc = report_of(response.result.output)
    return [rest, via_grpc]


def environ_names(pid: int) -> set[str]:
    block = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return {entry.split("=", 1)[0] for entry in block.split("\0") if entry}


def assert_no_secret_read(report: dict[str, Any]) -> None:
    readable = [probe for probe in report["probes"] if probe["readable"]]
    assert len(readable) == len(report["probes"]), report  # the same uid reads them all...
    for probe in readable:
        for value in SECRET_VALUES:
            assert value not in probe["content"], f"{value} in {probe['path']}"  # ...and no secret


@pytest.mark.parametrize("source", ["environment", "files"])
async def test_no_secret_in_any_environment_block_or_command_line(
    tmp_path: Path, source: str
) -> None:
    if source == "environment":
        secrets = dict(SECRETS)
    else:
        secrets = {}
        for name, value in SECRETS.items():
            path = tmp_path / "secrets" / name.lower()
            path.parent.mkdir(exist_ok=True)
            path.write_text(value + "\n")  # as `echo` writes it: the newline is not the secret
            secrets[f"{name}_FILE"] = str(path)
    env = gateway_env(tmp_path, PROBE, **secrets, **DEPLOYMENT)
    async with running(env, tmp_path) as gateway:
        for report in await run_both_ways(gateway, probes(gateway)):
            assert_no_secret_read(report)
        # The bridge's block holds only what it needs to start; the gateway keeps the rest.
        (bridge,) = bridges_of(gateway.pid)
        names = environ_names(bridge)
        assert names <= BRIDGE_ENV_NAMES | {n for n in names if n.startswith(("LC_", "GRPC_"))}
        assert "PATH" in names and "DEPLOY_DATABASE_URL" not in names, names
        assert "DEPLOY_DATABASE_URL" in environ_names(gateway.pid)
        # The secrets still work: the token was needed above; the secure token opens a
        # secure session, and a wrong one does not.
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client:
            assert (await client.get("/sessions")).status_code == 401
            secure = await client.post(
                "/completion",
                json={"prompt": "hi", "secure": True},
                headers={**AUTH, "X-Codex-Secure-Token": SECRETS["CODEX_GATEWAY_SECURE_TOKEN"]},
            )
            assert secure.status_code == 200, secure.text
            denied = await client.get(
                f"/sessions/{secure.json()['session_id']}",
                headers={**AUTH, "X-Codex-Secure-Token": "wrong"},
            )
            assert denied.status_code == 403


def test_secret_and_its_file_together_is_a_startup_error_naming_both(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t\n")
    env = gateway_env(
        tmp_path,
        PROBE,
        CODEX_GATEWAY_API_TOKEN="t",
        CODEX_GATEWAY_API_TOKEN_FILE=str(token),
    )
    gateway = spawn(env, tmp_path / "gateway.log")
    assert gateway.process.wait(timeout=30) == 2
    assert "CODEX_GATEWAY_API_TOKEN or CODEX_GATEWAY_API_TOKEN_FILE" in gateway.log_tail()


@pytest.mark.parametrize("name", [*SECRETS])
def test_secret_files_are_read_stripped_and_both_forms_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "secret"
    value = SECRETS[name]
    path.write_text(value + "\n")
    from_file = Config.from_env({f"{name}_FILE": str(path)}, cwd=tmp_path)
    from_env = Config.from_env({name: value}, cwd=tmp_path)
    assert from_file == from_env
    with pytest.raises(ConfigError, match=f"{name} or {name}_FILE"):
        Config.from_env({name: value, f"{name}_FILE": str(path)}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=f"{name}_FILE: cannot read"):
        Config.from_env({f"{name}_FILE": str(tmp_path / "missing")}, cwd=tmp_path)


def test_secrets_in_the_environment_are_not_in_the_gateways_environment_block(
    tmp_path: Path,
) -> None:
    """Without any agent: the re-executed gateway's own /proc/<pid>/environ (same pid)."""
    env = gateway_env(tmp_path, PROBE, **SECRETS)
    gateway = spawn(env, tmp_path / "gateway.log", command="grpc")
    try:
        asyncio.run(_until_grpc(gateway))
        block = Path(f"/proc/{gateway.pid}/environ").read_bytes().decode(errors="replace")
        assert not [value for value in SECRET_VALUES if value in block]
        assert "CODEX_GATEWAY_GRPC_PORT" in block  # the rest of the environment is kept
    finally:
        assert gateway.stop() == 0, gateway.log_tail()


async def _until_grpc(gateway: Spawned) -> None:
    await until_serving(gateway)


# -- finding 4: state apart from every workspace ---------------------------------------------


def _overlapping(tmp_path: Path, case: str) -> dict[str, str]:
    workspace = tmp_path / "workspace"
    layouts = {
        "sessions-in-workspace": {"CODEX_GATEWAY_SESSION_DIRS": str(workspace / "sessions")},
        "secure-is-workspace": {"CODEX_GATEWAY_SECURE_SESSION_DIR": str(workspace)},
        "trigger-file-in-workspace": {"CODEX_GATEWAY_TRIGGER_FILE": str(workspace / "t.json")},
        "workspace-in-sessions": {"CODEX_GATEWAY_SESSION_DIRS": str(tmp_path)},
        "a-root-holds-the-state": {"CODEX_GATEWAY_WORKSPACE_ROOTS": str(tmp_path)},
    }
    return layouts[case]


CASES = [
    ("sessions-in-workspace", "CODEX_GATEWAY_SESSION_DIRS"),
    ("secure-is-workspace", "CODEX_GATEWAY_SECURE_SESSION_DIR"),
    ("trigger-file-in-workspace", "CODEX_GATEWAY_TRIGGER_FILE"),
    ("workspace-in-sessions", "CODEX_GATEWAY_SESSION_DIRS"),
    ("a-root-holds-the-state", "CODEX_GATEWAY_WORKSPACE_ROOTS .* CODEX_GATEWAY_SESSION_DIRS"),
]


@pytest.mark.parametrize(("case", "state_variable"), [pytest.param(*c, id=c[0]) for c in CASES])
def test_state_inside_a_workspace_or_around_one_is_refused(
    tmp_path: Path, case: str, state_variable: str
) -> None:
    env = gateway_env(tmp_path, PROBE, **_overlapping(tmp_path, case))
    config = Config.from_env(env, cwd=tmp_path)
    with pytest.raises(ConfigError, match=state_variable) as refused:
        check_state_outside_workspaces(config)
    assert "WORKSPACE" in str(refused.value)


def test_the_process_refuses_overlapping_state_with_exit_2(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, PROBE, **_overlapping(tmp_path, "secure-is-workspace"))
    gateway = spawn(env, tmp_path / "gateway.log")
    assert gateway.process.wait(timeout=30) == 2
    message = gateway.log_tail()
    assert "CODEX_GATEWAY_DEFAULT_WORKSPACE" in message
    assert "CODEX_GATEWAY_SECURE_SESSION_DIR" in message


async def test_by_default_state_lives_outside_the_working_directory(tmp_path: Path) -> None:
    """No state variable set, the working directory as the workspace: the reference put its
    sessions, secure sessions and trigger file there; now they go to $XDG_STATE_HOME."""
    workspace = tmp_path / "cwd"
    workspace.mkdir()
    env = gateway_env(tmp_path, PROBE)
    for name in (
        "CODEX_GATEWAY_SESSION_DIRS",
        "CODEX_GATEWAY_SECURE_SESSION_DIR",
        "CODEX_GATEWAY_TRIGGER_FILE",
        "CODEX_GATEWAY_DEFAULT_WORKSPACE",
    ):
        env.pop(name)
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
    # The working directory of `spawn` is the log's folder: make that the workspace.
    async with (
        running(env, workspace) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client,
    ):
        escape = await client.post(
            "/completion",
            json={"prompt": "hi", "workspace": ".codex-gateway-sessions/secure"},
        )
        assert escape.status_code == 400, escape.text
        done = await client.post("/completion", json={"prompt": "hi"})
        assert done.status_code == 200, done.text
        assert report_of(done.json()["output"])["cwd"] == str(workspace.resolve())
    state = tmp_path / "xdg-state" / "codex-gateway"
    assert list((state / "sessions").glob("session-*"))
    assert not [p.name for p in workspace.iterdir() if p.name.startswith(".codex")]


# -- finding 17: private state -----------------------------------------------------------------


async def test_every_state_file_is_private_and_agent_files_are_not(tmp_path: Path) -> None:
    (tmp_path / "secure").mkdir(mode=0o755)  # made by an older gateway: made private at start
    env = gateway_env(
        tmp_path,
        PROBE,
        CODEX_GATEWAY_SECURE_TOKEN=SECRETS["CODEX_GATEWAY_SECURE_TOKEN"],
        # Nobody listens there: the delivery stays in the outbox.
        SESSION_WEBHOOK_URL="http://127.0.0.1:9/hook",
        SESSION_WEBHOOK_RETRY_BASE_MS="60000",
    )
    secure_headers = {"X-Codex-Secure-Token": SECRETS["CODEX_GATEWAY_SECURE_TOKEN"]}
    async with (
        running(env, tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client,
    ):
        plain = await client.post("/completion", json={"prompt": "write:made-by-agent.txt"})
        assert plain.status_code == 200, plain.text
        secure = await client.post(
            "/completion", json={"prompt": "hi", "secure": True}, headers=secure_headers
        )
        assert secure.status_code == 200, secure.text
        trigger = await client.post(
            "/triggers",
            json={"prompt_text": "x", "schedule": {"mode": "daily", "time": "09:00"}},
        )
        assert trigger.status_code in (200, 201), trigger.text
    state = [tmp_path / "sessions", tmp_path / "secure", tmp_path / "triggers"]
    assert list((tmp_path / "sessions" / ".webhooks").glob("*.json"))
    assert list((tmp_path / "secure").glob("session-*/meta.json"))
    loose = {
        str(path): oct(stat.S_IMODE(path.stat().st_mode))
        for top in state
        for path in [top, *top.rglob("*")]
        if stat.S_IMODE(path.stat().st_mode) & 0o077
    }
    assert loose == {}
    made = tmp_path / "workspace" / "made-by-agent.txt"
    assert stat.S_IMODE(made.stat().st_mode) == 0o644  # the agent's own umask: 022


# -- finding 10: the workspace is checked on the directory the agent starts in -----------------


async def test_a_queued_run_whose_workspace_became_a_symlink_out_does_not_run_there(
    config_for: Any, tmp_path: Path
) -> None:
    config = config_for(codex_bin=AGENTS_DIR / PROBE, max_concurrent=1)
    workspace = config.default_workspace
    (workspace / "sub").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    async with running_gateway(config) as running_:
        runner, slots = running_.gateway.runner, running_.gateway.slots
        # One slot, held over gRPC by a slow run; the next run waits for it, as triggers and
        # the watcher do (API runs over the limit answer 429 instead).
        holder = asyncio.ensure_future(
            running_.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="sleep:2")), timeout=30
            )
        )
        await wait_until(lambda: slots.active == 1, 10, "the slot to be taken")
        queued = asyncio.ensure_future(
            runner.run(
                RunRequest(source="trigger", prompt="write:escaped.txt", workspace="sub"),
                wait_for_slot=True,
            )
        )
        await wait_until(lambda: slots.waiting == 1, 10, "the run to queue")
        (workspace / "sub").rename(workspace / "sub-before")
        (workspace / "sub").symlink_to(outside, target_is_directory=True)
        with pytest.raises(InvalidRequest, match="outside the allowed roots"):
            await queued
        assert (await holder).result.status == "completed"
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("layout", "allowed"),
    [
        pytest.param("dir", True, id="a-folder-inside"),
        pytest.param("link-inside", True, id="a-link-to-a-folder-inside"),
        pytest.param("link-out", False, id="a-link-out"),
        pytest.param("link-out-above", False, id="a-folder-below-a-link-out"),
        pytest.param("file", False, id="a-file"),
        pytest.param("missing", False, id="missing"),
    ],
)
def test_open_confined_checks_the_opened_directory(
    tmp_path: Path, layout: str, allowed: bool
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    (outside / "deeper").mkdir(parents=True)
    target = root / "target"
    if layout == "dir":
        target.mkdir()
    elif layout == "link-inside":
        target.symlink_to(root / "real")
    elif layout == "link-out":
        target.symlink_to(outside)
    elif layout == "link-out-above":
        target.symlink_to(outside)
        target = target / "deeper"
    elif layout == "file":
        target.write_text("x")
    if not allowed:
        with pytest.raises(InvalidRequest) as refused:
            open_confined(target, [root], shown="target")
        assert refused.value.field == "workspace"
        return
    fd = open_confined(target, [root], shown="target")
    try:
        opened = Path(f"/proc/self/fd/{fd}").readlink()
        assert opened == target.resolve()
    finally:
        os.close(fd)


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_trigger_queued_for_a_slot_does_not_run_where_its_cwd_now_points(
    config_for: Any, tmp_path: Path, protocol: str
) -> None:
    """The real queue: a trigger, created over REST or gRPC with a `cwd` inside the roots,
    fires while the only slot is taken and waits; meanwhile its folder becomes a link out."""
    config = config_for(codex_bin=AGENTS_DIR / PROBE, max_concurrent=1)
    workspace = config.default_workspace
    (workspace / "sub").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    at = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
    clock = _Clock(at - timedelta(hours=1))
    entry = {
        "id": "swapped",
        "prompt_text": "write:escaped.txt",
        "cwd": "sub",
        "schedule": {"mode": "once", "at": at.isoformat()},
    }
    async with running_gateway(config, clock=clock) as gw:
        if protocol == "rest":
            async with (
                running_bridge(gw.target) as url,
                httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
            ):
                created = await client.post("/triggers", json=entry)
                assert created.status_code == 200, created.text
        else:
            value = struct_pb2.Value()
            json_format.ParseDict(entry, value)
            await gw.stub.CreateTriggers(triggers_pb2.CreateTriggersRequest(triggers=value))
        slots, scheduler = gw.gateway.slots, gw.gateway.scheduler
        holder = asyncio.ensure_future(
            gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="sleep:2")), timeout=30
            )
        )
        await wait_until(lambda: slots.active == 1, 10, "the slot to be taken")
        clock.now = at
        await scheduler.reload()
        fired = await scheduler.fire_due()
        assert len(fired) == 1
        await wait_until(lambda: slots.waiting == 1, 10, "the trigger's run to queue")
        (workspace / "sub").rename(workspace / "sub-before")
        (workspace / "sub").symlink_to(outside, target_is_directory=True)
        await asyncio.gather(*fired)
        assert (await holder).result.status == "completed"
        [stored] = json.loads(config.triggers.default_file.read_text())["triggers"]
        assert stored["last_status"] == "error"
        assert "outside the allowed roots" in stored["last_error"]
    assert list(outside.iterdir()) == []


# -- finding 2: agents as another user ---------------------------------------------------------


def _reachable_by_others(path: Path, mode: int = stat.S_IXOTH) -> bool:
    """Whether any user may use `path` (`mode`: S_IXOTH to run it, S_IROTH to read it), every
    folder above it searchable."""
    for folder in path.resolve().parents:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")
@pytest.mark.skipif(
    not Path("/usr/bin/python3").exists() or not _reachable_by_others(AGENTS_DIR / PROBE),
    reason="no interpreter or agent another user can run",
)
async def test_as_root_the_agent_runs_as_the_agent_user_and_reads_nothing_of_the_gateways(
    tmp_path: Path,
) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    token = tmp_path / "api-token"
    token.write_text(SECRETS["CODEX_GATEWAY_API_TOKEN"])
    token.chmod(0o600)
    env = gateway_env(
        tmp_path,
        PROBE,
        CODEX_GATEWAY_AGENT_USER="nobody",
        CODEX_GATEWAY_API_TOKEN_FILE=str(token),
        CODEX_GATEWAY_SECURE_TOKEN=SECRETS["CODEX_GATEWAY_SECURE_TOKEN"],
        # The system interpreter: the test's own may live where nobody can reach it.
        PATH="/usr/bin:/bin",
    )
    workspace = tmp_path / "workspace"
    os.chown(workspace, nobody.pw_uid, nobody.pw_gid)  # the agent user writes its workspace
    async with running(env, tmp_path) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as c:
            first = await c.post("/completion", json={"prompt": "hi"}, headers=AUTH)
            assert first.status_code == 200, first.text
        meta = next((tmp_path / "sessions").glob("session-*/meta.json"))
        prompt = probes(gateway, str(token), str(meta)) + "\nwrite:made.txt"
        private = {f"/proc/{pid}/environ" for pid in [gateway.pid, *bridges_of(gateway.pid)]}
        private |= {str(token), str(meta)}
        for report in await run_both_ways(gateway, prompt):
            assert (report["uid"], report["gid"]) == (nobody.pw_uid, nobody.pw_gid)
            assert report["groups"] in ([], [nobody.pw_gid])
            assert report["home"] == nobody.pw_dir
            assert {p["path"] for p in report["probes"] if not p["readable"]} == private
            for probe in report["probes"]:  # what it can read (command lines, its own block)
                assert not [v for v in SECRET_VALUES if v in probe.get("content", "")], probe
            assert report["written"] == ["made.txt"]
    assert (workspace / "made.txt").stat().st_uid == nobody.pw_uid


@pytest.mark.parametrize(
    ("user", "message"),
    [
        pytest.param("no-such-user-x", "no such user", id="unknown-name"),
        pytest.param("4000000000", "no such user", id="unknown-uid"),
    ],
)
def test_an_agent_user_that_does_not_exist_stops_startup(
    tmp_path: Path, user: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"CODEX_GATEWAY_AGENT_USER: {message}"):
        Config.from_env({"CODEX_GATEWAY_AGENT_USER": user}, cwd=tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can switch to any user")
def test_an_agent_user_the_gateway_cannot_switch_to_stops_startup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CODEX_GATEWAY_AGENT_USER: .* needs the gateway"):
        Config.from_env({"CODEX_GATEWAY_AGENT_USER": "0"}, cwd=tmp_path)


def test_an_agent_user_the_gateway_cannot_switch_to_stops_startup_as_another_user(
    tmp_path: Path,
) -> None:
    """The same check from a gateway process that is not root (run as nobody, when we are
    root), so that CI, which runs as root, proves it too."""
    if os.geteuid() != 0 or not Path("/usr/bin/python3").exists():
        pytest.skip("needs root to start a process as nobody")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from gateway.config import Config, ConfigError\n"
        "try:\n Config.from_env({'CODEX_GATEWAY_AGENT_USER': 'root', 'HOME': '/'})\n"
        "except ConfigError as e:\n print(e)\n"
    )
    source = Path(__file__).resolve().parents[2]
    if not _reachable_by_others(source / "gateway" / "config.py", stat.S_IROTH):
        pytest.skip("the source tree is not readable by another user")
    done = subprocess.run(
        ["/usr/bin/python3", "-c", code, str(source)],
        user="nobody",
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
        check=False,
    )
    assert "CODEX_GATEWAY_AGENT_USER: running agents as root needs the gateway" in done.stdout, (
        done.stdout + done.stderr
    )
