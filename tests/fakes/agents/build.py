"""Builds tiny_agent.c, the near-zero-cost fake codex used by benchmarks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TINY_AGENT_SOURCE = Path(__file__).resolve().parent / "tiny_agent.c"


def build_tiny_agent(out_dir: Path) -> Path:
    """Compile tiny_agent.c into ``out_dir`` with ``cc -O2`` unless an up-to-date binary is there.

    Returns the binary's path. The binary is compiled under a temporary name and renamed, so
    concurrent builders never run a half-written file.
    """
    binary = out_dir / "tiny_agent"
    if binary.exists() and binary.stat().st_mtime >= TINY_AGENT_SOURCE.stat().st_mtime:
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".tiny_agent.{os.getpid()}.partial"
    try:
        subprocess.run(
            ["cc", "-O2", "-Wall", "-Wextra", "-o", str(partial), str(TINY_AGENT_SOURCE)],
            check=True,
            capture_output=True,
            text=True,
        )
        partial.replace(binary)
    finally:
        partial.unlink(missing_ok=True)
    return binary
