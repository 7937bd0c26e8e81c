"""deploy/nginx.conf, the load-balancer example, in front of two replica processes: REST and gRPC
requests spread over both replicas, and streams (SSE over REST, a gRPC server stream) pass each
event through while the run is still going.

nginx comes from Debian (`apt-get install nginx-light`); where it is not installed the tests that
run it are skipped with that reason (shown by `pytest -rs`), and the checks of the file's text
still run.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from codex_gateway.v1 import gateway_pb2_grpc, runs_pb2, status_pb2
from devcluster import __main__ as devcluster_main
from tests.cluster.processes import ReplicaCluster, eventually, running_cluster
from tests.faults.spawned import agents_of
from tests.harness import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or next(
    (str(p) for p in (Path("/usr/sbin/nginx"),) if p.exists()), None
)
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed here (apt-get install nginx-light)"
)
TWO = ("alpha", "beta")


def test_the_example_balances_the_replicas_make_cluster_starts() -> None:
    text = EXAMPLE.read_text()
    rest, grpc_port = 4001, 50061  # make cluster's first ports (devcluster/__main__.py)
    assert f'--rest-port", type=int, default={rest}' in _devcluster_source()
    assert f'--grpc-port", type=int, default={grpc_port}' in _devcluster_source()
    for port in (rest, rest + 1):
        assert f"server 127.0.0.1:{port} " in text
    for port in (grpc_port, grpc_port + 1):
        assert f"server 127.0.0.1:{port} " in text
    # REST over HTTP/1.1 to the replicas, streams not buffered; gRPC over HTTP/2.
    assert "proxy_http_version 1.1;" in text
    assert "proxy_buffering off;" in text
    assert re.search(r"listen [0-9.:]+ http2;", text)
    assert "grpc_pass grpc://gateway_grpc;" in text


def _devcluster_source() -> str:
    return Path(devcluster_main.__file__).read_text()


@needs_nginx
def test_nginx_accepts_the_example(tmp_path: Path) -> None:
    assert NGINX is not None
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr


def rendered(cluster: ReplicaCluster, rest_port: int, grpc_port: int) -> str:
    """The example with the test's addresses: these replicas, these listening ports."""
    text = EXAMPLE.read_text()
    replicas = [cluster[replica_id] for replica_id in TWO]
    swaps = {
        "127.0.0.1:4001 ": f"127.0.0.1:{replicas[0].rest_port} ",
        "127.0.0.1:4002 ": f"127.0.0.1:{replicas[1].rest_port} ",
        "127.0.0.1:50061 ": f"127.0.0.1:{replicas[0].grpc_port} ",
        "127.0.0.1:50062 ": f"127.0.0.1:{replicas[1].grpc_port} ",
        "listen 127.0.0.1:8080;": f"listen 127.0.0.1:{rest_port};",
        "listen 127.0.0.1:8081 http2;": f"listen 127.0.0.1:{grpc_port} http2;",
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def running_nginx(config: Path, prefix: Path) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground, one process (no workers), stopped by pid afterwards."""
    assert NGINX is not None
    log = (prefix / "nginx.log").open("wb")
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(config), "-g", "daemon off; master_process off;"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: ends its open streams
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@needs_nginx
@pytest.mark.timeout(120)
async def test_rest_and_grpc_through_nginx_reach_both_replicas_and_stream(
    tmp_path: Path, pg_dsn: str
) -> None:
    lb_rest, lb_grpc = free_port(), free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    async with running_cluster(tmp_path, pg_dsn, TWO, agent="slow_agent.py") as cluster:
        config = prefix / "nginx.conf"
        config.write_text(rendered(cluster, lb_rest, lb_grpc))
        with running_nginx(config, prefix) as nginx:
            url = f"http://127.0.0.1:{lb_rest}"
            async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:

                async def healthy() -> bool:
                    assert nginx.poll() is None, (prefix / "nginx.log").read_text()
                    return (await client.get("/health")).status_code == 200

                await eventually(healthy, 20, "nginx in front of the replicas")
                # Round robin: both replicas answer, each saying who it is.
                seen = {
                    (await client.get("/status")).json()["cluster"]["replica_id"] for _ in range(6)
                }
                assert seen == set(TWO)
                await sse_streams_through(client, cluster)

            async with grpc.aio.insecure_channel(f"127.0.0.1:{lb_grpc}") as channel:
                stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                seen = set()
                for _ in range(6):
                    answer = await stub.GetStatus(status_pb2.GetStatusRequest(), timeout=10)
                    seen.add(answer.cluster.replica_id)
                assert seen == set(TWO)
                await grpc_streams_through(stub, cluster)


async def sse_streams_through(client: httpx.AsyncClient, cluster: ReplicaCluster) -> None:
    """The first event of a 4-second run arrives while its agent is still running."""
    body = {"prompt": "tick", "env": {"FAKE_AGENT_SECONDS": "4"}}
    headers = {"accept": "text/event-stream"}
    async with client.stream("POST", "/completion/stream", json=body, headers=headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        async for line in lines:
            if "tick 1" in line:
                assert running_agents(cluster), "the first event came only after the run"
                break
        rest = [line async for line in lines]
    assert any("tick 4" in line for line in rest)


async def grpc_streams_through(
    stub: gateway_pb2_grpc.GatewayServiceStub, cluster: ReplicaCluster
) -> None:
    request = runs_pb2.StreamCompletionRequest(
        run=runs_pb2.RunInput(prompt="tick", env={"FAKE_AGENT_SECONDS": "4"})
    )
    kinds = []
    async for message in stub.StreamCompletion(request, timeout=60):
        kind = message.WhichOneof("kind")
        kinds.append(kind)
        if kind == "event" and "tick 1" in str(message.event):
            assert running_agents(cluster), "the first event came only after the run"
    assert kinds[0] == "started" and kinds[-1] == "completed"
    assert kinds.count("event") >= 4


def running_agents(cluster: ReplicaCluster) -> set[int]:
    return set().union(*(agents_of(cluster[r].pid, "slow_agent") for r in TWO))
