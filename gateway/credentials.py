"""Whether codex has a way to reach a model, checked before a run is spawned.

Without an API key, a login or a configured provider, codex does not fail: offline it retries
"waiting for network" until the run's deadline. A clear 503 naming what is missing is better.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from gateway import regular_file
from gateway.errors import AgentUnavailable

# codex's config.toml is read before every run, and the agent can write codex's home: only a
# regular file (a FIFO would block the loop until a writer came) of a sane size counts.
MAX_CONFIG_BYTES = 1024 * 1024

_PROVIDER_LINE = re.compile(r"^\s*(model_provider|profile)\s*=", re.MULTILINE)
_KEY_NAMES = ("OPENAI_API_KEY", "CODEX_API_KEY")


def missing_credentials(
    codex_home: Path, child_env: Mapping[str, str], extra_args: Sequence[str]
) -> str | None:
    """None when codex can authenticate, else what to configure."""
    if any(child_env.get(name, "").strip() for name in _KEY_NAMES):
        return None
    if (codex_home / "auth.json").is_file():
        return None
    if any("model_provider" in arg or arg in ("--oss", "--profile", "-p") for arg in extra_args):
        return None
    try:
        raw = regular_file.read(codex_home / "config.toml", MAX_CONFIG_BYTES, follow=True)
    except OSError:  # missing, or not a regular file within the cap (NotRegularFile)
        raw = b""
    config = raw.decode("utf-8", errors="replace")
    if _PROVIDER_LINE.search(config):
        return None
    return (
        "codex has no model credentials: set OPENAI_API_KEY (or CODEX_API_KEY) for the gateway, "
        f"run `codex login` with CODEX_HOME={codex_home}, or configure a model_provider in "
        f"{codex_home / 'config.toml'}"
    )


def check_credentials(
    codex_bin: Path, codex_home: Path, child_env: Mapping[str, str], extra_args: Sequence[str]
) -> None:
    """Only for the codex CLI itself: a stand-in agent configured in its place (tests, custom
    wrappers) handles its own credentials."""
    if codex_bin.name not in ("codex", "codex.js"):
        return
    problem = missing_credentials(codex_home, child_env, extra_args)
    if problem is not None:
        raise AgentUnavailable(problem)
