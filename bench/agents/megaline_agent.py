#!/usr/bin/env python3
"""Fake codex for the hostile census's memory attack: FAKE_AGENT_MIB_LINES (default 64)
agent_message events of just under 1 MiB each (the gateway's largest line), then a normal turn
end. The last message holds the word `needle`, so a search over the log finds one match.

FAKE_AGENT_PAUSE_MS (default 0) waits between lines, so followers can attach to a live run.
"""

import json
import os
import sys
import time
import uuid

LINE_BYTES = 1024 * 1024 - 256  # the text; the JSON around it keeps the line under 1 MiB


def emit(event: dict[str, object]) -> None:
    sys.stdout.buffer.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
    sys.stdout.buffer.flush()


def main() -> int:
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    lines = int(os.environ.get("FAKE_AGENT_MIB_LINES", "64"))
    pause_s = int(os.environ.get("FAKE_AGENT_PAUSE_MS", "0")) / 1000
    emit({"type": "thread.started", "thread_id": str(uuid.uuid4())})
    emit({"type": "turn.started"})
    for n in range(lines):
        text = ("needle " if n == lines - 1 else "") + f"{n:08d} " + "x" * LINE_BYTES
        text = text[:LINE_BYTES]
        emit(
            {
                "type": "item.completed",
                "item": {"id": f"item_{n}", "type": "agent_message", "text": text},
            }
        )
        if pause_s:
            time.sleep(pause_s)
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
