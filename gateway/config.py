"""Configuration: one frozen object built from the environment at the entrypoint.

Every variable is declared once in gateway/settings.py (kind, default, bounds) and read here,
through that declaration, and nowhere else. A bad value stops startup with a `ConfigError` naming
the variable.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import pwd
import re
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from bridge.logformat import LOG_FORMATS
from gateway.agent import codex
from gateway.settings import (
    AMBIENT,
    BY_NAME,
    DEFAULT_OUTPUT_BYTES_PER_S,
    DEFAULT_OUTPUT_LINES_PER_S,
    RAW,
    Kind,
    Setting,
)

# Declared with the table; imported from here by the rest of the gateway, as before.
from gateway.settings import DEFAULT_MAX_ANSWER_BYTES as DEFAULT_MAX_ANSWER_BYTES
from gateway.settings import DEFAULT_REQUEST_ENV_ALLOW as DEFAULT_REQUEST_ENV_ALLOW
from gateway.settings import SECRET_VARIABLES as SECRET_VARIABLES

if TYPE_CHECKING:
    from bridge.tracing import TracingSettings

# CODEX_GATEWAY_LOG_LEVEL 0..3.
_LOGGING_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}
SANDBOX_MODES = ("read-only", "workspace-write", "danger-full-access")
JSON_FLAGS = ("--json", "--experimental-json")
# What codex and the shell it runs need from the gateway's own environment.
_CHILD_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "CODEX_HOME",
        "OPENAI_API_KEY",
        "CODEX_API_KEY",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "CODEX_CA_CERTIFICATE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NO_PROXY",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "CODEX_SANDBOX_NETWORK_DISABLED",
    }
)


class StartupError(Exception):
    """The gateway cannot start; the message says why (the command exits 2 with it)."""


class ConfigError(StartupError, ValueError):
    """A configuration variable has a value the gateway cannot use."""


@dataclass(frozen=True)
class WatcherConfig:
    paths: tuple[Path, ...] = ()
    pattern: str = "**/*"
    prompt_file: Path | None = None
    debounce_ms: int = 750
    poll_ms: int = 1000
    force_polling: bool = False
    skip_initial_scan: bool = True


@dataclass(frozen=True)
class TriggerConfig:
    default_file: Path = Path(".codex-monitor-triggers.json")
    extra_files: tuple[Path, ...] = ()
    # trigger_file arguments must resolve inside one of these
    roots: tuple[Path, ...] = ()
    # <dir>/*/triggers.json are discovered and scheduled (CODEX_HOME/sessions)
    discovery_dir: Path | None = None
    disabled: bool = False
    debounce_ms: int = 250
    # a trigger file over either cap is refused (reported in /status, 400 over the API)
    max_file_bytes: int = 4 * 1024 * 1024
    max_per_file: int = 10_000


@dataclass(frozen=True)
class WebhookConfig:
    url: str | None = None
    timeout_ms: int = 5000
    auth_bearer: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    secret: str | None = None
    # delivery attempts per webhook before it counts as failed (kept on disk either way)
    max_attempts: int = 8
    retry_base_ms: int = 500
    retry_max_ms: int = 60_000


@dataclass(frozen=True)
class AgentUser:
    """The account agents run as (CODEX_GATEWAY_AGENT_USER), resolved at startup."""

    name: str
    uid: int
    gid: int
    home: Path


@dataclass(frozen=True)
class BridgeConfig:
    """The REST bridge's guards: which hosts it answers for (bridge/guard.py) and what one
    client may hold of it before sending a request (bridge/connections.py)."""

    # Host names served besides loopback and the bound address; "*" serves any.
    allowed_hosts: tuple[str, ...] = ()
    # With an API token set the Host check is this; without one it is always on.
    host_check_with_token: bool = True
    header_timeout_ms: int = 10_000
    max_header_bytes: int = 32_768
    max_headers: int = 100
    max_connections: int = 1000
    request_read_timeout_ms: int = 30_000

    def check_host(self, authenticates: bool) -> bool:
        return not authenticates or self.host_check_with_token


@dataclass(frozen=True)
class ClusterConfig:
    """Cluster mode (docs/design/cluster-mode.md): replicas coordinated through PostgreSQL."""

    database_url: str
    replica_id: str
    advertise_addr: str
    token: str | None = None
    # Runs at once across the cluster; 0: no cluster-wide limit.
    max_concurrent: int = 0
    lease_ms: int = 30_000


@dataclass(frozen=True)
class Config:
    """Everything the gateway process needs, with units in the names."""

    bind: str = "127.0.0.1"
    port: int = 4000
    grpc_port: int = 50051
    max_body_bytes: int = 1_048_576
    # A run's images (README, "Images"): how many, and the size of each as decoded or read.
    max_images: int = 16
    max_image_bytes: int = 10 * 1_048_576
    max_concurrent: int = 2
    timeout_ms: int = 120_000
    max_timeout_ms: int = 1_800_000
    # The stall watchdog (gateway/runs/watchdog.py): a run whose codex is silent this long, no
    # command of its own running, is stopped as stalled. 0: no watchdog.
    stall_timeout_ms: int = 300_000
    default_model: str | None = None
    extra_args: tuple[str, ...] = ()
    json_flag: str = "--json"
    log_level: int = 1
    # CODEX_GATEWAY_LOG_FORMAT: "text" (human-readable) or "json" (one object per line).
    log_format: str = "text"
    max_retries: int = 0
    retry_delay_ms: int = 2000
    retry_on_empty: bool = False
    codex_bin: Path = Path("codex")
    codex_home: Path = Path.home() / ".codex"
    session_dirs: tuple[Path, ...] = ()
    secure_session_dir: Path = Path(".codex-gateway-sessions/secure")
    secure_token: str | None = None
    api_token: str | None = None
    # CODEX_GATEWAY_API_KEYS_FILE: API keys with tenants, scopes and quotas (gateway/auth/).
    api_keys_file: Path | None = None
    # CODEX_GATEWAY_AUDIT_FILE: one JSON line per mutating call (gateway/auth/audit.py), rotated
    # at audit_max_bytes keeping audit_backups older files; None: no audit log.
    audit_file: Path | None = None
    audit_max_bytes: int = 10 * 1024 * 1024
    audit_backups: int = 5
    metrics_public: bool = False
    # CODEX_GATEWAY_METRICS_PORT: GET /metrics on a port of its own too (served by the bridge
    # process, which has both halves of the scrape); 0: not served.
    metrics_port: int = 0
    # CODEX_GATEWAY_METRICS=false: nothing recorded (the benchmark's baseline, bench/completion.py).
    metrics_enabled: bool = True
    default_tail_lines: int = 200
    max_tail_lines: int = 2000
    signal_context_chars: int = 160
    # What one stalled client may hold queued (a tail follower, a streamed completion) before
    # it is told it lagged and dropped; and the size of one answer (a run's result, a session's
    # detail), kept well under gRPC's 64 MiB message limit.
    follower_buffer_bytes: int = 8 * 1024 * 1024
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    default_workspace: Path = Path()
    workspace_roots: tuple[Path, ...] = ()
    sandbox: str = "workspace-write"
    unsafe_no_sandbox: bool = False
    system_prompt_file: Path = Path("PROMPT.md")
    system_prompt_disabled: bool = False
    # The allow-listed part of the gateway's environment that the agent inherits.
    child_env: Mapping[str, str] = field(default_factory=dict)
    # Glob patterns (case-sensitive) a request `env` name must match; the floor in
    # gateway/runs/childenv.py is refused whatever they say.
    request_env_allow: tuple[str, ...] = DEFAULT_REQUEST_ENV_ALLOW
    stop_grace_ms: int = 3000
    shutdown_grace_ms: int = 10_000
    max_line_bytes: int = 1_048_576
    # The output budget (gateway/agent/budget.py): lines and bytes of agent output the gateway
    # takes a second, all agents together (0: not limited).
    output_lines_per_s: int = DEFAULT_OUTPUT_LINES_PER_S
    output_bytes_per_s: int = DEFAULT_OUTPUT_BYTES_PER_S
    stderr_tail_bytes: int = 65_536
    # Where runs' scratch directories go (gateway/runs/scratch.py); None: the system's temp dir.
    scratch_root: Path | None = None
    # Agents run this many steps nicer than the gateway (capped at nice 19), so that a machine
    # busy with agents still answers health checks, cancels and tails at once. 0 leaves them
    # equal. (By default the lowest priority: they still take every CPU nothing else wants.)
    agent_nice: int = 19
    watcher: WatcherConfig = field(default_factory=WatcherConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    triggers: TriggerConfig = field(default_factory=lambda: TriggerConfig())
    # CODEX_GATEWAY_AGENT_USER: agents run as this user (the gateway must be root to switch).
    agent_user: AgentUser | None = None
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    # None: the embedded file mode.
    cluster: ClusterConfig | None = None
    # None: tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT): no SDK, no exporter, no spans.
    tracing: TracingSettings | None = None
    # The values as set of the variables GET / shows so: the reference's "env" block echoes
    # some, and a few have no effective value of their own (gateway/settings.py, RAW).
    raw_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def authenticates(self) -> bool:
        """Calls need a key: an API token or a key file is configured."""
        return self.api_token is not None or self.api_keys_file is not None

    @property
    def primary_session_dir(self) -> Path:
        return self.session_dirs[0]

    @property
    def logging_level(self) -> int:
        """CODEX_GATEWAY_LOG_LEVEL (0 quiet .. 3 verbose) as a `logging` level."""
        return _LOGGING_LEVELS[self.log_level]

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, cwd: Path | None = None) -> Config:
        """Build the configuration; raise ConfigError naming the first bad variable."""
        env = _Env(environ)
        here = (cwd or Path.cwd()).resolve()
        codex_home = Path(
            env.text("CODEX_GATEWAY_CODEX_HOME")
            or env.text("CODEX_HOME")
            or str(Path(env.text("HOME") or str(Path.home())) / ".codex")
        )
        state = state_dir(env, here)
        session_dirs = _dedupe(
            [here / p for p in env.names("CODEX_GATEWAY_SESSION_DIRS")]
            + [here / p for p in env.names("CODEX_GATEWAY_SESSION_DIR")]
        ) or (state / "sessions",)
        secure_dir = here / (env.text("CODEX_GATEWAY_SECURE_SESSION_DIR") or state / "secure")
        agent_user = _agent_user(env)
        default_workspace = _default_workspace(env, here)
        roots = tuple((here / p).resolve() for p in env.names("CODEX_GATEWAY_WORKSPACE_ROOTS")) or (
            default_workspace,
        )
        sandbox = env.text("CODEX_GATEWAY_SANDBOX") or "workspace-write"
        if sandbox not in SANDBOX_MODES:
            raise ConfigError(f"CODEX_GATEWAY_SANDBOX must be one of {', '.join(SANDBOX_MODES)}")
        json_flag = (env.text("CODEX_GATEWAY_JSON_FLAG") or "--json").strip()
        if json_flag not in JSON_FLAGS:
            raise ConfigError(f"CODEX_GATEWAY_JSON_FLAG must be one of {', '.join(JSON_FLAGS)}")
        try:
            extra_args = tuple(shlex.split(env.text("CODEX_GATEWAY_EXTRA_ARGS") or ""))
        except ValueError as exc:
            raise ConfigError(f"CODEX_GATEWAY_EXTRA_ARGS: {exc}") from exc
        max_timeout_ms = env.integer("CODEX_GATEWAY_MAX_TIMEOUT_MS")
        bind = env.text("CODEX_GATEWAY_BIND") or "127.0.0.1"
        grpc_port = env.integer("CODEX_GATEWAY_GRPC_PORT")
        return cls(
            bind=bind,
            port=env.integer("CODEX_GATEWAY_PORT"),
            grpc_port=grpc_port,
            max_body_bytes=env.integer("CODEX_GATEWAY_MAX_BODY_BYTES"),
            max_images=env.integer("CODEX_GATEWAY_MAX_IMAGES"),
            max_image_bytes=env.integer("CODEX_GATEWAY_MAX_IMAGE_BYTES"),
            max_concurrent=env.integer("CODEX_GATEWAY_MAX_CONCURRENT"),
            timeout_ms=min(env.integer("CODEX_GATEWAY_TIMEOUT_MS"), max_timeout_ms),
            max_timeout_ms=max_timeout_ms,
            stall_timeout_ms=env.integer("CODEX_GATEWAY_STALL_TIMEOUT_MS"),
            default_model=_model(env.text("CODEX_GATEWAY_DEFAULT_MODEL")),
            extra_args=extra_args,
            json_flag=json_flag,
            log_level=env.integer("CODEX_GATEWAY_LOG_LEVEL"),
            log_format=_log_format(env.text("CODEX_GATEWAY_LOG_FORMAT")),
            max_retries=env.integer("CODEX_GATEWAY_MAX_RETRIES"),
            retry_delay_ms=env.integer("CODEX_GATEWAY_RETRY_DELAY_MS"),
            retry_on_empty=env.flag("CODEX_GATEWAY_RETRY_ON_EMPTY"),
            codex_bin=codex.find_binary(env.text("CODEX_GATEWAY_CODEX_BIN"), here),
            codex_home=codex_home,
            session_dirs=session_dirs,
            secure_session_dir=secure_dir,
            secure_token=env.secret("CODEX_GATEWAY_SECURE_TOKEN"),
            api_token=env.secret("CODEX_GATEWAY_API_TOKEN"),
            api_keys_file=_optional_path(here, env.text("CODEX_GATEWAY_API_KEYS_FILE")),
            audit_file=_optional_path(here, env.text("CODEX_GATEWAY_AUDIT_FILE")),
            audit_max_bytes=env.integer("CODEX_GATEWAY_AUDIT_MAX_BYTES"),
            audit_backups=env.integer("CODEX_GATEWAY_AUDIT_BACKUPS"),
            metrics_public=env.flag("CODEX_GATEWAY_METRICS_PUBLIC"),
            metrics_port=env.integer("CODEX_GATEWAY_METRICS_PORT"),
            metrics_enabled=env.flag("CODEX_GATEWAY_METRICS"),
            default_tail_lines=env.integer("CODEX_GATEWAY_DEFAULT_TAIL_LINES"),
            max_tail_lines=env.integer("CODEX_GATEWAY_MAX_TAIL_LINES"),
            signal_context_chars=env.integer("CODEX_GATEWAY_SIGNAL_CONTEXT"),
            follower_buffer_bytes=env.integer("CODEX_GATEWAY_FOLLOWER_BUFFER_BYTES"),
            max_answer_bytes=env.integer("CODEX_GATEWAY_MAX_ANSWER_BYTES"),
            default_workspace=default_workspace,
            workspace_roots=roots,
            sandbox=sandbox,
            unsafe_no_sandbox=env.flag("CODEX_UNSAFE_ALLOW_NO_SANDBOX"),
            system_prompt_file=here / (env.text("CODEX_SYSTEM_PROMPT_FILE") or "PROMPT.md"),
            system_prompt_disabled=env.flag("CODEX_DISABLE_DEFAULT_PROMPT"),
            child_env={
                **_child_env(environ, env.names("CODEX_GATEWAY_CHILD_ENV")),
                **_agent_user_env(env, agent_user),
                "CODEX_HOME": str(codex_home),
            },
            request_env_allow=_env_patterns(env.names("CODEX_GATEWAY_REQUEST_ENV_ALLOW")),
            stop_grace_ms=env.integer("CODEX_GATEWAY_STOP_GRACE_MS"),
            shutdown_grace_ms=env.integer("CODEX_GATEWAY_SHUTDOWN_GRACE_MS"),
            max_line_bytes=env.integer("CODEX_GATEWAY_MAX_LINE_BYTES"),
            output_lines_per_s=env.integer("CODEX_GATEWAY_OUTPUT_LINES_PER_S"),
            output_bytes_per_s=env.integer("CODEX_GATEWAY_OUTPUT_BYTES_PER_S"),
            agent_nice=env.integer("CODEX_GATEWAY_AGENT_NICE"),
            watcher=_watcher(env, here),
            webhook=_webhook(env),
            triggers=_triggers(env, here, codex_home, state),
            agent_user=agent_user,
            bridge=_bridge(env),
            cluster=_cluster(env, bind, grpc_port),
            tracing=_tracing(env),
            raw_env={name: env.raw(name) for name in RAW},
        )


def _optional_path(here: Path, value: str | None) -> Path | None:
    return here / value if value is not None else None


def _tracing(env: _Env) -> TracingSettings | None:
    endpoint = env.text("OTEL_EXPORTER_OTLP_ENDPOINT")
    traces_endpoint = env.text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    service_name = env.text("OTEL_SERVICE_NAME") or "codex-gateway"
    headers = env.secret("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.secret(
        "OTEL_EXPORTER_OTLP_HEADERS"
    )
    if endpoint is None and traces_endpoint is None:
        return None
    # Imported here: only tracing needs OpenTelemetry (the configuration is also read by tools
    # that run without the gateway's dependencies).
    from bridge.tracing import TracingSettings

    try:
        return TracingSettings(endpoint, traces_endpoint, service_name, headers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _log_format(value: str | None) -> str:
    log_format = (value or "text").strip().lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"CODEX_GATEWAY_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    return log_format


REPLICA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})")


def _cluster(env: _Env, bind: str, grpc_port: int) -> ClusterConfig | None:
    url = env.secret("CODEX_GATEWAY_DATABASE_URL")
    if url is None:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "CODEX_GATEWAY_DATABASE_URL must be a postgresql:// URL "
            "(unset it for the embedded file mode)"
        )
    # Imported here: only cluster mode needs the driver (the configuration is also read by
    # tools that run without the gateway's dependencies).
    import psycopg
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's reason quotes the URL, password included: not repeated here.
        raise ConfigError(
            "CODEX_GATEWAY_DATABASE_URL is not a valid PostgreSQL connection URL "
            "(postgresql://user:password@host:port/database?option=value)"
        ) from None
    replica_id = env.text("CODEX_GATEWAY_REPLICA_ID") or socket.gethostname()
    if not REPLICA_ID.fullmatch(replica_id):
        raise ConfigError(
            "CODEX_GATEWAY_REPLICA_ID must be 1-63 letters, digits, '.', '_' or '-' "
            f"(got {replica_id[:80]!r})"
        )
    advertise = env.text("CODEX_GATEWAY_ADVERTISE_ADDR")
    if advertise is None:
        if bind in ("0.0.0.0", "::"):  # noqa: S104  # a comparison
            raise ConfigError(
                "CODEX_GATEWAY_ADVERTISE_ADDR: set it to the host:port where other replicas "
                f"reach this one (the gateway binds every address, {bind})"
            )
        host = f"[{bind}]" if ":" in bind else bind
        advertise = f"{host}:{grpc_port}"
    elif not _ADDRESS.fullmatch(advertise) or not 0 < int(advertise.rsplit(":", 1)[1]) < 65536:
        raise ConfigError(f"CODEX_GATEWAY_ADVERTISE_ADDR must be host:port (got {advertise!r})")
    token = env.secret("CODEX_GATEWAY_CLUSTER_TOKEN")
    if token is None and env.text("CODEX_GATEWAY_API_KEYS_FILE") is not None:
        # A forwarded call names its caller; only the cluster token makes that trusted.
        raise ConfigError(
            "CODEX_GATEWAY_CLUSTER_TOKEN is required in cluster mode with "
            "CODEX_GATEWAY_API_KEYS_FILE"
        )
    if token is None and not (_loopback(bind) and _loopback(advertise.rsplit(":", 1)[0])):
        raise ConfigError(
            "CODEX_GATEWAY_CLUSTER_TOKEN is required in cluster mode unless every replica "
            "binds and advertises a loopback address"
        )
    return ClusterConfig(
        database_url=url,
        replica_id=replica_id,
        advertise_addr=advertise,
        token=token,
        max_concurrent=env.integer("CODEX_GATEWAY_CLUSTER_MAX_CONCURRENT"),
        lease_ms=env.integer("CODEX_GATEWAY_REPLICA_LEASE_MS"),
    )


def _loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Env:
    """Typed reads of the variables declared in gateway/settings.py (their defaults and bounds
    are the declaration's); an empty value means unset. Reading an undeclared variable, or one
    as another kind than declared, is a programming error (LookupError)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _value(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def raw(self, name: str) -> str:
        """The value as set (GET / shows a few so), whatever its kind."""
        _declared(name)
        return self._environ.get(name, "")

    def text(self, name: str) -> str | None:
        if name not in AMBIENT:
            _declared(name, Kind.TEXT)
        return self._value(name)

    def secret(self, name: str) -> str | None:
        """A secret from `name`, or from the file that `name`_FILE names (its trailing newline
        stripped), so that it need not sit in the gateway's environment (see __main__.py)."""
        _declared(name, Kind.SECRET)
        file_name = f"{name}_FILE"
        path = self._value(file_name)
        if path is None:
            return self._value(name)
        if self._value(name) is not None:
            raise ConfigError(f"set {name} or {file_name}, not both")
        try:
            value = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"{file_name}: cannot read {path}: {reason}") from None
        return value.strip() or None

    def names(self, name: str) -> list[str]:
        separators = _declared(name, Kind.LIST).separators
        raw = self._value(name) or ""
        parts = re.split(f"[{re.escape(separators)}]", raw)
        return [part.strip() for part in parts if part.strip()]

    def integer(self, name: str) -> int:
        setting = _declared(name, Kind.INTEGER)
        minimum, maximum = setting.minimum, setting.maximum
        raw = self._value(name)
        if raw is None:
            return cast(int, setting.default)
        if not re.fullmatch(r"[+-]?\d+", raw):
            raise ConfigError(f"{name} must be a whole number, got {raw!r}")
        value = int(raw)
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, got {raw!r}")
        return value

    def flag(self, name: str) -> bool:
        setting = _declared(name, Kind.FLAG)
        raw = self._value(name)
        if raw is None:
            return cast(bool, setting.default)
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def _declared(name: str, kind: Kind | None = None) -> Setting:
    setting = BY_NAME.get(name)
    if setting is None or (kind is not None and setting.kind is not kind):
        as_kind = "" if kind is None else f" as a {kind.value} variable"
        raise LookupError(f"{name} is not declared{as_kind} in gateway/settings.py")
    return setting


def _dedupe(paths: list[Path]) -> tuple[Path, ...]:
    seen: dict[Path, None] = {}
    for path in paths:
        seen.setdefault(path.resolve(), None)
    return tuple(seen)


def _model(raw: str | None) -> str | None:
    if raw is not None and not MODEL_NAME.fullmatch(raw):
        raise ConfigError(f"CODEX_GATEWAY_DEFAULT_MODEL is not a valid model name: {raw!r}")
    return raw


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")


def _default_workspace(env: _Env, here: Path) -> Path:
    raw = env.text("CODEX_GATEWAY_DEFAULT_WORKSPACE")
    if raw is None:
        documented = Path("/workspace")
        return documented if documented.is_dir() else here
    path = (here / raw).resolve()
    if not path.is_dir():
        raise ConfigError(f"CODEX_GATEWAY_DEFAULT_WORKSPACE is not a directory: {raw}")
    return path


def _child_env(environ: Mapping[str, str], extra_names: list[str]) -> dict[str, str]:
    leaked = sorted(SECRET_VARIABLES.intersection(extra_names))
    if leaked:
        raise ConfigError(f"CODEX_GATEWAY_CHILD_ENV must not name gateway secrets: {leaked}")
    for name in extra_names:
        if not ENV_NAME.fullmatch(name):
            raise ConfigError(f"CODEX_GATEWAY_CHILD_ENV has an invalid name: {name!r}")
    allowed = _CHILD_ENV_NAMES.union(extra_names)
    return {
        name: value
        for name, value in environ.items()
        if name in allowed or (name.startswith("LC_") and ENV_NAME.fullmatch(name))
    }


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_PATTERN = re.compile(r"[A-Za-z0-9_*?]+")


def _env_patterns(raw: list[str]) -> tuple[str, ...]:
    for pattern in raw:
        if not _ENV_PATTERN.fullmatch(pattern):
            raise ConfigError(
                "CODEX_GATEWAY_REQUEST_ENV_ALLOW: patterns are names with * and ?, "
                f"got {pattern[:64]!r}"
            )
    return tuple(raw) or DEFAULT_REQUEST_ENV_ALLOW


def _watcher(env: _Env, here: Path) -> WatcherConfig:
    prompt_file = env.text("CODEX_GATEWAY_WATCH_PROMPT_FILE")
    return WatcherConfig(
        paths=tuple(here / p for p in env.names("CODEX_GATEWAY_WATCH_PATHS")),
        pattern=env.text("CODEX_GATEWAY_WATCH_PATTERN") or "**/*",
        prompt_file=(here / prompt_file) if prompt_file else None,
        debounce_ms=env.integer("CODEX_GATEWAY_WATCH_DEBOUNCE_MS"),
        poll_ms=env.integer("CODEX_GATEWAY_WATCH_POLL_MS"),
        force_polling=env.flag("CODEX_GATEWAY_WATCH_USE_WATCHDOG"),
        skip_initial_scan=env.flag("CODEX_GATEWAY_WATCH_SKIP_INITIAL_SCAN"),
    )


def _triggers(env: _Env, here: Path, codex_home: Path, state: Path) -> TriggerConfig:
    default_file = (
        here / (env.text("CODEX_GATEWAY_TRIGGER_FILE") or state / "triggers" / "triggers.json")
    ).resolve()
    discovery = codex_home / "sessions"
    roots = tuple((here / p).resolve() for p in env.names("CODEX_GATEWAY_TRIGGER_ROOTS")) or (
        default_file.parent,
        discovery.resolve(),
    )
    return TriggerConfig(
        default_file=default_file,
        extra_files=tuple((here / p).resolve() for p in env.names("CODEX_GATEWAY_TRIGGER_FILES")),
        roots=roots,
        discovery_dir=discovery,
        disabled=env.flag("CODEX_GATEWAY_DISABLE_TRIGGERS"),
        debounce_ms=max(50, env.integer("CODEX_GATEWAY_TRIGGER_DEBOUNCE_MS")),
        max_file_bytes=env.integer("CODEX_GATEWAY_TRIGGER_MAX_FILE_BYTES"),
        max_per_file=env.integer("CODEX_GATEWAY_TRIGGER_MAX_PER_FILE"),
    )


def _bridge(env: _Env) -> BridgeConfig:
    return BridgeConfig(
        allowed_hosts=tuple(env.names("CODEX_GATEWAY_ALLOWED_HOSTS")),
        host_check_with_token=env.flag("CODEX_GATEWAY_HOST_CHECK_WITH_TOKEN"),
        header_timeout_ms=env.integer("CODEX_GATEWAY_HEADER_TIMEOUT_MS"),
        max_header_bytes=env.integer("CODEX_GATEWAY_MAX_HEADER_BYTES"),
        max_headers=env.integer("CODEX_GATEWAY_MAX_HEADERS"),
        max_connections=env.integer("CODEX_GATEWAY_MAX_CONNECTIONS"),
        request_read_timeout_ms=env.integer("CODEX_GATEWAY_REQUEST_READ_TIMEOUT_MS"),
    )


def _webhook(env: _Env) -> WebhookConfig:
    raw_headers = env.secret("SESSION_WEBHOOK_HEADERS_JSON")
    headers: dict[str, str] = {}
    if raw_headers is not None:
        try:
            parsed = json.loads(raw_headers)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"SESSION_WEBHOOK_HEADERS_JSON is not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ConfigError("SESSION_WEBHOOK_HEADERS_JSON must be a JSON object")
        headers = {str(k): str(v) for k, v in parsed.items() if v is not None}
    url = env.secret("SESSION_WEBHOOK_URL")
    if url is not None and not re.match(r"https?://", url):
        raise ConfigError("SESSION_WEBHOOK_URL must be an http:// or https:// URL")
    return WebhookConfig(
        url=url,
        timeout_ms=env.integer("SESSION_WEBHOOK_TIMEOUT_MS"),
        auth_bearer=env.secret("SESSION_WEBHOOK_AUTH_BEARER"),
        headers=headers,
        secret=env.secret("SESSION_WEBHOOK_SECRET"),
        max_attempts=env.integer("SESSION_WEBHOOK_MAX_ATTEMPTS"),
        retry_base_ms=env.integer("SESSION_WEBHOOK_RETRY_BASE_MS"),
        retry_max_ms=env.integer("SESSION_WEBHOOK_RETRY_MAX_MS"),
    )


def state_dir(env: _Env, here: Path) -> Path:
    """Where the gateway keeps its state by default: $XDG_STATE_HOME/codex-gateway, else
    ~/.local/state/codex-gateway. Never the working directory, which is often a workspace."""
    xdg = env.text("XDG_STATE_HOME")
    if xdg is not None and Path(xdg).is_absolute():
        return Path(xdg) / "codex-gateway"
    home = Path(env.text("HOME") or str(Path.home()))
    return (here / home / ".local" / "state" / "codex-gateway").resolve()


def check_state_outside_workspaces(config: Config) -> None:
    """ConfigError unless every state directory lies apart from every workspace root: an agent
    may read and write its workspace, and must reach none of the gateway's own files."""
    workspaces = [("CODEX_GATEWAY_DEFAULT_WORKSPACE", config.default_workspace)] + [
        ("CODEX_GATEWAY_WORKSPACE_ROOTS", root) for root in config.workspace_roots
    ]
    states = [("CODEX_GATEWAY_SESSION_DIRS", path) for path in config.session_dirs] + [
        ("CODEX_GATEWAY_SECURE_SESSION_DIR", config.secure_session_dir),
        ("CODEX_GATEWAY_TRIGGER_FILE", config.triggers.default_file.parent),
    ]
    for workspace_name, workspace in workspaces:
        root = workspace.resolve()
        for state_name, state in states:
            where = state.resolve()
            if where.is_relative_to(root) or root.is_relative_to(where):
                raise ConfigError(
                    f"{workspace_name} ({workspace}) and {state_name} ({state}) overlap: the "
                    "gateway's state must lie outside every workspace an agent can write"
                )


def _agent_user(env: _Env) -> AgentUser | None:
    raw = env.text("CODEX_GATEWAY_AGENT_USER")
    if raw is None:
        return None
    try:
        entry = pwd.getpwuid(int(raw)) if raw.isdigit() else pwd.getpwnam(raw)
    except (KeyError, OverflowError):
        raise ConfigError(f"CODEX_GATEWAY_AGENT_USER: no such user: {raw[:64]!r}") from None
    if entry.pw_uid != os.geteuid() and os.geteuid() != 0:
        raise ConfigError(
            f"CODEX_GATEWAY_AGENT_USER: running agents as {entry.pw_name} needs the gateway to "
            "be started as root"
        )
    return AgentUser(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def _agent_user_env(env: _Env, user: AgentUser | None) -> dict[str, str]:
    """The agent user's identity in its environment (HOME: CODEX_GATEWAY_AGENT_HOME if set)."""
    if user is None:
        return {}
    home = env.text("CODEX_GATEWAY_AGENT_HOME") or str(user.home)
    return {"HOME": home, "USER": user.name, "LOGNAME": user.name}
