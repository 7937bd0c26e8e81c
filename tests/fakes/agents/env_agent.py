#!/usr/bin/env python3
"""Fake codex: one turn whose agent_message is json.dumps(os.environ), its whole environment."""

import json
import os
import sys
import uuid


def thread_id(argv: list[str]) -> str:
    """The id after ``resume`` (and its ``--``), as ``codex exec ... resume -- <id> -`` keeps
    it; else a new one."""
    if "resume" in argv:
        after = argv[argv.index("resume") + 1 :]
        if after[:1] == ["--"]:
            after = after[1:]
        if after and after[0] != "-" and not after[0].startswith("--"):
            return after[0]
    return str(uuid.uuid4())


def emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main() -> int:
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    text = json.dumps(dict(os.environ))
    emit({"type": "thread.started", "thread_id": thread_id(sys.argv[1:])})
    emit({"type": "turn.started"})
    emit(
        {"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": text}}
    )
    emit(
        {
            "type": "turn.completed",
            "usage": {
                "input_tokens": 100,
                "cached_input_tokens": 0,
                "cache_write_input_tokens": 0,
                "output_tokens": 10,
                "reasoning_output_tokens": 0,
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
