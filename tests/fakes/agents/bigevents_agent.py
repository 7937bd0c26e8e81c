#!/usr/bin/env python3
"""Fake codex that prints many big events: `count=N bytes=B` in its prompt asks for N
agent_message events whose text is B bytes of 'z' (each one a line of about B bytes), then a
normal turn end. `wait=S` first sleeps S seconds (time for followers to attach); `last=TEXT`
makes the final agent message TEXT, so the run's output is small.
"""

import json
import re
import sys
import time
import uuid


def thread_id(argv: list[str]) -> str:
    """The id after ``resume`` (a resumed thread keeps its id); else a new one."""
    if "resume" in argv:
        after = [arg for arg in argv[argv.index("resume") + 1 :] if arg != "--"]
        if after and after[0] != "-" and not after[0].startswith("--"):
            return after[0]
    return str(uuid.uuid4())


def number(prompt: str, key: str, default: float) -> float:
    found = re.search(rf"\b{key}=([0-9.]+)", prompt)
    return float(found.group(1)) if found else default


def emit(event: dict[str, object]) -> None:
    sys.stdout.buffer.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
    sys.stdout.buffer.flush()


def main() -> int:
    prompt = sys.stdin.buffer.read().decode("utf-8", errors="replace")  # codex waits for EOF too
    count = int(number(prompt, "count", 10))
    size = int(number(prompt, "bytes", 1_000_000))
    time.sleep(number(prompt, "wait", 0))
    emit({"type": "thread.started", "thread_id": thread_id(sys.argv[1:])})
    emit({"type": "turn.started"})
    text = "z" * size
    for n in range(count):
        item = {"id": f"item_{n}", "type": "agent_message", "text": text}
        emit({"type": "item.completed", "item": item})
    last = re.search(r"\blast=(\S+)", prompt)
    if last:
        item = {"id": f"item_{count}", "type": "agent_message", "text": last.group(1)}
        emit({"type": "item.completed", "item": item})
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
