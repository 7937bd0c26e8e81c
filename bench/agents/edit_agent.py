#!/usr/bin/env python3
"""Fake codex that edits files of its workspace: for the changes of a run (bench/changes.py).

Reads stdin to EOF, prints thread.started, appends a line to FAKE_AGENT_EDITS (default 50) files
`d<NN>/f<NNNNN>.txt` of its working directory (spread over as many directories), then
turn.completed. Exit 0. Stdlib only.
"""

import json
import os
import sys
import uuid
from pathlib import Path

FILES_PER_DIR = 100


def main() -> int:
    sys.stdin.buffer.read()
    out = sys.stdout
    out.write(json.dumps({"type": "thread.started", "thread_id": str(uuid.uuid4())}) + "\n")
    edits = int(os.environ.get("FAKE_AGENT_EDITS", "50"))
    for n in range(edits):
        index = n * FILES_PER_DIR * 2 + n  # one file in every other directory
        path = Path(f"d{index // FILES_PER_DIR:02d}") / f"f{index:05d}.txt"
        with path.open("a") as file:
            file.write(f"edited by run {os.getpid()}\n")
    out.write(json.dumps({"type": "turn.started"}) + "\n")
    item = {"id": "item_0", "type": "agent_message", "text": f"edited {edits} files"}
    out.write(json.dumps({"type": "item.completed", "item": item}) + "\n")
    usage = {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 1}
    out.write(json.dumps({"type": "turn.completed", "usage": usage}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
