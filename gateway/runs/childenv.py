"""The agent's environment: the gateway's allow-listed variables plus a checked request `env`.

A request's variable names must match one of the allow patterns
(`CODEX_GATEWAY_REQUEST_ENV_ALLOW`, by default families of ordinary task variables such as
`TASK_*`): a deny-list of what changes what runs can never be complete (OPENSSL_CONF, LUA_INIT,
PAGER, GOFLAGS, ...). Below the allow-list lies a floor nobody can allow, whatever the patterns
say: names that steer the dynamic loader, the interpreters, compilers and package managers codex
or its shell start, the shell itself, pagers and editors, codex's home, its model endpoint, TLS
trust, or proxies. The error names the refused variables (the floor's first, a few at most).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase

from gateway.config import ENV_NAME
from gateway.errors import QUOTE_CHARS, InvalidRequest, quote

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
        # Programs that tools start on their own, and files they run or trust.
        "PAGER",
        "MANPAGER",
        "SYSTEMD_PAGER",
        "EDITOR",
        "VISUAL",
        "BROWSER",
        "LESSOPEN",
        "LESSCLOSE",
        "LESSKEY",
        "LESSEDIT",
        "SSH_ASKPASS",
        "SUDO_ASKPASS",
        "HISTFILE",
        "PSQLRC",
        "VIMINIT",
        "EXINIT",
        "MYVIMRC",
        "EMACSLOADPATH",
        "TCLLIBPATH",
        "TCL_LIBRARY",
        "PHPRC",
        "PHP_INI_SCAN_DIR",
        "CLASSPATH",
        "JDK_JAVA_OPTIONS",
        "MAVEN_OPTS",
        "GRADLE_OPTS",
        "SBT_OPTS",
        "ANT_OPTS",
        "KUBECONFIG",
        "GOFLAGS",
        "GOPROXY",
        "GOROOT",
        "GOPATH",
        "GOTOOLCHAIN",
        "GOENV",
        "GOPRIVATE",
        "GONOSUMDB",
        "GOINSECURE",
        "CC",
        "CXX",
        "CPP",
        "LD",
        "AR",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKEFILES",
        "CFLAGS",
        "CXXFLAGS",
        "CPPFLAGS",
        "LDFLAGS",
        "LOCPATH",
        "TZDIR",
        "TERMCAP",
        "GNUPGHOME",
        "SSH_AUTH_SOCK",
        "ELECTRON_RUN_AS_NODE",
        "VIRTUAL_ENV",
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
    "OPENSSL_",
    "NODE_",
    "YARN_",
    "PNPM_",
    "BUN_",
    "DENO_",
    "COREPACK_",
    "PIP_",
    "PIPX_",
    "UV_",
    "POETRY_",
    "CONDA",
    "CARGO_",
    "RUSTC",
    "RUSTUP_",
    "LUA_",
    "DOCKER_",
    "PODMAN_",
    "CONTAINERS_",
    "HELM_",
    "JAVA_",
    "DOTNET_",
    "COMPLUS_",
    "CORECLR_",
    "R_",
    "ERL_",
    "JULIA_",
    "XDG_",
    "SSL_",
    "GCONV",
    "GPG",
    "KRB5",
    "CURL_",
    "WGET",
)
_PROXY = re.compile(r".*_PROXY", re.IGNORECASE)
MAX_ENV_ENTRIES = 256
MAX_ENV_VALUE_BYTES = 65_536
MAX_NAMES_SHOWN = 8


def blocked_reason(name: str) -> str | None:
    upper = name.upper()
    if upper in _BLOCKED_NAMES or _PROXY.fullmatch(upper):
        return "changes what runs or where"
    if upper.startswith(_BLOCKED_PREFIXES):
        return "changes what runs or where"
    return None


def is_allowed(name: str, allow: Sequence[str]) -> bool:
    """Whether a request may set `name`: it matches an allow pattern and is above the floor."""
    return blocked_reason(name) is None and any(fnmatchcase(name, p) for p in allow)


def check_request_env(env: Mapping[str, str], allow: Sequence[str] | None = None) -> dict[str, str]:
    """The request's env if every name is allowed; else InvalidRequest naming the bad ones.

    `allow` is the allow-list of patterns; None checks the floor only (a trigger's env when it
    is written: the allow-list applies when it runs).
    """
    if len(env) > MAX_ENV_ENTRIES:
        raise InvalidRequest(f"env has more than {MAX_ENV_ENTRIES} variables", field="env")
    invalid = sorted(name for name in env if not ENV_NAME.fullmatch(name))
    if invalid:
        raise InvalidRequest(
            f"env names must match [A-Za-z_][A-Za-z0-9_]*: {_listed(invalid, quote)}", field="env"
        )
    blocked = sorted(name for name in env if blocked_reason(name))
    if blocked:
        raise InvalidRequest(
            "env variables not allowed (they change what runs or where): " + _listed(blocked),
            field="env",
        )
    if allow is not None:
        refused = sorted(name for name in env if not any(fnmatchcase(name, p) for p in allow))
        if refused:
            raise InvalidRequest(
                f"env variables not allowed: {_listed(refused)} (a request may set names "
                f"matching {', '.join(allow)[:200]}: CODEX_GATEWAY_REQUEST_ENV_ALLOW)",
                field="env",
            )
    for name, value in env.items():
        if "\0" in value or len(value.encode()) > MAX_ENV_VALUE_BYTES:
            raise InvalidRequest(f"env value of {_listed([name])} is not allowed", field="env")
    return dict(env)


def _listed(names: Sequence[str], show: Callable[[str], str] | None = None) -> str:
    """A few names, each cut short, and how many more there were."""
    shown = [
        show(n) if show else n if len(n) <= QUOTE_CHARS else quote(n)
        for n in names[:MAX_NAMES_SHOWN]
    ]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more else "")


def child_environment(base: Mapping[str, str], request_env: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(request_env)
    return env
