#!/usr/bin/env python3
"""Fake codex whose lines carry the time they were written: for live tail latency.

The protocol of tests/fakes/agents/counter_agent.py: reads stdin to EOF, prints thread.started
(the `resume <id>` id when given), then FAKE_AGENT_LINES (default 500) events
`{"type":"item.completed","item":{"type":"agent_message","text":"stamp <ns> n <N>"}}` where <ns>
is `time.time_ns()` taken just before the line is written and flushed, pausing
FAKE_AGENT_PAUSE_MS (default 5) between them, then turn.completed. Exit 0. Stdlib only.
"""

import json
import os
import sys
import time
import uuid


def main() -> int:
    sys.stdin.buffer.read()
    args = sys.argv[1:]
    thread = args[args.index("resume") + 1] if "resume" in args else str(uuid.uuid4())
    out = sys.stdout
    out.write(json.dumps({"type": "thread.started", "thread_id": thread}) + "\n")
    out.flush()
    pause = int(os.environ.get("FAKE_AGENT_PAUSE_MS", "5")) / 1000
    for n in range(int(os.environ.get("FAKE_AGENT_LINES", "500"))):
        if pause:
            time.sleep(pause)
        text = f"stamp {time.time_ns()} n {n}"
        item = {"id": f"item_{n}", "type": "agent_message", "text": text}
        out.write(json.dumps({"type": "item.completed", "item": item}) + "\n")
        out.flush()
    usage = {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 1}
    out.write(json.dumps({"type": "turn.completed", "usage": usage}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
