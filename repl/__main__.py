"""The `codex-repl` entrypoint."""

from __future__ import annotations

import sys

from .cli import run_cli


def main() -> None:
    try:
        status = run_cli(sys.argv[1:])
    except KeyboardInterrupt:  # before the loop could catch it (while starting up)
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    main()
