"""The agent's environment: the gateway's allow-listed variables plus a checked request `env`.

Request variables may not change what runs or where: names that steer the dynamic loader, the
interpreters codex or its shell start, the shell itself, codex's home, its model endpoint, or
proxies are refused, and the error names them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.config import ENV_NAME
from gateway.errors import InvalidRequest

_BLOCKED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "SHELL",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "IFS",
        "PS4",
        "PROMPT_COMMAND",
        "CDPATH",
        "GLOBIGNORE",
        "TMPDIR",
        "NODE_OPTIONS",
        "NODE_PATH",
        "PERLLIB",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "NLSPATH",
        "GLIBC_TUNABLES",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "ZDOTDIR",
        "INPUTRC",
        "TERMINFO",
    }
)
_BLOCKED_PREFIXES = (
    "LD_",
    "DYLD_",
    "PYTHON",
    "PERL5",
    "RUBY",
    "GEM_",
    "BUNDLE_",
    "NPM_CONFIG_",
    "GIT_",
    "CODEX_",
    "OPENAI_",
    "SESSION_WEBHOOK_",
    "MALLOC_",
    "RUST_",
    "BASH_FUNC_",
)
_PROXY = re.compile(r".*_PROXY", re.IGNORECASE)
MAX_ENV_ENTRIES = 256
MAX_ENV_VALUE_BYTES = 65_536


def blocked_reason(name: str) -> str | None:
    upper = name.upper()
    if upper in _BLOCKED_NAMES or _PROXY.fullmatch(upper):
        return "changes what runs or where"
    if upper.startswith(_BLOCKED_PREFIXES):
        return "changes what runs or where"
    return None


def check_request_env(env: Mapping[str, str]) -> dict[str, str]:
    """The request's env if every name is allowed; else InvalidRequest naming the bad ones."""
    if len(env) > MAX_ENV_ENTRIES:
        raise InvalidRequest(f"env has more than {MAX_ENV_ENTRIES} variables", field="env")
    invalid = sorted(name for name in env if not ENV_NAME.fullmatch(name))
    if invalid:
        raise InvalidRequest(
            f"env names must match [A-Za-z_][A-Za-z0-9_]*: {', '.join(map(repr, invalid))}",
            field="env",
        )
    blocked = sorted(name for name in env if blocked_reason(name))
    if blocked:
        raise InvalidRequest(
            "env variables not allowed (they change what runs or where): " + ", ".join(blocked),
            field="env",
        )
    for name, value in env.items():
        if "\0" in value or len(value.encode()) > MAX_ENV_VALUE_BYTES:
            raise InvalidRequest(f"env value of {name} is not allowed", field="env")
    return dict(env)


def child_environment(base: Mapping[str, str], request_env: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(request_env)
    return env
