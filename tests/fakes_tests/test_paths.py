"""The paths ``tests.fakes`` exports point at real, runnable things."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fakes import AGENTS_DIR, CODEX_BIN, CODEX_SHIM


@pytest.mark.parametrize("codex", [CODEX_BIN, CODEX_SHIM], ids=["native", "shim"])
def test_codex_paths_run_codex_0_169_0(codex: Path) -> None:
    proc = subprocess.run(
        [str(codex), "--version"], capture_output=True, text=True, timeout=20, check=True
    )

    assert proc.stdout.strip() == "codex-cli 0.169.0"


def test_every_agent_is_an_executable_python3_script() -> None:
    agents = sorted(AGENTS_DIR.glob("*_agent.py"))

    assert [agent.name.removesuffix("_agent.py") for agent in agents] == [
        "bigevents",
        "counter",
        "crash",
        "echo",
        "empty",
        "endless",
        "env",
        "garbage",
        "hang",
        "hugeline",
        "probe",
        "slow",
        "thread",
        "turnfailed",
    ]
    for agent in agents:
        assert os.access(agent, os.X_OK), agent
        assert agent.read_text().startswith("#!/usr/bin/env python3\n"), agent
