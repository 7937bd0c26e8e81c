"""Who may call a replica in cluster mode: the API token or the cluster token for the public
methods, only the cluster token for ClusterService; without a cluster token (every replica on
loopback) replicas forward with the API token. Secure sessions: the secure token travels through
forwarding, and its absence is answered as the home answers it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from codex_gateway.v1 import cluster_pb2, cluster_pb2_grpc, runs_pb2, sessions_pb2
from gateway.config import Config
from tests.cluster.test_forwarding import WAIT_S, homed
from tests.fakes import AGENTS_DIR
from tests.harness import CLUSTER_TOKEN, cluster_config, running_bridge, running_gateway

API = (("authorization", "Bearer api-token"),)
SECURE = "secure-token"


def _config(tmp_path: Path, dsn: str, replica: str, **overrides: Any) -> Config:
    return cluster_config(
        tmp_path,
        dsn,
        replica,
        codex_bin=AGENTS_DIR / "counter_agent.py",
        api_token="api-token",
        secure_token=SECURE,
        **overrides,
    )


def _cluster_token(config: Config, token: str | None) -> Config:
    assert config.cluster is not None
    return dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, token=token))


async def _session_on(stub: Any, dsn: str, *, secure: bool = False) -> str:
    metadata = (*API, ("x-codex-secure-token", SECURE)) if secure else API
    response = await stub.Complete(
        runs_pb2.CompleteRequest(
            run=runs_pb2.RunInput(prompt="x", env={"FAKE_AGENT_LINES": "2"}, secure=secure)
        ),
        metadata=metadata,
    )
    await homed(dsn, response.result.session_id, "alpha")
    return str(response.result.session_id)


async def _refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


@pytest.fixture
async def alpha(tmp_path: Path, pg_dsn: str) -> AsyncIterator[Any]:
    async with running_gateway(_config(tmp_path, pg_dsn, "alpha"), background=True) as gw:
        yield gw


async def test_the_cluster_token_opens_the_public_methods_and_nothing_else_does(
    alpha: Any, pg_dsn: str
) -> None:
    session = await _session_on(alpha.stub, pg_dsn)
    request = sessions_pb2.GetSessionRequest(session_id=session)
    await alpha.stub.GetSession(
        request, metadata=(("x-codex-gateway-cluster-token", CLUSTER_TOKEN),)
    )
    for metadata in (
        (),
        (("x-codex-gateway-cluster-token", "wrong"),),
        (("x-codex-gateway-cluster-token", ""),),
        (("authorization", f"Bearer {CLUSTER_TOKEN}"),),
    ):
        error = await _refused(alpha.stub.GetSession(request, metadata=metadata))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_relay_tail_needs_the_cluster_token_an_api_token_is_not_enough(
    alpha: Any, pg_dsn: str
) -> None:
    session = await _session_on(alpha.stub, pg_dsn)
    relay = cluster_pb2_grpc.ClusterServiceStub(alpha.channel)
    request = cluster_pb2.RelayTailRequest(tail=sessions_pb2.TailSessionRequest(session_id=session))
    for metadata in ((), API, (*API, ("x-codex-gateway-cluster-token", "wrong"))):
        error = await _refused(_collect(relay.RelayTail(request, metadata=metadata)))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "cluster token" in (error.details() or "")
    batches = await _collect(
        relay.RelayTail(request, metadata=(("x-codex-gateway-cluster-token", CLUSTER_TOKEN),))
    )
    assert [item for batch in batches for item in batch.items]


async def _collect(call: Any) -> list[Any]:
    return [message async for message in call]


async def test_a_replica_with_another_cluster_token_is_refused_by_the_home(
    alpha: Any, tmp_path: Path, pg_dsn: str
) -> None:
    session = await _session_on(alpha.stub, pg_dsn)
    impostor = _cluster_token(_config(tmp_path, pg_dsn, "beta"), "not-the-cluster-token")
    async with running_gateway(impostor, background=True) as beta:
        error = await _refused(
            beta.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session), metadata=API)
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        error = await _refused(
            _collect(
                beta.stub.TailSession(
                    sessions_pb2.TailSessionRequest(session_id=session), metadata=API
                )
            )
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_without_a_cluster_token_replicas_forward_with_the_api_token(
    tmp_path: Path, pg_dsn: str
) -> None:
    alpha_config = _cluster_token(_config(tmp_path, pg_dsn, "alpha"), None)
    beta_config = _cluster_token(_config(tmp_path, pg_dsn, "beta"), None)
    async with (
        running_gateway(alpha_config, background=True) as alpha,
        running_gateway(beta_config, background=True) as beta,
    ):
        session = await _session_on(alpha.stub, pg_dsn)
        found = await beta.stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session), metadata=API
        )
        assert found.session.session_id == session
        tailed = await _collect(
            beta.stub.TailSession(sessions_pb2.TailSessionRequest(session_id=session), metadata=API)
        )
        assert tailed
        # ClusterService then takes the API token, and nothing less.
        relay = cluster_pb2_grpc.ClusterServiceStub(alpha.channel)
        request = cluster_pb2.RelayTailRequest(
            tail=sessions_pb2.TailSessionRequest(session_id=session)
        )
        assert await _collect(relay.RelayTail(request, metadata=API))
        error = await _refused(_collect(relay.RelayTail(request)))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_secure_session_through_another_replica_answers_as_on_its_home(
    alpha: Any, tmp_path: Path, pg_dsn: str
) -> None:
    session = await _session_on(alpha.stub, pg_dsn, secure=True)
    async with (
        running_gateway(_config(tmp_path, pg_dsn, "beta"), background=True) as beta,
        running_bridge(beta.target) as url,
        httpx.AsyncClient(
            base_url=url, timeout=WAIT_S, headers={"authorization": "Bearer api-token"}
        ) as rest,
    ):
        request = sessions_pb2.GetSessionRequest(session_id=session)
        without = [
            await _refused(stub.GetSession(request, metadata=API))
            for stub in (alpha.stub, beta.stub)
        ]
        assert {e.code() for e in without} == {grpc.StatusCode.PERMISSION_DENIED}
        assert without[0].details() == without[1].details()
        wrong = (*API, ("x-codex-secure-token", "nope"))
        error = await _refused(beta.stub.GetSession(request, metadata=wrong))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

        with_token = (*API, ("x-codex-secure-token", SECURE))
        found = await beta.stub.GetSession(request, metadata=with_token)
        assert found.session.session_id == session
        tail = sessions_pb2.TailSessionRequest(session_id=session)
        assert await _collect(beta.stub.TailSession(tail, metadata=with_token))
        error = await _refused(_collect(beta.stub.TailSession(tail, metadata=API)))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

        assert (await rest.get(f"/sessions/{session}")).status_code == 403
        assert (
            await rest.get(f"/sessions/{session}", headers={"x-codex-secure-token": SECURE})
        ).status_code == 200
        assert (
            await rest.get(f"/sessions/{session}", params={"secure_token": SECURE})
        ).status_code == 200
        prompted = await rest.post(
            f"/sessions/{session}/prompt",
            json={"prompt": "more", "env": {"FAKE_AGENT_LINES": "1"}},
            headers={"x-secure-token": SECURE},
        )
        assert prompted.status_code == 200, prompted.text
        refused = await rest.post(f"/sessions/{session}/prompt", json={"prompt": "more"})
        assert refused.status_code == 403
