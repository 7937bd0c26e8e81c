#!/usr/bin/env python3
"""Fake codex that prints one 10 MiB line (an agent_message of 'x's), then a normal turn end.

The huge line is written in 1 MiB pieces with no newline until its end, as a reader would meet it.
"""

import json
import sys
import uuid

HUGE_TEXT_BYTES = 10 * 1024 * 1024


def emit(event: dict[str, object]) -> None:
    sys.stdout.buffer.write(json.dumps(event).encode() + b"\n")
    sys.stdout.buffer.flush()


def main() -> int:
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    out = sys.stdout.buffer
    emit({"type": "thread.started", "thread_id": str(uuid.uuid4())})
    emit({"type": "turn.started"})
    out.write(b'{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"')
    piece = b"x" * (1024 * 1024)
    for _ in range(HUGE_TEXT_BYTES // len(piece)):
        out.write(piece)
        out.flush()
    out.write(b'"}}\n')
    emit(
        {
            "type": "item.completed",
            "item": {"id": "item_1", "type": "agent_message", "text": "after huge line"},
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
