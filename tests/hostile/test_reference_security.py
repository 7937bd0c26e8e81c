"""The reference implementation's known security defects (its section 15), each sent through
REST to a live gateway process and refused or contained. Tests are named `ref<N>` after the
defect's number there.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.faults.spawned import Spawned, gateway_env, running
from tests.hostile.live import API_TOKEN, SECURE_TOKEN, completion_count


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "path",
        "Path",
        "LD_PRELOAD",
        "ld_library_path",
        "NODE_OPTIONS",
        "HOME",
        "CODEX_HOME",
        "OPENAI_BASE_URL",
        "PYTHONPATH",
        "BASH_ENV",
        "https_proxy",
        "CODEX_GATEWAY_SECURE_TOKEN",
    ],
)
async def test_ref09_the_request_env_cannot_choose_what_runs(
    client: httpx.AsyncClient, name: str
) -> None:
    before = await completion_count(client)
    response = await client.post(
        "/completion", json={"prompt": "x", "env": {name: "/tmp/evil", "FAKE_OK": "1"}}
    )
    assert response.status_code == 400, response.text
    assert name in response.json()["error"] and "FAKE_OK" not in response.json()["error"]
    assert await completion_count(client) == before  # nothing ran


@pytest.mark.parametrize("cwd", ["/", "/etc", "../..", "../../..", "escape", "escape/sub"])
@pytest.mark.parametrize("field", ["cwd", "workspace"])
async def test_ref10_a_workspace_outside_the_roots_is_refused(
    gateway: Spawned, client: httpx.AsyncClient, field: str, cwd: str
) -> None:
    workspace = gateway.log_path.parent / "workspace"
    outside = gateway.log_path.parent / "outside"
    (outside / "sub").mkdir(parents=True, exist_ok=True)
    if not (workspace / "escape").is_symlink():
        (workspace / "escape").symlink_to(outside)
    before = await completion_count(client)
    response = await client.post("/completion", json={"prompt": "x", field: cwd})
    assert response.status_code == 400, response.text
    assert "outside the allowed roots" in response.json()["error"]
    assert str(outside) not in response.text  # the resolved target is not revealed
    assert await completion_count(client) == before


@pytest.mark.parametrize(
    "raw_path", ["{outside}/evil.json", "../outside/evil.json", "{outside}/new/dir/evil.json"]
)
async def test_ref11_a_trigger_file_outside_the_roots_is_neither_read_nor_written(
    gateway: Spawned, client: httpx.AsyncClient, raw_path: str
) -> None:
    outside = gateway.log_path.parent / "outside-triggers"
    outside.mkdir(exist_ok=True)
    (outside / "evil.json").write_text('{"triggers": [{"id": "planted"}]}')
    target = raw_path.format(outside=outside)
    trigger = {"id": "t1", "prompt_text": "x", "schedule": {"mode": "once", "at": "2099-01-01"}}
    calls = [
        ("GET", "/triggers", None),
        ("POST", "/triggers", trigger),
        ("GET", "/triggers/planted", None),
        ("PATCH", "/triggers/planted", {"enabled": False}),
        ("DELETE", "/triggers/planted", None),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, params={"trigger_file": target}, json=body)
        assert response.status_code == 400, (method, path, response.text)
        assert response.json()["field"] == "trigger_file"
        assert "planted" not in response.text
    assert (outside / "evil.json").read_text() == '{"triggers": [{"id": "planted"}]}'
    assert sorted(p.name for p in outside.iterdir()) == ["evil.json"]
    assert not (outside / "new").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("workspace", "sm-loop/../sm-out"), ("trigger_file", "sm-loop/../sm-out/evil.json")],
)
async def test_ref10_ref11_a_symlink_loop_cannot_smuggle_a_path_out_of_its_root(
    gateway: Spawned, client: httpx.AsyncClient, field: str, value: str
) -> None:
    """Symlinks a repository or the agent itself can leave in the workspace or trigger root."""
    root = gateway.log_path.parent
    outside = root / "smuggled-to"
    outside.mkdir(exist_ok=True)
    for directory in (root / "workspace", root / "triggers"):
        directory.mkdir(exist_ok=True)
        if not (directory / "sm-loop").is_symlink():
            (directory / "sm-loop").symlink_to(directory / "sm-loop")
            (directory / "sm-out").symlink_to(outside)
    if field == "workspace":
        response = await client.post("/completion", json={"prompt": "x", "workspace": value})
    else:
        trigger = {"prompt_text": "x", "schedule": {"mode": "once", "at": "2099-01-01"}}
        response = await client.post("/triggers", params={field: value}, json=trigger)
    assert list(outside.iterdir()) == [], "a file was written outside the trigger root"
    assert response.status_code == 400, response.text  # today: 200, run or written outside


async def test_ref12_gateway_secrets_never_reach_the_agent(tmp_path: Path) -> None:
    secrets = {
        "CODEX_GATEWAY_SECURE_TOKEN": "leak-secure-token",
        "CODEX_GATEWAY_API_TOKEN": "leak-api-token",
        "SESSION_WEBHOOK_AUTH_BEARER": "leak-webhook-bearer",
        "SESSION_WEBHOOK_SECRET": "leak-webhook-hmac",
        "AWS_SECRET_ACCESS_KEY": "leak-unrelated-secret",
        "CODEX_GATEWAY_CHILD_ENV": "FAKE_ALLOWED",
        "FAKE_ALLOWED": "allowed-value",
    }
    env = gateway_env(tmp_path, "env_agent.py", **secrets)
    async with (
        running(env, tmp_path) as gw,
        httpx.AsyncClient(
            base_url=gw.url,
            headers={"Authorization": "Bearer leak-api-token"},
            timeout=30,
            trust_env=False,
        ) as http,
    ):
        response = await http.post("/completion", json={"prompt": "x", "env": {"TASK_VAR": "m"}})
        assert response.status_code == 200, response.text
        agent_env = json.loads(response.json()["output"])
        assert agent_env["TASK_VAR"] == "m"
        assert agent_env["FAKE_ALLOWED"] == "allowed-value"
        assert "leak-" not in json.dumps(agent_env), sorted(agent_env)
        listed = (await http.get("/")).text
        assert "leak-" not in listed  # GET / shows secrets only as configured or not


async def test_ref13_prompt_accepts_the_secure_token_by_query(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/completion",
        json={"prompt": "x", "secure": True},
        headers={"X-Secure-Token": SECURE_TOKEN},
    )
    assert created.status_code == 200, created.text
    sid = created.json()["session_id"]
    path = f"/sessions/{sid}/prompt"
    assert (await client.post(path, json={"prompt": "y"})).status_code == 403
    wrong = await client.post(path, json={"prompt": "y"}, params={"secure_token": "guess"})
    assert wrong.status_code == 403
    by_query = await client.post(path, json={"prompt": "y"}, params={"secure_token": SECURE_TOKEN})
    assert by_query.status_code == 200, by_query.text


async def test_ref14_every_endpoint_but_health_needs_the_api_token(gateway: Spawned) -> None:
    from bridge.bindings import bindings_from_service, service_descriptor

    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as anonymous:
        for binding in bindings_from_service(service_descriptor()):
            path = binding.template.text.replace("{session_id}", "x").replace("{trigger_id}", "x")
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}):
                response = await anonymous.request(
                    binding.http_method, path, headers=headers, json={} if binding.body else None
                )
                if path == "/health":
                    assert response.status_code == 200
                else:
                    assert response.status_code == 401, (binding.http_method, path)
                    assert "API token" in response.json()["error"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", "--help"),
        ("model", "-c"),
        ("model", "--dangerously-bypass-approvals-and-sandbox"),
        ("model", "gpt-5 --full-auto"),
        ("resume_session_id", "--last"),
        ("resume_session_id", "-"),
    ],
)
async def test_ref15_option_injection_through_model_or_resume_id_is_refused(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    before = await completion_count(client)
    response = await client.post("/completion", json={"prompt": "x", field: value})
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]
    assert await completion_count(client) == before


async def test_ref19_an_existing_session_cannot_be_switched_to_secure(
    client: httpx.AsyncClient,
) -> None:
    """The reference moved the root without the files: ENOENT, 500, stuck `running`."""
    sid = (await client.post("/completion", json={"prompt": "x"})).json()["session_id"]
    response = await client.post(
        "/completion",
        json={"prompt": "y", "session_id": sid, "secure": True},
        headers={"X-Codex-Secure-Token": SECURE_TOKEN},
    )
    assert response.status_code == 400, response.text
    detail = (await client.get(f"/sessions/{sid}")).json()
    assert detail["status"] == "completed" and detail["runs"] == 1


async def test_ref36_an_unknown_session_id_is_404_not_a_new_session(
    client: httpx.AsyncClient,
) -> None:
    before = await completion_count(client)
    unknown = str(uuid.uuid4())
    calls = [
        ("POST", "/completion", {"prompt": "x", "session_id": unknown}),
        ("POST", "/completion/stream", {"prompt": "x", "session_id": unknown}),
        ("POST", f"/sessions/{unknown}/prompt", {"prompt": "x"}),
        ("POST", f"/sessions/{unknown}/nudge", {"prompt": "x"}),
        ("POST", f"/sessions/{unknown}/cancel", {}),
        ("GET", f"/sessions/{unknown}", None),
        ("GET", f"/sessions/{unknown}/search?q=x", None),
        ("GET", f"/sessions/{unknown}/tail", None),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "NOT_FOUND"
    assert await completion_count(client) == before
