"""`python -m bench.hostile [--reduced] [--deadline-s 10] [--mib-lines 128] [--only CLASS...]`:
run the census in a temporary directory and print its table."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from bench.hostile.run import run_census
from bench.hostile.table import render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--reduced", action="store_true", help="a few inputs per class")
    parser.add_argument("--deadline-s", type=float, default=10.0, help="per-request deadline")
    parser.add_argument(
        "--mib-lines", type=int, default=128, help="~1 MiB lines per run in the memory attack"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="only the classes whose name starts with these words (timestamps, echoed, numbers, "
        "files, content, grpc, images, memory)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep the logs")
    args = parser.parse_args(argv)
    only = set(args.only) if args.only else None
    with tempfile.TemporaryDirectory(prefix="hostile-census-") as scratch:
        workdir = args.keep or Path(scratch)
        tallies, census = asyncio.run(
            run_census(
                workdir,
                reduced=args.reduced,
                deadline_s=args.deadline_s,
                mib_lines=args.mib_lines,
                only=only,
            )
        )
    print(render(tallies, (census.hwm_gateway_kib, census.hwm_bridge_kib)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
