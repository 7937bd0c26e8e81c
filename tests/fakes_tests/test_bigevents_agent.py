"""bigevents_agent.py prints the number and size of events its prompt asks for."""

from __future__ import annotations

import json

from tests.fakes_tests.conftest import Spawn
from tests.fakes_tests.test_agents import run_agent


def test_bigevents_agent_prints_count_events_of_the_asked_size(spawn: Spawn) -> None:
    code, stdout, _ = run_agent(spawn, "bigevents", stdin_data=b"count=3 bytes=5000 last=done")

    assert code == 0
    events = [json.loads(line) for line in stdout.splitlines()]
    assert [e["type"] for e in events] == [
        "thread.started",
        "turn.started",
        *["item.completed"] * 4,
        "turn.completed",
    ]
    assert [len(e["item"]["text"]) for e in events[2:5]] == [5000] * 3
    assert events[5]["item"]["text"] == "done"
