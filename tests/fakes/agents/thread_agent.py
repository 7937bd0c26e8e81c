#!/usr/bin/env python3
"""Fake codex that announces the thread id it is told to (FAKE_AGENT_THREAD_ID), whatever it is.

One turn: thread.started with that id (a new UUID when unset), an agent_message holding the JSON
of the argv it was given, turn.completed. Exit 0. For the gateway's check of thread ids.
"""

import json
import os
import sys
import uuid


def emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main() -> int:
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    thread = os.environ.get("FAKE_AGENT_THREAD_ID", str(uuid.uuid4()))
    emit({"type": "thread.started", "thread_id": thread})
    emit({"type": "turn.started"})
    text = json.dumps({"argv": sys.argv[1:]})
    emit({"type": "item.completed", "item": {"id": "i0", "type": "agent_message", "text": text}})
    emit({"type": "turn.completed", "usage": {"input_tokens": 1, "output_tokens": 1}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
