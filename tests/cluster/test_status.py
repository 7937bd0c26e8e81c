"""GET / and /status in cluster mode: the mode, this replica, the replicas alive."""

from __future__ import annotations

import contextlib
from pathlib import Path

from codex_gateway.v1 import status_pb2
from tests.harness import base_config, cluster_config, running_gateway


async def test_replicas_report_the_cluster_they_are_part_of(tmp_path: Path, pg_dsn: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            running_gateway(cluster_config(tmp_path, pg_dsn, "alpha"))
        )
        await stack.enter_async_context(running_gateway(cluster_config(tmp_path, pg_dsn, "beta")))
        info = await first.stub.GetInfo(status_pb2.GetInfoRequest())
        status = await first.stub.GetStatus(status_pb2.GetStatusRequest())
    for answer in (info, status):
        assert answer.mode == "cluster"
        assert answer.cluster.replica_id == "alpha"
        assert [replica.replica_id for replica in answer.cluster.replicas] == ["alpha", "beta"]
        assert answer.cluster.lease_ms == 2000


async def test_the_embedded_mode_says_so_and_has_no_cluster_block(tmp_path: Path) -> None:
    async with running_gateway(base_config(tmp_path)) as gateway:
        status = await gateway.stub.GetStatus(status_pb2.GetStatusRequest())
    assert status.mode == "embedded"
    assert not status.HasField("cluster")
