"""Benchmarks of the gateway: `make bench` (see BENCHMARKS.md).

The benchmarks measure this checkout: its root and its generated code (`gen/`) go first on
`sys.path` here, and on `PYTHONPATH` for the gateway and probe processes they start, whatever
the virtualenv's editable install points to (several checkouts may share one .venv).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PATHS = [str(ROOT), str(ROOT / "gen")]
PYTHONPATH = ":".join(SOURCE_PATHS)
for _path in reversed(SOURCE_PATHS):
    if _path in sys.path:
        sys.path.remove(_path)
    sys.path.insert(0, _path)
