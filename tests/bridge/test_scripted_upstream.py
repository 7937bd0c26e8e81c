"""The ScriptedUpstream fake does what the bridge tests rely on, checked over gRPC directly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, sessions_pb2
from codex_gateway.v1 import status_pb2 as gw_status
from tests.bridge.scripted_upstream import STATUS_DETAILS_KEY, ScriptedUpstream


@pytest.fixture
async def stub(
    scripted: tuple[ScriptedUpstream, str],
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceStub]:
    async with grpc.aio.insecure_channel(scripted[1]) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


async def test_a_session_id_naming_a_status_fails_with_it(
    stub: gateway_pb2_grpc.GatewayServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSession(sessions_pb2.GetSessionRequest(session_id="ABORTED"))
    assert caught.value.code() == grpc.StatusCode.ABORTED
    ok = await stub.GetSession(sessions_pb2.GetSessionRequest(session_id="OK"))
    assert ok.session.session_id == "OK"


async def test_unavailable_a_set_number_of_times(
    stub: gateway_pb2_grpc.GatewayServiceStub, upstream: ScriptedUpstream
) -> None:
    upstream.unavailable_before_success = 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Health(gw_status.HealthRequest())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (await stub.Health(gw_status.HealthRequest())).status == "ok"
    assert upstream.calls["Health"] == 2


async def test_busy_carries_rich_details(stub: gateway_pb2_grpc.GatewayServiceStub) -> None:
    request = runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="busy"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Complete(request)
    details = dict(caught.value.trailing_metadata())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert dict(info.metadata) == {"retry_after": "5", "active": "2", "max": "2"}


async def test_a_followed_tail_records_its_cancellation(
    stub: gateway_pb2_grpc.GatewayServiceStub, upstream: ScriptedUpstream
) -> None:
    call = stub.TailSession(sessions_pb2.TailSessionRequest(session_id="s", follow=True))
    first = await call.read()
    assert first.line.text == "first"
    call.cancel()
    await asyncio.wait_for(upstream.tail_cancelled.wait(), 5)
    assert dict(upstream.metadata["TailSession"]).get("user-agent", "").startswith("grpc")
