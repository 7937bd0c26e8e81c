"""The spawned-gateway helper copes with a port taken between being picked and being bound
(another worker's connection can get it as its ephemeral port): the gateway stops on it, and the
helper starts it again on new ports, when it picked them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import spawned
from tests.harness import free_port


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_gateway_whose_picked_port_was_taken_comes_up_on_new_ones(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first pick is the taken port (as a race would make it), later picks are free.
    picks = iter([taken_port])
    monkeypatch.setattr(spawned, "free_port", lambda: next(picks, None) or free_port())
    gateway = spawned.spawn(spawned.gateway_env(tmp_path), tmp_path / "gateway.log")
    try:
        spawned.until_serving_sync(gateway)
        assert taken_port not in (gateway.grpc_port, gateway.rest_port)
        assert spawned.PORT_TAKEN in gateway.log_tail(200)
    finally:
        assert gateway.stop() == 0, gateway.log_tail()


def test_a_gateway_given_a_taken_port_is_not_moved(tmp_path: Path, taken_port: int) -> None:
    gateway = spawned.spawn(
        spawned.gateway_env(tmp_path), tmp_path / "gateway.log", grpc_port=taken_port
    )
    try:
        with pytest.raises(RuntimeError, match="did not come up"):
            spawned.until_serving_sync(gateway)
        assert gateway.grpc_port == taken_port
    finally:
        gateway.stop()
