#!/usr/bin/env python3
"""Fake codex that never finishes its turn: thread.started, turn.started, then sleeps forever.

Like codex, SIGINT makes it exit 1 at once (killing its child, if any); SIGTERM kills it.
FAKE_AGENT_IGNORE_SIGINT=1   ignore SIGINT, so only SIGKILL stops it. A child spawned after this
                             inherits the ignored SIGINT too.
FAKE_AGENT_SPAWN_CHILD=1     spawn ``sleep 1000`` in the agent's own process group and write the
                             child's pid to the file named by FAKE_AGENT_CHILD_PIDFILE before
                             turn.started, so a test can check that nothing was orphaned.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

child = None


def emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def interrupted(signum: int, frame: object) -> None:
    if child is not None:
        child.kill()
        child.wait()
    os._exit(1)


def main() -> int:
    global child
    sys.stdin.buffer.read()  # codex reads its stdin to EOF before it starts
    if os.environ.get("FAKE_AGENT_IGNORE_SIGINT") == "1":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGINT, interrupted)
    emit({"type": "thread.started", "thread_id": str(uuid.uuid4())})
    if os.environ.get("FAKE_AGENT_SPAWN_CHILD") == "1":
        child = subprocess.Popen(
            ["sleep", "1000"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # like codex's commands, it does not hold our stdout open
            stderr=subprocess.DEVNULL,
        )
        pidfile = os.environ.get("FAKE_AGENT_CHILD_PIDFILE")
        if pidfile:
            partial = Path(pidfile + ".partial")
            partial.write_text(f"{child.pid}\n")
            partial.replace(pidfile)  # readers never see a half-written file
    emit({"type": "turn.started"})
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
