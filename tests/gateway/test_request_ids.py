"""Request ids over gRPC: the call's `x-request-id` metadata honoured when sane, else a new one;
returned in the trailing metadata (a stream's initial metadata too) and in an error's ErrorInfo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from bridge.requestid import MAX_REQUEST_ID_CHARS, is_sane
from codex_gateway.v1 import sessions_pb2
from codex_gateway.v1 import status_pb2 as gw_status
from gateway.config import Config
from tests.harness import running_gateway

UNKNOWN = "00000000-0000-4000-8000-000000000001"
# (A gRPC client sends no control characters in metadata: grpcio refuses them itself.)
HOSTILE = [
    pytest.param("x" * (MAX_REQUEST_ID_CHARS + 1), id="too-long"),
    pytest.param("y" * 9000, id="over-the-metadata-cap"),  # replaced, not refused
    pytest.param("a b", id="space"),
    pytest.param("a;b", id="semicolon"),
    pytest.param("<script>", id="markup"),
]


def _metadata(pairs: Any) -> dict[str, Any]:
    return {key: value for key, value in pairs or ()}


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    raw = _metadata(error.trailing_metadata())["grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status_pb2.Status.FromString(raw).details)
    return info


async def test_a_sane_request_id_is_echoed_in_the_trailing_metadata(config: Config) -> None:
    async with running_gateway(config) as gw:
        call = gw.stub.ListSessions(
            sessions_pb2.ListSessionsRequest(), metadata=(("x-request-id", "client-id.1:a/b=+"),)
        )
        await call
        assert _metadata(await call.trailing_metadata())["x-request-id"] == "client-id.1:a/b=+"


async def test_a_call_without_one_gets_a_new_uuid_hex(config: Config) -> None:
    async with running_gateway(config) as gw:
        seen = set()
        for _ in range(2):
            call = gw.stub.Health(gw_status.HealthRequest())
            await call
            request_id = _metadata(await call.trailing_metadata())["x-request-id"]
            assert len(request_id) == 32 and int(request_id, 16) >= 0
            seen.add(request_id)
        assert len(seen) == 2  # one per call


@pytest.mark.parametrize("offered", HOSTILE)
async def test_a_hostile_request_id_is_replaced_not_echoed(config: Config, offered: str) -> None:
    async with running_gateway(config) as gw:
        call = gw.stub.ListSessions(
            sessions_pb2.ListSessionsRequest(), metadata=(("x-request-id", offered),)
        )
        await call  # served: an unusable id is no reason to refuse the call
        request_id = _metadata(await call.trailing_metadata())["x-request-id"]
        assert request_id != offered and is_sane(request_id) and len(request_id) == 32


async def test_two_request_ids_are_ambiguous_and_replaced(config: Config) -> None:
    async with running_gateway(config) as gw:
        call = gw.stub.Health(
            gw_status.HealthRequest(), metadata=(("x-request-id", "a"), ("x-request-id", "b"))
        )
        await call
        assert _metadata(await call.trailing_metadata())["x-request-id"] not in ("a", "b")


async def test_an_error_names_the_request_in_its_error_info_and_metadata(
    config: Config,
) -> None:
    async with running_gateway(config) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await gw.stub.GetSession(
                sessions_pb2.GetSessionRequest(session_id=UNKNOWN),
                metadata=(("x-request-id", "err-1"),),
            )
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert _error_info(raised.value).metadata["request_id"] == "err-1"
        assert _metadata(raised.value.trailing_metadata())["x-request-id"] == "err-1"


async def test_a_request_that_does_not_decode_still_names_its_request(config: Config) -> None:
    async with running_gateway(config) as gw:
        undecodable = gw.channel.unary_unary(
            "/codex_gateway.v1.GatewayService/GetSession",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await undecodable(b"\xff\xff\xff", metadata=(("x-request-id", "bad-bytes"),))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _error_info(raised.value).metadata["request_id"] == "bad-bytes"


async def test_a_refused_token_still_names_its_request(
    config_for: Callable[..., Config],
) -> None:
    async with running_gateway(config_for(api_token="the-token")) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await gw.stub.ListSessions(
                sessions_pb2.ListSessionsRequest(), metadata=(("x-request-id", "no-token"),)
            )
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _metadata(raised.value.trailing_metadata())["x-request-id"] == "no-token"
        assert _error_info(raised.value).metadata["request_id"] == "no-token"


async def test_a_stream_names_its_request_in_its_initial_metadata(config: Config) -> None:
    async with running_gateway(config) as gw:
        call = gw.stub.TailSession(
            sessions_pb2.TailSessionRequest(session_id=UNKNOWN),
            metadata=(("x-request-id", "tail-1"),),
        )
        assert _metadata(await call.initial_metadata())["x-request-id"] == "tail-1"
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call:
                pass
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert _error_info(raised.value).metadata["request_id"] == "tail-1"
