"""The audit log (CODEX_GATEWAY_AUDIT_FILE): one JSON line per mutating call, refusals included,
with who, what, when, the result and the request id, after real calls on both protocols; read
calls leave none; the file is the owner's only and complete once the gateway has closed."""

from __future__ import annotations

import dataclasses
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2

from codex_gateway.v1 import runs_pb2, sessions_pb2, triggers_pb2
from gateway.auth.keys import digest_of
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.gateway.test_triggers import DAILY, with_triggers
from tests.harness import running_bridge, running_gateway

TOKEN = "the-admin-token"  # a test's own secrets
SCOPES = {
    "runner": ["run", "read", "cancel"],
    "reader": ["read"],
    "scheduler": ["triggers"],
    "metered": ["run"],
}


def secret(name: str) -> str:
    return f"k-{name}"


def grpc_md(name: str, request_id: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret(name)}"), ("x-request-id", request_id))


def rest_headers(name: str, request_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(name)}", "X-Request-Id": request_id}


def records(path: Path) -> dict[str, dict[str, Any]]:
    """The audit lines by request id."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_id = {line["request_id"]: line for line in lines}
    assert len(by_id) == len(lines)
    return by_id


@pytest.fixture
def audited(config_for: Callable[..., Config], tmp_path: Path) -> Config:
    keys_file = tmp_path / "keys.json"
    entries = [
        {
            "name": name,
            "sha256": digest_of(secret(name)).hex(),
            "tenant": "team-a",
            "scopes": scopes,
            **({"runs_per_minute": 1} if name == "metered" else {}),
        }
        for name, scopes in SCOPES.items()
    ]
    keys_file.write_text(json.dumps({"keys": entries}))
    config = config_for(
        codex_bin=AGENTS_DIR / "echo_agent.py",
        api_token=TOKEN,
        api_keys_file=keys_file,
        audit_file=tmp_path / "audit" / "audit.jsonl",
    )
    return with_triggers(config, tmp_path)


async def test_every_mutating_call_leaves_one_record_on_both_protocols(audited: Config) -> None:
    audit_file = audited.audit_file
    assert audit_file is not None
    async with (
        running_gateway(audited) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as rest,
    ):
        stub = gw.stub
        run = runs_pb2.RunInput(prompt="hi")
        made = await stub.Complete(
            runs_pb2.CompleteRequest(run=run), metadata=grpc_md("runner", "g-complete")
        )
        session_id, run_id = made.result.session_id, made.result.run_id
        answer = await rest.post(
            "/completion", json={"prompt": "hi"}, headers=rest_headers("runner", "r-complete")
        )
        assert answer.status_code == 200
        rest_session = answer.json()["session_id"]
        streamed = [
            message
            async for message in stub.StreamCompletion(
                runs_pb2.StreamCompletionRequest(run=run), metadata=grpc_md("runner", "g-stream")
            )
        ]
        stream_session = streamed[0].started.session_id
        prompted = await rest.post(
            f"/sessions/{session_id}/prompt",
            json={"prompt": "again"},
            headers=rest_headers("runner", "r-prompt"),
        )
        assert prompted.status_code == 200
        cancelled = await stub.CancelSession(
            sessions_pb2.CancelSessionRequest(session_id=session_id),
            metadata=grpc_md("runner", "g-cancel"),
        )
        assert not cancelled.cancelled  # nothing ran: still a mutating call, recorded
        # Reads leave nothing.
        await stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session_id),
            metadata=grpc_md("runner", "g-read"),
        )
        assert (
            await rest.get("/sessions", headers=rest_headers("runner", "r-read"))
        ).status_code == 200
        # Refusals: no key, a key without the scope, a key over its rate, a bad request.
        bad_key = await rest.post(
            "/completion", json={"prompt": "hi"}, headers=rest_headers("nobody", "r-401")
        )
        assert bad_key.status_code == 401
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Complete(
                runs_pb2.CompleteRequest(run=run), metadata=grpc_md("reader", "g-403")
            )
        await stub.Complete(
            runs_pb2.CompleteRequest(run=run), metadata=grpc_md("metered", "g-rate-1")
        )
        limited = await rest.post(
            "/completion", json={"prompt": "hi"}, headers=rest_headers("metered", "r-429")
        )
        assert limited.status_code == 429
        invalid = await rest.post("/completion", json={}, headers=rest_headers("runner", "r-400"))
        assert invalid.status_code == 400
        # Triggers.
        created = await rest.post(
            "/triggers",
            json={"id": "t1", "prompt_text": "x", "schedule": DAILY},
            headers=rest_headers("scheduler", "r-trigger-create"),
        )
        assert created.status_code == 200, created.text
        await stub.UpdateTrigger(
            triggers_pb2.UpdateTriggerRequest(
                trigger_id="t1", patch=json_format.ParseDict({"title": "T"}, struct_pb2.Struct())
            ),
            metadata=grpc_md("scheduler", "g-trigger-update"),
        )
        deleted = await rest.delete(
            "/triggers/t1", headers=rest_headers("scheduler", "r-trigger-delete")
        )
        assert deleted.status_code == 200
        # The admin token is a key too.
        await stub.CreateTriggers(
            triggers_pb2.CreateTriggersRequest(
                triggers=json_format.ParseDict(
                    {
                        "triggers": [
                            {"id": "a", "prompt_text": "x", "schedule": DAILY},
                            {"id": "b", "prompt_text": "y", "schedule": DAILY},
                        ]
                    },
                    struct_pb2.Value(),
                )
            ),
            metadata=(("authorization", f"Bearer {TOKEN}"), ("x-request-id", "g-admin")),
        )
    # Closed with the gateway: every record is written.
    assert stat.S_IMODE(audit_file.stat().st_mode) == 0o600
    found = records(audit_file)
    assert "g-read" not in found and "r-read" not in found
    who = {"key": "runner", "tenant": "team-a"}

    def line(request_id: str) -> dict[str, Any]:
        record = dict(found[request_id])
        assert record.pop("request_id") == request_id
        assert record.pop("time").endswith("Z")
        return record

    assert line("g-complete") == {
        **who,
        "method": "Complete",
        "code": "OK",
        "session_id": session_id,
        "run_id": run_id,
    }
    rest_complete = line("r-complete")
    assert rest_complete.pop("run_id")
    assert rest_complete == {**who, "method": "Complete", "code": "OK", "session_id": rest_session}
    stream = line("g-stream")
    assert stream.pop("run_id")
    assert stream == {
        **who,
        "method": "StreamCompletion",
        "code": "OK",
        "session_id": stream_session,
    }
    prompt = line("r-prompt")
    assert prompt.pop("run_id") != run_id
    assert prompt == {**who, "method": "PromptSession", "code": "OK", "session_id": session_id}
    assert line("g-cancel") == {
        **who,
        "method": "CancelSession",
        "code": "OK",
        "session_id": session_id,
    }
    assert line("r-401") == {
        "key": "",
        "tenant": "",
        "method": "Complete",
        "code": "UNAUTHENTICATED",
    }
    assert line("g-403") == {
        "key": "reader",
        "tenant": "team-a",
        "method": "Complete",
        "code": "PERMISSION_DENIED",
    }
    assert line("g-rate-1")["code"] == "OK"
    assert line("r-429") == {
        "key": "metered",
        "tenant": "team-a",
        "method": "Complete",
        "code": "RESOURCE_EXHAUSTED",
    }
    assert line("r-400") == {**who, "method": "Complete", "code": "INVALID_ARGUMENT"}
    scheduler = {"key": "scheduler", "tenant": "team-a", "code": "OK", "trigger_id": "t1"}
    assert line("r-trigger-create") == {**scheduler, "method": "CreateTriggers"}
    assert line("g-trigger-update") == {**scheduler, "method": "UpdateTrigger"}
    assert line("r-trigger-delete") == {**scheduler, "method": "DeleteTrigger"}
    assert line("g-admin") == {
        "key": "api-token",
        "tenant": "default",
        "method": "CreateTriggers",
        "code": "OK",
        "trigger_id": "a,b",
    }
    # Nothing of a secret or a prompt.
    text = audit_file.read_text()
    for leaked in (TOKEN, *(secret(name) for name in SCOPES), "again"):
        assert leaked not in text


async def test_without_keys_the_open_caller_is_recorded_and_the_file_rotates(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    audit_file = tmp_path / "audit.jsonl"
    config = config_for(
        codex_bin=AGENTS_DIR / "echo_agent.py",
        audit_file=audit_file,
        audit_max_bytes=1024,
        audit_backups=2,
    )
    async with running_gateway(config) as gw:
        for n in range(30):
            with pytest.raises(grpc.aio.AioRpcError):
                await gw.stub.PromptSession(
                    runs_pb2.PromptSessionRequest(
                        session_id=f"missing-{n}", run=runs_pb2.RunInput(prompt="x")
                    ),
                    metadata=(("x-request-id", f"open-{n}"),),
                )
    kept = [
        audit_file,
        audit_file.with_name("audit.jsonl.1"),
        audit_file.with_name("audit.jsonl.2"),
    ]
    assert all(path.exists() for path in kept)
    assert not audit_file.with_name("audit.jsonl.3").exists()
    lines = [json.loads(line) for path in kept for line in path.read_text().splitlines()]
    assert lines and all(
        (line["key"], line["tenant"], line["method"], line["code"])
        == ("anonymous", "default", "PromptSession", "NOT_FOUND")
        for line in lines
    )
    assert "open-29" in {line["request_id"] for line in lines}
    assert all(path.stat().st_size <= 1024 for path in kept)


def test_an_audit_file_that_cannot_be_opened_is_a_config_error(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    from gateway.config import ConfigError
    from gateway.server import Gateway

    blocker = tmp_path / "file"
    blocker.write_text("")
    config = dataclasses.replace(config_for(), audit_file=blocker / "audit.jsonl")
    with pytest.raises(ConfigError, match="CODEX_GATEWAY_AUDIT_FILE"):
        Gateway.build(config)
