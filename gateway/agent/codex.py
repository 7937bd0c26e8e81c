"""How codex is invoked: which binary, with which argv, whether it can reach a model, and
whether a configured or running program is codex at all.

Without an API key, a login or a configured provider, codex does not fail: offline it retries
"waiting for network" until the run's deadline. A clear 503 naming what is missing is better, so
the credentials are checked before a run is spawned. A stand-in agent configured in codex's
place (tests, custom wrappers) handles its own credentials.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.agent.events import is_thread_id

# config.py finds the binary here, and config.py stays importable by a bare python without the
# gateway's dependencies (tests/hostile/test_hardening_secrets.py runs it as another user):
# what needs grpc (the errors) is imported where it is used.
if TYPE_CHECKING:
    from gateway.config import Config

# codex's config.toml is read before every run, and the agent can write codex's home: only a
# regular file (a FIFO would block the loop until a writer came) of a sane size counts.
MAX_CONFIG_BYTES = 1024 * 1024

_CODEX_NAMES = ("codex", "codex.js")
_PROVIDER_LINE = re.compile(r"^\s*(model_provider|profile)\s*=", re.MULTILINE)
_KEY_NAMES = ("OPENAI_API_KEY", "CODEX_API_KEY")


def find_binary(configured: str | None, here: Path) -> Path:
    """The codex executable: `configured` (CODEX_GATEWAY_CODEX_BIN), else the project's npm
    install, else PATH.

    The native binary behind the npm shim is preferred: it starts faster and saves the ~44 MiB
    node process that the shim keeps resident.
    """
    if configured is not None:
        return (
            (here / configured)
            if "/" in configured
            else Path(shutil.which(configured) or configured)
        )
    project = Path(__file__).resolve().parents[2] / "node_modules"  # gateway/agent/codex.py
    native = sorted(project.glob("@openai/codex-linux-*/vendor/*/bin/codex"))
    for candidate in [*native, project / ".bin" / "codex"]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return Path(shutil.which("codex") or "codex")


def is_codex(binary: Path) -> bool:
    """The configured binary is the codex CLI itself, not a stand-in agent."""
    return binary.name in _CODEX_NAMES


def runs_an_agent(cmdline: Sequence[bytes]) -> bool:
    """A process's command line (/proc/<pid>/cmdline split at NULs) looks like codex or a
    stand-in agent: the program or its script names one."""
    return any(b"codex" in part or b"agent" in part for part in cmdline[:2])


def argv(
    config: Config,
    workspace: Path,
    model: str | None,
    resume_thread: str | None,
    *,
    fork_thread: str | None = None,
    output_schema: Path | None = None,
    images: Sequence[Path] = (),
    prompt: bool = True,
) -> list[str]:
    """`codex exec` for one attempt; the prompt goes to stdin (the final `-`).

    `resume_thread` continues a thread, `fork_thread` starts a new thread on a copy of one (at
    most one of them); `prompt=False` (a fork only) runs no turn. The exec-level options apply
    to `resume` and `fork` too when given before them (checked against codex 0.169.0).
    """
    args = [str(config.codex_bin), "exec", config.json_flag, "--color", "never"]
    args.append("--skip-git-repo-check")
    if config.unsafe_no_sandbox:
        args.append("--dangerously-bypass-approvals-and-sandbox")
    else:
        args += ["--sandbox", config.sandbox]
    args += ["--cd", str(workspace)]
    if model:
        args += ["--model", model]
    if output_schema is not None:
        args += ["--output-schema", str(output_schema)]
    for image in images:
        # `--image=F`, one per file: `--image <FILE>...` takes every value up to the next
        # option, so `--image F resume ...` would swallow `resume` (exit 2); and codex splits a
        # value on commas.
        if "," in str(image):
            from gateway.errors import AgentFailed  # see the imports

            raise AgentFailed(f"an image path codex would split: {image}", exit_code=None)
        args.append(f"--image={image}")
    args += config.extra_args
    stdin = ["-"] if prompt else []
    thread = resume_thread or fork_thread
    if thread:
        from gateway.errors import AgentFailed  # see the imports

        if resume_thread and fork_thread:
            raise AgentFailed("a run resumes a thread or forks one, not both", exit_code=None)
        if not is_thread_id(thread):  # checked where it entered; never an option here
            raise AgentFailed("refusing to continue a thread id that is not a UUID", exit_code=None)
        # `--`: what follows is positional whatever it looks like (codex's clap parser).
        args += ["resume" if resume_thread else "fork", "--", thread, *stdin]
    else:
        args += ["--", "-"]
    return args


def missing_credentials(
    codex_home: Path, child_env: Mapping[str, str], extra_args: Sequence[str]
) -> str | None:
    """None when codex can authenticate, else what to configure."""
    from gateway import regular_file  # see the imports

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


def check_credentials(config: Config, request_env: Mapping[str, str]) -> None:
    """Before a run: AgentUnavailable when the codex CLI (only it) cannot reach a model."""
    if not is_codex(config.codex_bin):
        return
    problem = missing_credentials(
        config.codex_home, {**config.child_env, **request_env}, config.extra_args
    )
    if problem is not None:
        from gateway.errors import AgentUnavailable  # see the imports

        raise AgentUnavailable(problem)
