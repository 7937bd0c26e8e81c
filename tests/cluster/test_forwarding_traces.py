"""A call forwarded to a session's home replica stays in the caller's trace: the home's RPC span
is a child of the forwarding replica's, which continues the client's `traceparent`. Two
in-process replicas on a real PostgreSQL export to this process's in-memory exporter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from codex_gateway.v1 import runs_pb2, sessions_pb2
from tests.cluster.test_forwarding import homed
from tests.e2e.test_traces import (
    CLIENT_SPAN,
    CLIENT_TRACE,
    SETTINGS,
    TRACEPARENT,
    finished,
    parent_id,
    provider,
    span_id,
)
from tests.fakes import AGENTS_DIR
from tests.harness import cluster_config, running_gateway


async def test_a_forwarded_call_continues_the_callers_trace_on_the_home_replica(
    tmp_path: Path, pg_dsn: str
) -> None:
    spans = provider()
    configs = [
        dataclasses.replace(
            cluster_config(tmp_path, pg_dsn, name, codex_bin=AGENTS_DIR / "counter_agent.py"),
            tracing=SETTINGS,
        )
        for name in ("alpha", "beta")
    ]
    async with (
        running_gateway(configs[0], background=True) as alpha,
        running_gateway(configs[1], background=True) as beta,
    ):
        result = (
            await alpha.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="c")))
        ).result
        await homed(pg_dsn, result.session_id, "alpha")
        await beta.stub.GetSession(
            sessions_pb2.GetSessionRequest(session_id=result.session_id),
            metadata=(("traceparent", TRACEPARENT),),
        )
    rpcs = [s for s in finished(spans, CLIENT_TRACE) if s.name.endswith("/GetSession")]
    assert len(rpcs) == 2, [s.name for s in finished(spans, CLIENT_TRACE)]
    (on_beta,) = [s for s in rpcs if parent_id(s) == CLIENT_SPAN]
    (on_alpha,) = [s for s in rpcs if s is not on_beta]
    # alpha's span hangs off beta's (the forwarding client's span, when there is one, between).
    chain = {span_id(s): parent_id(s) for s in finished(spans, CLIENT_TRACE)}
    hop = parent_id(on_alpha)
    while hop is not None and hop != span_id(on_beta):
        hop = chain.get(hop)
    assert hop == span_id(on_beta)
