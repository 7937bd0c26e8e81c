"""The forwarding seam in embedded mode: every session is here, and the routed methods are the
methods themselves (a tail is the servicer's own stream, with no layer in between); the relay's
batching on its own."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest

from codex_gateway.v1 import sessions_pb2
from gateway.api import relay, service
from gateway.api.forward import HERE, Here
from gateway.cluster import forwarding
from gateway.server import Gateway
from tests.harness import base_config


async def test_the_embedded_placement_is_here_for_every_session(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gateway = Gateway.build(base_config(tmp_path))
    assert isinstance(gateway.placement, Here)
    assert gateway.placement.everything_here
    assert gateway.forwarding is None
    assert gateway.token_check is None  # no API token: no check, as before
    assert await HERE.home("anything", None) is None  # type: ignore[arg-type]


def test_an_embedded_tail_is_the_servicer_own_stream(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gateway = Gateway.build(base_config(tmp_path))
    servicer = service.GatewayServicer(
        gateway.config,
        gateway.runner,
        gateway.access,
        gateway.store,
        gateway.feed,
        gateway.reporter,
        gateway.scheduler,
        gateway.trigger_files,
    )
    stream = servicer.TailSession(sessions_pb2.TailSessionRequest(session_id="x"), None)
    assert inspect.isasyncgen(stream)
    assert stream.ag_code is service.GatewayServicer.local_tail.__code__


def test_forwarding_recognizes_the_gateway_error_domain() -> None:
    assert forwarding.ERROR_DOMAIN == service.ERROR_DOMAIN


async def _items(n: int, pause_every: int = 0) -> AsyncIterator[sessions_pb2.TailSessionResponse]:
    for seq in range(1, n + 1):
        yield sessions_pb2.TailSessionResponse(seq=seq)
        if pause_every and seq % pause_every == 0:
            await asyncio.sleep(0.01)


async def test_a_burst_goes_in_few_batches_bounded_in_items() -> None:
    batches = [batch async for batch in relay.batches(_items(5000))]
    assert [item.seq for batch in batches for item in batch] == list(range(1, 5001))
    assert all(len(batch) <= relay.MAX_BATCH_ITEMS for batch in batches)
    assert len(batches) <= 5000 // relay.MAX_BATCH_ITEMS + 3


async def test_items_that_come_apart_go_apart() -> None:
    batches = [batch async for batch in relay.batches(_items(30, pause_every=10))]
    assert [item.seq for batch in batches for item in batch] == list(range(1, 31))
    assert len(batches) >= 3


async def test_an_error_comes_after_the_items_before_it() -> None:
    async def failing() -> AsyncIterator[sessions_pb2.TailSessionResponse]:
        yield sessions_pb2.TailSessionResponse(seq=1)
        raise ValueError("boom")

    got = []
    with pytest.raises(ValueError, match="boom"):
        async for batch in relay.batches(failing()):
            got.extend(batch)
    assert [item.seq for item in got] == [1]
