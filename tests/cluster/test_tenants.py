"""Tenant isolation across replicas (docs/design/tenants.md, "Request path" 5): a session homed
on alpha, read through beta, is its tenant's only. Beta forwards the caller to alpha (trusted
with the cluster token), alpha answers another tenant's call 404 as it would its own caller;
listings on any replica filter by the database's `tenant` column. Two in-process replicas on a
real PostgreSQL, both protocols (REST through beta's bridge), the fast fake agent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.protobuf import struct_pb2

from codex_gateway.v1 import runs_pb2, sessions_pb2, triggers_pb2
from gateway.auth.keys import digest_of
from gateway.cluster.database import Database, migrations
from gateway.config import Config
from tests.cluster.test_forwarding import WAIT_S, homed
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, cluster_config, running_bridge, running_gateway

ADMIN = "api-token"  # a test's own secrets
A, B = "k-team-a", "k-team-b"


def md(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


def _config(tmp_path: Path, dsn: str, replica: str, keys_file: Path) -> Config:
    return cluster_config(
        tmp_path,
        dsn,
        replica,
        codex_bin=AGENTS_DIR / "counter_agent.py",
        api_token=ADMIN,
        api_keys_file=keys_file,
    )


@dataclass
class Pair:
    alpha: RunningGateway
    beta: RunningGateway
    rest: httpx.AsyncClient  # beta's bridge
    dsn: str


@pytest.fixture
async def pair(tmp_path: Path, pg_dsn: str) -> AsyncIterator[Pair]:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "name": name,
                        "sha256": digest_of(secret).hex(),
                        "tenant": tenant,
                        "scopes": ["read", "run", "cancel", "triggers"],
                    }
                    for name, secret, tenant in (("a", A, "team-a"), ("b", B, "team-b"))
                ]
            }
        )
    )
    async with (
        running_gateway(_config(tmp_path, pg_dsn, "alpha", keys_file), background=True) as alpha,
        running_gateway(_config(tmp_path, pg_dsn, "beta", keys_file), background=True) as beta,
        running_bridge(beta.target) as url,
        httpx.AsyncClient(base_url=url, timeout=WAIT_S, trust_env=False) as rest,
    ):
        yield Pair(alpha, beta, rest, pg_dsn)


async def _on(gw: RunningGateway, secret: str, dsn: str, replica: str) -> runs_pb2.RunResult:
    response = await gw.stub.Complete(
        runs_pb2.CompleteRequest(
            run=runs_pb2.RunInput(prompt="count", env={"FAKE_AGENT_LINES": "2"})
        ),
        metadata=md(secret),
    )
    await homed(dsn, response.result.session_id, replica)
    return response.result


async def _code(call: Any) -> grpc.StatusCode:
    try:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_another_tenant_cannot_reach_a_session_through_another_replica(pair: Pair) -> None:
    mine = await _on(pair.alpha, A, pair.dsn, "alpha")
    stub = pair.beta.stub
    run = runs_pb2.RunInput(prompt="again", env={"FAKE_AGENT_LINES": "1"})

    def calls(ref: str) -> list[tuple[str, Any, str, str]]:
        return [
            (
                "detail",
                lambda m: stub.GetSession(
                    sessions_pb2.GetSessionRequest(session_id=ref), metadata=m
                ),
                "GET",
                f"/sessions/{ref}",
            ),
            (
                "search",
                lambda m: stub.SearchSession(
                    sessions_pb2.SearchSessionRequest(session_id=ref, q="line"), metadata=m
                ),
                "GET",
                f"/sessions/{ref}/search?q=line",
            ),
            (
                "tail",
                lambda m: stub.TailSession(
                    sessions_pb2.TailSessionRequest(session_id=ref), metadata=m
                ),
                "GET",
                f"/sessions/{ref}/tail",
            ),
            (
                "changes",
                lambda m: stub.GetSessionChanges(
                    sessions_pb2.GetSessionChangesRequest(session_id=ref), metadata=m
                ),
                "GET",
                f"/sessions/{ref}/changes",
            ),
            (
                "prompt",
                lambda m: stub.PromptSession(
                    runs_pb2.PromptSessionRequest(session_id=ref, run=run), metadata=m
                ),
                "POST",
                f"/sessions/{ref}/prompt",
            ),
            (
                "nudge",
                lambda m: stub.NudgeSession(
                    runs_pb2.NudgeSessionRequest(session_id=ref, run=run), metadata=m
                ),
                "POST",
                f"/sessions/{ref}/nudge",
            ),
            (
                "fork",
                lambda m: stub.ForkSession(
                    runs_pb2.ForkSessionRequest(session_id=ref, run=run), metadata=m
                ),
                "POST",
                f"/sessions/{ref}/fork",
            ),
            (
                "cancel",
                lambda m: stub.CancelSession(
                    sessions_pb2.CancelSessionRequest(session_id=ref), metadata=m
                ),
                "POST",
                f"/sessions/{ref}/cancel",
            ),
        ]

    for ref in (mine.session_id, mine.codex_session_id):
        for name, call, verb, path in calls(ref):
            assert await _code(call(md(B))) == grpc.StatusCode.NOT_FOUND, (name, ref)
            response = await pair.rest.request(
                verb,
                path,
                headers={"authorization": f"Bearer {B}"},
                **({"json": {"prompt": "again"}} if verb == "POST" else {}),
            )
            assert response.status_code == 404, (name, ref, response.text)
            assert response.json()["reason"] == "SESSION_NOT_FOUND"
    # A, and the admin, read it through beta as alpha has it.
    for secret in (A, ADMIN):
        got = await stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=mine.session_id), metadata=md(secret)
        )
        assert got.session.tenant == "team-a" and got.session.runs == 1
        response = await pair.rest.get(
            f"/sessions/{mine.session_id}", headers={"authorization": f"Bearer {secret}"}
        )
        assert response.status_code == 200 and response.json()["tenant"] == "team-a"


async def test_listings_on_any_replica_filter_by_tenant_in_the_database(pair: Pair) -> None:
    a_on_alpha = await _on(pair.alpha, A, pair.dsn, "alpha")
    a_on_beta = await _on(pair.beta, A, pair.dsn, "beta")
    b_on_alpha = await _on(pair.alpha, B, pair.dsn, "alpha")
    expected = {
        A: {a_on_alpha.session_id, a_on_beta.session_id},
        B: {b_on_alpha.session_id},
        ADMIN: {a_on_alpha.session_id, a_on_beta.session_id, b_on_alpha.session_id},
    }
    for gw in (pair.alpha, pair.beta):
        for secret, wanted in expected.items():
            listed = await gw.stub.ListSessions(
                sessions_pb2.ListSessionsRequest(), metadata=md(secret)
            )
            assert {s.session_id for s in listed.sessions} == wanted, secret
    for secret, wanted in expected.items():
        response = await pair.rest.get("/sessions", headers={"authorization": f"Bearer {secret}"})
        assert {s["session_id"] for s in response.json()} == wanted
    async with await psycopg.AsyncConnection.connect(pair.dsn, autocommit=True) as conn:
        cursor = await conn.execute("SELECT session_id, tenant FROM sessions")
        tenants = dict(await cursor.fetchall())
    assert tenants[a_on_beta.session_id] == "team-a"
    assert tenants[b_on_alpha.session_id] == "team-b"


async def test_the_tenant_migration_gives_older_rows_the_default_tenant(pg_dsn: str) -> None:
    database = Database(pg_dsn)
    await database.open()
    await database.close()
    tenant_migration = next(m for m in migrations() if m.name.endswith("_sessions_tenant.sql"))
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        # The schema as it was before the migration, with a session of then, and one whose meta
        # names a tenant.
        await conn.execute("ALTER TABLE sessions DROP COLUMN tenant")
        await conn.execute(
            "DELETE FROM schema_migrations WHERE version = %s", (tenant_migration.version,)
        )
        for session_id, meta in (("old", {}), ("named", {"tenant": "team-x"})):
            await conn.execute(
                "INSERT INTO sessions (session_id, home_replica, replica_epoch, secure, status,"
                " created_at, updated_at, meta) VALUES (%s, 'alpha', 0, false, 'idle', now(),"
                " now(), %s::jsonb)",
                (session_id, json.dumps(meta)),
            )
    database = Database(pg_dsn)
    await database.open()
    await database.close()
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        cursor = await conn.execute("SELECT session_id, tenant FROM sessions")
        assert dict(await cursor.fetchall()) == {"old": "default", "named": "team-x"}


async def test_a_trigger_made_on_one_replica_is_its_tenants_on_every_replica(pair: Pair) -> None:
    daily = {"mode": "daily", "time": "09:00", "timezone": "UTC"}
    made = await pair.alpha.stub.CreateTriggers(
        triggers_pb2.CreateTriggersRequest(
            triggers=struct_pb2.Value(
                struct_value=_struct({"id": "a-report", "prompt_text": "x", "schedule": daily})
            )
        ),
        metadata=md(A),
    )
    assert made.trigger.tenant == "team-a"

    def headers(secret: str) -> dict[str, str]:
        return {"authorization": f"Bearer {secret}"}

    response = await pair.rest.get("/triggers/a-report", headers=headers(B))
    assert response.status_code == 404 and response.json()["reason"] == "TRIGGER_NOT_FOUND"
    listed = (await pair.rest.get("/triggers", headers=headers(B))).json()["triggers"]
    assert listed == []
    response = await pair.rest.get("/triggers/a-report", headers=headers(A))
    assert response.status_code == 200 and response.json()["trigger"]["tenant"] == "team-a"
    assert (await pair.rest.delete("/triggers/a-report", headers=headers(B))).status_code == 404
    assert (await pair.rest.delete("/triggers/a-report", headers=headers(A))).status_code == 200


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct
