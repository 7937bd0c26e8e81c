#!/usr/bin/env python3
"""Fake codex that never stops talking: after thread.started, lines forever on stdout and stderr.

stdout gets valid item.completed agent_messages (about 200 bytes of text) mixed with plain text;
stderr gets a line per round. It never exits by itself; a closed stdout makes it exit 101 like
codex's broken-pipe panic.
"""

import itertools
import json
import os
import sys
import uuid


def main() -> int:
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    out, err = sys.stdout.buffer, sys.stderr.buffer
    try:
        out.write(json.dumps({"type": "thread.started", "thread_id": str(uuid.uuid4())}).encode())
        out.write(b"\n")
        out.flush()
        for n in itertools.count():
            item = {"id": f"item_{n}", "type": "agent_message", "text": f"{n:08d} " + "y" * 191}
            out.write(json.dumps({"type": "item.completed", "item": item}).encode() + b"\n")
            out.write(b"plain text, not json: " + str(n).encode() + b"\n")
            out.flush()
            err.write(b"stderr noise " + str(n).encode() + b"\n")
            err.flush()
    except BrokenPipeError:
        os._exit(101)
    return 0


if __name__ == "__main__":
    sys.exit(main())
