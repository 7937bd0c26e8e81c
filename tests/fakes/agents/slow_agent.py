#!/usr/bin/env python3
"""Fake codex with a slow turn: one agent_message a second for FAKE_AGENT_SECONDS (default 30).

Then turn.completed and exit 0. Like codex, SIGINT makes it exit 1 at once with no final event.
"""

import json
import os
import signal
import sys
import time
import uuid


def emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main() -> int:
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(1))
    seconds = int(float(os.environ.get("FAKE_AGENT_SECONDS", "30")))
    emit({"type": "thread.started", "thread_id": str(uuid.uuid4())})
    emit({"type": "turn.started"})
    for n in range(seconds):
        time.sleep(1)
        emit(
            {
                "type": "item.completed",
                "item": {"id": f"item_{n}", "type": "agent_message", "text": f"tick {n + 1}"},
            }
        )
    usage = {
        "input_tokens": 100,
        "cached_input_tokens": 0,
        "cache_write_input_tokens": 0,
        "output_tokens": 10,
        "reasoning_output_tokens": 0,
    }
    emit({"type": "turn.completed", "usage": usage})
    return 0


if __name__ == "__main__":
    sys.exit(main())
