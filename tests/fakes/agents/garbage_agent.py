#!/usr/bin/env python3
"""Fake codex whose stdout mixes junk with one valid turn whose agent_message is "survived garbage".

The junk: plain text, JSON that is not an object, an object without "type", a "type" that is not
a string, truncated JSON, invalid UTF-8, blank and whitespace-only lines, and a NUL byte.
"""

import json
import sys
import uuid


def main() -> int:
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    thread_started = {"type": "thread.started", "thread_id": str(uuid.uuid4())}
    message = {
        "type": "item.completed",
        "item": {"id": "item_0", "type": "agent_message", "text": "survived garbage"},
    }
    usage = {
        "input_tokens": 100,
        "cached_input_tokens": 0,
        "cache_write_input_tokens": 0,
        "output_tokens": 10,
        "reasoning_output_tokens": 0,
    }
    lines = [
        b"this is not json",
        json.dumps(thread_started).encode(),
        b"[1,2]",
        b'"str"',
        b"42",
        b"null",
        b"",
        b'{"no_type": true}',
        b'{"type": 7}',
        b"   ",
        b"\xff\xfe not utf-8 \xc3\x28",
        b'{"type": "turn.started"',
        json.dumps({"type": "turn.started"}).encode(),
        b"\x00",
        json.dumps(message).encode(),
        b"Reading additional input from stdin...",
        json.dumps({"type": "turn.completed", "usage": usage}).encode(),
        b"trailing junk",
    ]
    sys.stdout.buffer.write(b"\n".join(lines) + b"\n")
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
