#!/usr/bin/env python3
"""Fake codex that looks around: one agent_message, a JSON report of what it could reach.

Its prompt's lines ask: `probe:<path>` reads that file (`readable`, `error`, `content`: up to
64 KiB as text), `sleep:<seconds>` waits first, `write:<name>` creates that file in its working
directory. The report also holds its uid, gid, groups, working directory and HOME. Like codex,
SIGINT makes it exit 1 at once.
"""

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path


def emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def probe(path: str) -> dict[str, object]:
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(65_536)
    except OSError as exc:
        return {"path": path, "readable": False, "error": exc.__class__.__name__}
    return {"path": path, "readable": True, "content": data.decode(errors="replace")}


def main() -> int:
    prompt = sys.stdin.buffer.read().decode(errors="replace")  # codex reads stdin to EOF first
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(1))
    emit({"type": "thread.started", "thread_id": str(uuid.uuid4())})
    emit({"type": "turn.started"})
    probes = []
    written = []
    for line in prompt.splitlines():
        line = line.strip()
        if line.startswith("sleep:"):
            time.sleep(float(line[len("sleep:") :]))
        elif line.startswith("probe:"):
            probes.append(probe(line[len("probe:") :]))
        elif line.startswith("write:"):
            name = line[len("write:") :]
            try:
                with Path(name).open("w") as handle:
                    handle.write("written by the agent\n")
                written.append(name)
            except OSError as exc:
                written.append(f"{name}: {exc.__class__.__name__}")
    report = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "cwd": str(Path.cwd()),
        "home": os.environ.get("HOME"),
        "probes": probes,
        "written": written,
    }
    text = json.dumps(report)
    emit(
        {"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": text}}
    )
    emit({"type": "turn.completed", "usage": {"input_tokens": 1, "output_tokens": 1}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
