"""Secrets out of the environment block: the gateway re-executes itself without them.

`/proc/<pid>/environ` shows a process's initial environment to every process of its uid (an
agent, and every command codex runs, when no CODEX_GATEWAY_AGENT_USER is set), and clearing
`os.environ` does not change it. So when a secret variable (config.SECRET_VARIABLES) arrives in
the environment, `codex-gateway` writes the secrets into an anonymous in-memory file
(memfd_create: no name on any filesystem, nothing left on disk if the process dies), executes
the same interpreter and argv again with the secrets removed from the environment and the
file's descriptor number in CODEX_GATEWAY_SECRETS_FD, and the new image reads and closes it
before anything else starts. A temporary file would exist on disk, under a name, until it was
deleted (and for good after a crash); a pipe holds 64 KiB before its writer, the process about
to exec, would block. The `*_FILE` variables avoid the round trip altogether.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import MutableMapping

from gateway.config import SECRET_VARIABLES, ConfigError

HANDOVER_VARIABLE = "CODEX_GATEWAY_SECRETS_FD"


def reexec_without_secrets(environ: MutableMapping[str, str]) -> None:
    """Exec this command again without the secret variables, if any is set; else return."""
    found = {name: environ[name] for name in sorted(SECRET_VARIABLES) if name in environ}
    if not found or HANDOVER_VARIABLE in environ:
        return
    if not sys.executable or not sys.orig_argv:
        raise ConfigError(
            f"{', '.join(found)}: cannot re-execute without them (no interpreter path); "
            "give them as files with the *_FILE variables instead"
        )
    payload = json.dumps(found).encode()
    fd = os.memfd_create("codex-gateway-secrets", 0)  # inherited across exec (no MFD_CLOEXEC)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        clean = {name: value for name, value in environ.items() if name not in SECRET_VARIABLES}
        clean[HANDOVER_VARIABLE] = str(fd)
        os.execve(sys.executable, sys.orig_argv, clean)  # noqa: S606  # this same command
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"{', '.join(found)}: cannot re-execute without them: {exc}") from exc


def take_secrets(environ: MutableMapping[str, str]) -> dict[str, str]:
    """The secrets a previous image handed over (empty if none); the descriptor is closed."""
    raw = environ.pop(HANDOVER_VARIABLE, None)
    if raw is None:
        return {}
    try:
        fd = int(raw)
        with os.fdopen(fd, "rb") as handle:
            handle.seek(0)
            secrets = json.loads(handle.read())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{HANDOVER_VARIABLE}: cannot read the handed-over secrets") from exc
    if not isinstance(secrets, dict):
        raise ConfigError(f"{HANDOVER_VARIABLE}: cannot read the handed-over secrets")
    return {str(name): str(value) for name, value in secrets.items() if name in SECRET_VARIABLES}
