#!/usr/bin/env python3
"""Fake codex whose turn fails: error and turn.failed "boom from model", exit 1."""

import json
import sys
import uuid


def emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main() -> int:
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    emit({"type": "thread.started", "thread_id": str(uuid.uuid4())})
    emit({"type": "turn.started"})
    emit({"type": "error", "message": "boom from model"})
    emit({"type": "turn.failed", "error": {"message": "boom from model"}})
    return 1


if __name__ == "__main__":
    sys.exit(main())
