"""An API key's restrictions on what its runs may use: `allowed_models` and `workspace_roots`
(docs/design/tenants.md, "Request path" 3).

Checked at admission (gateway/runs/admission.py), before anything is held, for the run's
effective model (the one asked for, else the session's, else the gateway's default) and its
workspace with every symlink resolved; and when a key creates or edits a trigger, for the
trigger's `cwd` and the model its fires will run. A run with no model at all (no default
configured: codex's own) is refused to a key with `allowed_models`, since which model that is
cannot be known here. A refusal is 403 naming the model or the workspace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from gateway.auth.keys import ApiKey
from gateway.errors import ModelNotAllowed, WorkspaceNotAllowed
from gateway.runs.workspace import within

CODEX_DEFAULT: Final = "(codex's default model)"


def check_model(key: ApiKey, model: str | None) -> None:
    """ModelNotAllowed unless `key` may run `model` (None: codex's own default)."""
    if key.allowed_models is None:
        return
    if model is None or model not in key.allowed_models:
        raise ModelNotAllowed(key.name, model or CODEX_DEFAULT)


def check_workspace(key: ApiKey, workspace: Path) -> None:
    """WorkspaceNotAllowed unless `workspace`, a real path (every symlink resolved, as
    `resolve_workspace` gives a run's), lies within one of the key's roots (resolved when the
    key file was read)."""
    roots = key.workspace_roots
    if roots is None:
        return
    if not within(workspace, roots):
        raise WorkspaceNotAllowed(key.name, str(workspace))


def _real(key: ApiKey, path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        raise WorkspaceNotAllowed(key.name, str(path)) from None


def check_triggers(
    key: ApiKey, entries: Iterable[Any], *, default_workspace: Path, default_model: str | None
) -> None:
    """Triggers a restricted key writes: each one's `cwd` (relative ones from the default
    workspace, as a fire takes them) and the gateway's default model its fires run."""
    if key.allowed_models is None and key.workspace_roots is None:
        return
    triggers = [entry for entry in entries if isinstance(entry, Mapping)]  # others: 400 later
    if triggers:
        check_model(key, default_model)  # every fire runs the gateway's default
    for entry in triggers:
        cwd = entry.get("cwd")
        if cwd is None or (isinstance(cwd, str) and not cwd.strip()):
            check_workspace(key, _real(key, default_workspace))
        elif isinstance(cwd, str) and "\0" not in cwd:
            check_workspace(key, _real(key, default_workspace / cwd.strip()))
