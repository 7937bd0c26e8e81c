#!/usr/bin/env python3
"""Fake codex that crashes: thread.started, then "fatal: simulated crash" on stderr and exit 3."""

import json
import sys
import uuid


def main() -> int:
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    sys.stdout.write(json.dumps({"type": "thread.started", "thread_id": str(uuid.uuid4())}) + "\n")
    sys.stdout.flush()
    sys.stderr.write("fatal: simulated crash\n")
    sys.stderr.flush()
    return 3


if __name__ == "__main__":
    sys.exit(main())
