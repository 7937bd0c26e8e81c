"""Test fakes: a scripted model server for the real codex CLI, and fault agents in its place."""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]

AGENTS_DIR = Path(__file__).resolve().parent / "agents"
"""Executable fault agents (``echo_agent.py``, ``hang_agent.py``...) and ``tiny_agent.c``."""

CODEX_BIN = (
    _ROOT / "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
)
"""The native codex 0.169.0 binary: starts faster than the shim and behaves the same."""

CODEX_SHIM = _ROOT / "node_modules/.bin/codex"
"""The npm shim (node), which runs CODEX_BIN and forwards INT/TERM/HUP to it."""
