"""The REPL at a terminal, over gRPC (`--grpc HOST:PORT`), against the real gateway and codex."""

from __future__ import annotations

from collections.abc import Callable

from codex_gateway.v1 import sessions_pb2
from tests.harness import RunningGateway
from tests.repl.terminal import UUID, Terminal, no_children_but


async def test_the_same_flows_over_grpc(
    gateway: RunningGateway, spawn: Callable[..., Terminal]
) -> None:
    term = spawn("--grpc", gateway.target, "--mode", "compact", "--timeout", "120")
    await term.expect("codex-repl · gRPC 127.0.0.1:")
    await term.line("run say hello")
    await term.expect("[agent] Hello from the fake model.")
    await term.expect("→ usage: 100 in / 10 out (total 110)")
    session_id = (await term.match(rf"→ pinned session ({UUID})"))[1]
    await term.line(f"prompt {session_id} [[reply:Second answer]] go on")
    await term.expect("[agent] Second answer")
    await term.line("list")
    await term.expect("1 session(s)")
    await term.expect(session_id)
    await term.line(f"show {session_id}")
    await term.expect("2 run(s)")
    await term.expect("usage: 100 in / 10 out (total 110)")
    await term.line(f"search {session_id} Second answer")
    await term.match(r"\d+ match\(es\) for 'Second answer'\nline \d+ · score 1\.00")
    await term.line("show nope")
    await term.expect("✗ NOT_FOUND: Session 'nope' not found")

    await term.line("run [[scenario:tool]] [[cmd:sleep 30]]")
    await term.expect("$ /bin/bash -c 'sleep 30'")
    await term.interrupt()
    await term.expect("Run cancelled after")
    await term.expect(f"codex ({session_id[:8]})>")
    assert await no_children_but(term.pid) == set()
    detail = await gateway.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id))
    assert detail.session.run_history[-1].status == "cancelled"
    await term.line(f"prompt {session_id} [[scenario:tool]] [[cmd:sleep 30]]")
    await term.expect("waiting for the run")
    await term.interrupt()  # perhaps before the gateway has started the run: asked again
    await term.expect("Run cancelled after")
    assert await no_children_but(term.pid) == set()
    await term.line("exit")
    assert await term.exit_status() == 0
    assert "Traceback" not in term.screen
