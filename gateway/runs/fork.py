"""Forks: a new session on a copy of another session's codex thread (`codex exec fork`).

A fork is an ordinary run of a new session (every run field works: model, timeout, env,
metadata...), whose codex command forks the parent's thread instead of starting one; without a
prompt no turn runs, and the new session holds the forked thread for later prompts. The parent is
untouched: its meta, runs, logs and thread stay as they were. The runner checks the parent
(`Runner._fork_parent`) and holds it, as a run would, until codex has started the fork's thread,
so that no turn of the parent is under way while codex copies its rollout.
"""

from __future__ import annotations

import dataclasses

from gateway.errors import InvalidRequest
from gateway.runs.run import RunRequest
from gateway.sessions.model import Session

REFUSED_FIELDS = ("session_id", "resume_session_id")
"""Run fields a fork does not take: the path names the session, and the fork is a new one."""


def fork_request(parent: Session, given: RunRequest) -> RunRequest:
    """What a fork of `parent` runs: the given run, in a new session that takes the parent's
    workspace, model, objective, nudge prompt and secrecy unless the run gives its own (a secure
    parent's fork is secure), and the parent's metadata merged with the run's."""
    for name in REFUSED_FIELDS:
        if getattr(given, name) is not None:
            raise InvalidRequest(
                f"{name} cannot be given to a fork: the path names the session to fork, "
                "and the fork is a new session",
                field=name,
            )
    metadata = dict(parent.metadata)
    metadata.update(given.metadata or {})
    return dataclasses.replace(
        given,
        source="fork",
        fork_of=parent.id,
        model=given.model if given.model and given.model.strip() else parent.model,
        workspace=given.workspace if given.workspace is not None else parent.workspace,
        objective=given.objective or parent.objective or None,
        nudge_prompt=given.nudge_prompt or parent.nudge_prompt or None,
        secure=given.secure or parent.secure,
        metadata=metadata,
    )


def check_forkable(parent: Session) -> str:
    """The parent's codex thread, or InvalidRequest when it has none to fork."""
    if parent.codex_session_id is None:
        raise InvalidRequest(
            f"session {parent.id} has no codex thread to fork yet: none of its runs started "
            "one (run it first, or start a new session)",
            field="session_id",
        )
    return parent.codex_session_id
