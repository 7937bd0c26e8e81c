#!/usr/bin/env python3
"""Fake codex that replays a recorded output as fast as the pipe takes it: for per-line cost.

Reads stdin to EOF, prints thread.started, then the bytes of the file FAKE_AGENT_REPLAY (none
when unset) in 64 KiB writes, then turn.completed. Exit 0. Stdlib only.
"""

import json
import os
import sys
import uuid


def main() -> int:
    sys.stdin.buffer.read()
    out = sys.stdout.buffer
    out.write(json.dumps({"type": "thread.started", "thread_id": str(uuid.uuid4())}).encode())
    out.write(b"\n")
    path = os.environ.get("FAKE_AGENT_REPLAY")
    if path:
        with open(path, "rb") as replay:  # noqa: PTH123  # stdlib only, no pathlib needed
            while chunk := replay.read(65_536):
                out.write(chunk)
    usage = {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 1}
    out.write(json.dumps({"type": "turn.completed", "usage": usage}).encode() + b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
