#!/usr/bin/env python3
"""Fake codex that prints numbered lines fast: for checking that followers see every line in order.

Prints thread.started (the `resume <id>` id when given), then FAKE_AGENT_LINES (default 2000)
events `{"type":"item.completed","item":{"type":"agent_message","text":"line N"}}`, pausing
FAKE_AGENT_PAUSE_MS (default 0) between them, then turn.completed. Exit 0.
"""

import json
import os
import sys
import time
import uuid


def main() -> int:
    sys.stdin.buffer.read()
    args = sys.argv[1:]
    after = args[args.index("resume") + 1 :] if "resume" in args else []
    after = after[1:] if after[:1] == ["--"] else after
    thread = after[0] if after else str(uuid.uuid4())
    out = sys.stdout
    out.write(json.dumps({"type": "thread.started", "thread_id": thread}) + "\n")
    pause = int(os.environ.get("FAKE_AGENT_PAUSE_MS", "0")) / 1000
    for n in range(int(os.environ.get("FAKE_AGENT_LINES", "2000"))):
        item = {"id": f"item_{n}", "type": "agent_message", "text": f"line {n}"}
        out.write(json.dumps({"type": "item.completed", "item": item}) + "\n")
        out.flush()
        if pause:
            time.sleep(pause)
    usage = {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 1}
    out.write(json.dumps({"type": "turn.completed", "usage": usage}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
