"""`make cluster`: a local PostgreSQL and two gateway replicas on loopback ports, to see cluster
mode working; Ctrl-C (or SIGTERM) stops everything and removes what it wrote."""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from devcluster.postgres import PostgresServer, free_port, running_postgres
from devcluster.replicas import LocalReplica

START_TIMEOUT_S = 60.0
# Short, so that a replica killed by hand is seen reaped within seconds (production: 30 s).
LEASE_MS = 5000


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    parser.add_argument("--replicas", type=int, default=2, help="how many (default 2)")
    parser.add_argument(
        "--rest-port", type=int, default=4001, help="the first replica's REST port (0: any free)"
    )
    parser.add_argument(
        "--grpc-port", type=int, default=50061, help="the first replica's gRPC port (0: any free)"
    )
    parser.add_argument("--lease-ms", type=int, default=LEASE_MS, help="replica lease")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    base = Path(tempfile.mkdtemp(prefix="codex-gateway-cluster-"))
    replicas = [
        LocalReplica(
            f"replica-{n}",
            base / f"replica-{n}",
            rest_port=args.rest_port + n - 1 if args.rest_port else free_port(),
            grpc_port=args.grpc_port + n - 1 if args.grpc_port else free_port(),
        )
        for n in range(1, args.replicas + 1)
    ]
    try:
        with running_postgres() as server:
            try:
                return serve(server, replicas, args.lease_ms)
            finally:
                # Once is enough: a second Ctrl-C must not leave a replica or the server behind.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                for replica in replicas:  # before the database they deregister from
                    replica.stop()
    except _Stop as stop:
        say(f"{stop}: stopped")
        return 0
    except RuntimeError as exc:
        say(str(exc))
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


def serve(server: PostgresServer, replicas: list[LocalReplica], lease_ms: int) -> int:
    """Start the replicas, say where they are, and wait: for a signal (_Stop), or for a replica
    to exit (1)."""
    database_url = server.dsn()
    say(f"PostgreSQL {database_url} (data in {server.data}, pid {server.pid()})")
    token = secrets.token_urlsafe(24)
    for replica in replicas:
        replica.start(database_url, token, lease_ms)
    for replica in replicas:
        replica.wait_healthy(START_TIMEOUT_S)
        say(
            f"{replica.replica_id}: REST {replica.url}  gRPC {replica.target}  "
            f"log {replica.log_path}"
        )
    first, last = replicas[0], replicas[-1]
    say(
        f"ready: {len(replicas)} replicas (lease {lease_ms} ms). Try:\n"
        f"  curl -s {first.url}/status\n"
        f"  curl -s {first.url}/completion -H 'content-type: application/json' "
        '-d \'{"prompt": "say hello"}\'\n'
        f"  curl -s {last.url}/sessions\n"
        "Ctrl-C stops everything."
    )
    while all(replica.running() for replica in replicas):
        time.sleep(0.5)
    gone = next(replica for replica in replicas if not replica.running())
    say(f"{gone.replica_id} exited; stopping the others. Its log:\n{gone.log_tail()}")
    return 1


def say(text: str) -> None:
    print(f"cluster: {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
