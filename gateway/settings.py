"""The configuration table: every variable the gateway reads, declared once.

`Config.from_env` reads a variable only through its declaration here (its kind, its default and
bounds); `GET /` shows every declared variable's effective value from it (a secret only as
configured or not); tests/gateway/test_settings.py fails when README.md's table and this one
disagree on a name or a default. A variable added in one place and not the others cannot ship.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from gateway.config import Config

# A value as GET / shows it (a google.protobuf.Struct value).
Shown = str | int | bool | list[str]

# Ordinary task variables: what a caller passes to parameterise the work, in families no
# toolchain reads (README, "The agent's environment"). The variable replaces this list.
DEFAULT_REQUEST_ENV_ALLOW = (
    "TASK_*",
    "JOB_*",
    "APP_*",
    "PROJECT_*",
    "INPUT_*",
    "PARAM_*",
    "BUILD_*",
    "CI",
    "CI_*",
)
# gRPC refuses messages over 64 MiB: an answer stays well under it, whatever is configured.
MAX_ANSWER_BYTES_LIMIT = 48 * 1024 * 1024
# gRPC clients refuse messages over 4 MiB unless told otherwise (grpcio, grpc-go, grpcurl, the
# REPL): by default an answer, with the request's own messages and metadata echoed in it (at
# most the body limit, 1 MiB by default), fits that, so no default client sees a finished run
# as RESOURCE_EXHAUSTED.
DEFAULT_MAX_ANSWER_BYTES = 3 * 1024 * 1024

# The output budget (gateway/agent/budget.py): agents' output taken per second, all together.
DEFAULT_OUTPUT_LINES_PER_S = 8000
DEFAULT_OUTPUT_BYTES_PER_S = 64 * 1024 * 1024

# An image is held whole in memory while it is checked and copied (a path image is read whole).
MAX_IMAGE_BYTES_LIMIT = 64 * 1024 * 1024

# Read for defaults (codex's home, the state directory's), but not the gateway's own settings:
# the README names them where they matter, not in its table.
AMBIENT = frozenset({"HOME", "CODEX_HOME"})
# The reference's `env` block of GET / and GET /status, in its order (gateway/api/status.py).
ECHOED = (
    "CODEX_GATEWAY_SESSION_DIRS",
    "CODEX_GATEWAY_SECURE_SESSION_DIR",
    "CODEX_GATEWAY_EXTRA_ARGS",
    "CODEX_SANDBOX_NETWORK_DISABLED",
    "CODEX_SYSTEM_PROMPT_FILE",
    "CODEX_DISABLE_DEFAULT_PROMPT",
)
NONE = "—"  # the README's "no default"


class Kind(Enum):
    """How `Config.from_env` reads a variable (gateway/config.py's `_Env` has one method each)."""

    INTEGER = "integer"
    FLAG = "flag"
    TEXT = "text"
    # Separated names (`separators`), blanks dropped.
    LIST = "list"
    # Also read from the file that <name>_FILE names; shown only as configured or not, never
    # passed to an agent.
    SECRET = "secret"  # noqa: S105 (a kind's name, not a password)
    # Not read by the gateway: passed through to codex in its environment.
    PASSTHROUGH = "passthrough"


@dataclass(frozen=True)
class Setting:
    """One variable: how from_env reads it, the README's default, how GET / shows it."""

    name: str
    kind: Kind
    # The README's Default column, verbatim.
    documented_default: str
    # The effective value GET / shows; None: the value as set (the variable has no effective
    # form of its own). A secret's: anything truthy when it is set.
    effective: Callable[[Config], object] | None = None
    # An integer's or a flag's default when unset, and an integer's bounds.
    default: int | bool | None = None
    minimum: int | None = None
    maximum: int | None = None
    separators: str = ","

    @property
    def names(self) -> tuple[str, ...]:
        """The variable's names: a secret's second form is <name>_FILE."""
        return (self.name, f"{self.name}_FILE") if self.kind is Kind.SECRET else (self.name,)

    def shown(self, config: Config) -> Shown:
        if self.effective is None:
            return config.raw_env.get(self.name, "")
        value = self.effective(config)
        if self.kind is Kind.SECRET:
            return "configured" if value else "not configured"
        return cast(Shown, value)


def _integer(
    name: str,
    default: int,
    effective: Callable[[Config], int],
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> Setting:
    return Setting(
        name, Kind.INTEGER, f"`{default}`", effective, default, minimum=minimum, maximum=maximum
    )


def _flag(name: str, default: bool, effective: Callable[[Config], bool]) -> Setting:
    return Setting(name, Kind.FLAG, f"`{str(default).lower()}`", effective, default)


def _text(name: str, documented: str, effective: Callable[[Config], str] | None) -> Setting:
    return Setting(name, Kind.TEXT, documented, effective)


def _list(
    name: str,
    documented: str,
    effective: Callable[[Config], list[str]] | None,
    separators: str = ",",
) -> Setting:
    return Setting(name, Kind.LIST, documented, effective, separators=separators)


def _secret(name: str, is_set: Callable[[Config], object]) -> Setting:
    return Setting(name, Kind.SECRET, NONE, is_set)


def _paths(paths: tuple[object, ...]) -> list[str]:
    return [str(path) for path in paths]


# In the README's order. Defaults and bounds here are the parser's; a documented default that
# is prose (computed at startup) is the README's text.
SETTINGS: tuple[Setting, ...] = (
    _integer("CODEX_GATEWAY_PORT", 4000, lambda c: c.port, minimum=0, maximum=65535),
    _integer("CODEX_GATEWAY_GRPC_PORT", 50051, lambda c: c.grpc_port, minimum=0, maximum=65535),
    _text("CODEX_GATEWAY_BIND", "`127.0.0.1`", lambda c: c.bind),
    _secret("CODEX_GATEWAY_API_TOKEN", lambda c: c.api_token),
    _text(
        "CODEX_GATEWAY_API_KEYS_FILE",
        NONE,
        lambda c: str(c.api_keys_file) if c.api_keys_file else "",
    ),
    _text("CODEX_GATEWAY_AUDIT_FILE", NONE, lambda c: str(c.audit_file) if c.audit_file else ""),
    _integer(
        "CODEX_GATEWAY_AUDIT_MAX_BYTES",
        10 * 1_048_576,
        lambda c: c.audit_max_bytes,
        minimum=1024,
        maximum=1 << 40,
    ),
    _integer("CODEX_GATEWAY_AUDIT_BACKUPS", 5, lambda c: c.audit_backups, minimum=1, maximum=1000),
    _flag("CODEX_GATEWAY_METRICS", True, lambda c: c.metrics_enabled),
    _flag("CODEX_GATEWAY_METRICS_PUBLIC", False, lambda c: c.metrics_public),
    _integer("CODEX_GATEWAY_METRICS_PORT", 0, lambda c: c.metrics_port, minimum=0, maximum=65535),
    _integer("CODEX_GATEWAY_MAX_BODY_BYTES", 1_048_576, lambda c: c.max_body_bytes, minimum=1),
    _integer("CODEX_GATEWAY_MAX_IMAGES", 16, lambda c: c.max_images, minimum=0, maximum=1000),
    _integer(
        "CODEX_GATEWAY_MAX_IMAGE_BYTES",
        10 * 1_048_576,
        lambda c: c.max_image_bytes,
        minimum=1,
        maximum=MAX_IMAGE_BYTES_LIMIT,
    ),
    _list("CODEX_GATEWAY_ALLOWED_HOSTS", NONE, lambda c: list(c.bridge.allowed_hosts)),
    _flag("CODEX_GATEWAY_HOST_CHECK_WITH_TOKEN", True, lambda c: c.bridge.host_check_with_token),
    _integer(
        "CODEX_GATEWAY_HEADER_TIMEOUT_MS",
        10_000,
        lambda c: c.bridge.header_timeout_ms,
        minimum=100,
    ),
    _integer(
        "CODEX_GATEWAY_REQUEST_READ_TIMEOUT_MS",
        30_000,
        lambda c: c.bridge.request_read_timeout_ms,
        minimum=100,
    ),
    _integer(
        "CODEX_GATEWAY_MAX_HEADER_BYTES",
        32_768,
        lambda c: c.bridge.max_header_bytes,
        minimum=1024,
        maximum=16 * 1_048_576,
    ),
    _integer("CODEX_GATEWAY_MAX_HEADERS", 100, lambda c: c.bridge.max_headers, minimum=8),
    _integer("CODEX_GATEWAY_MAX_CONNECTIONS", 1000, lambda c: c.bridge.max_connections, minimum=1),
    _integer("CODEX_GATEWAY_MAX_CONCURRENT", 2, lambda c: c.max_concurrent, minimum=1),
    _integer("CODEX_GATEWAY_TIMEOUT_MS", 120_000, lambda c: c.timeout_ms, minimum=1000),
    _integer("CODEX_GATEWAY_MAX_TIMEOUT_MS", 1_800_000, lambda c: c.max_timeout_ms, minimum=1000),
    _integer("CODEX_GATEWAY_STALL_TIMEOUT_MS", 300_000, lambda c: c.stall_timeout_ms, minimum=0),
    _text("CODEX_GATEWAY_DEFAULT_MODEL", NONE, lambda c: c.default_model or ""),
    _text("CODEX_GATEWAY_EXTRA_ARGS", NONE, lambda c: " ".join(c.extra_args)),
    _text("CODEX_GATEWAY_JSON_FLAG", "`--json`", lambda c: c.json_flag),
    _integer("CODEX_GATEWAY_LOG_LEVEL", 1, lambda c: c.log_level, minimum=0, maximum=3),
    _text("CODEX_GATEWAY_LOG_FORMAT", "`text`", lambda c: c.log_format),
    _integer("CODEX_GATEWAY_MAX_RETRIES", 0, lambda c: c.max_retries, minimum=0, maximum=10),
    _integer("CODEX_GATEWAY_RETRY_DELAY_MS", 2000, lambda c: c.retry_delay_ms, minimum=0),
    _flag("CODEX_GATEWAY_RETRY_ON_EMPTY", False, lambda c: c.retry_on_empty),
    _text("CODEX_GATEWAY_CODEX_BIN", "the project's native codex", lambda c: str(c.codex_bin)),
    _text("CODEX_GATEWAY_CODEX_HOME", "`$CODEX_HOME` or `~/.codex`", lambda c: str(c.codex_home)),
    _text("CODEX_GATEWAY_SANDBOX", "`workspace-write`", lambda c: c.sandbox),
    _flag("CODEX_UNSAFE_ALLOW_NO_SANDBOX", False, lambda c: c.unsafe_no_sandbox),
    _text(
        "CODEX_GATEWAY_DEFAULT_WORKSPACE",
        "`/workspace` if it exists, else the working directory",
        lambda c: str(c.default_workspace),
    ),
    _list(
        "CODEX_GATEWAY_WORKSPACE_ROOTS",
        "the default workspace",
        lambda c: _paths(c.workspace_roots),
    ),
    _list("CODEX_GATEWAY_CHILD_ENV", NONE, lambda c: sorted(c.child_env)),
    _list(
        "CODEX_GATEWAY_REQUEST_ENV_ALLOW",
        f"`{','.join(DEFAULT_REQUEST_ENV_ALLOW)}`",
        lambda c: list(c.request_env_allow),
    ),
    _text("CODEX_SYSTEM_PROMPT_FILE", "`./PROMPT.md`", lambda c: str(c.system_prompt_file)),
    _flag("CODEX_DISABLE_DEFAULT_PROMPT", False, lambda c: c.system_prompt_disabled),
    Setting("CODEX_SANDBOX_NETWORK_DISABLED", Kind.PASSTHROUGH, NONE),
    _list(
        "CODEX_GATEWAY_SESSION_DIRS",
        "`$XDG_STATE_HOME/codex-gateway/sessions` (`~/.local/state/codex-gateway/sessions`)",
        lambda c: _paths(c.session_dirs),
    ),
    # The reference's name: its session root is in CODEX_GATEWAY_SESSION_DIRS's effective list.
    _list("CODEX_GATEWAY_SESSION_DIR", NONE, None),
    _text(
        "CODEX_GATEWAY_SECURE_SESSION_DIR",
        "`$XDG_STATE_HOME/codex-gateway/secure`",
        lambda c: str(c.secure_session_dir),
    ),
    _secret("CODEX_GATEWAY_SECURE_TOKEN", lambda c: c.secure_token),
    _text("XDG_STATE_HOME", "`~/.local/state`", None),
    _integer("CODEX_GATEWAY_DEFAULT_TAIL_LINES", 200, lambda c: c.default_tail_lines, minimum=1),
    _integer("CODEX_GATEWAY_MAX_TAIL_LINES", 2000, lambda c: c.max_tail_lines, minimum=1),
    _integer("CODEX_GATEWAY_SIGNAL_CONTEXT", 160, lambda c: c.signal_context_chars, minimum=0),
    _integer("CODEX_GATEWAY_STOP_GRACE_MS", 3000, lambda c: c.stop_grace_ms, minimum=0),
    _integer("CODEX_GATEWAY_SHUTDOWN_GRACE_MS", 10_000, lambda c: c.shutdown_grace_ms, minimum=0),
    _integer("CODEX_GATEWAY_MAX_LINE_BYTES", 1_048_576, lambda c: c.max_line_bytes, minimum=1024),
    _integer(
        "CODEX_GATEWAY_OUTPUT_LINES_PER_S",
        DEFAULT_OUTPUT_LINES_PER_S,
        lambda c: c.output_lines_per_s,
        minimum=0,
    ),
    _integer(
        "CODEX_GATEWAY_OUTPUT_BYTES_PER_S",
        DEFAULT_OUTPUT_BYTES_PER_S,
        lambda c: c.output_bytes_per_s,
        minimum=0,
    ),
    _integer(
        "CODEX_GATEWAY_FOLLOWER_BUFFER_BYTES",
        8 * 1024 * 1024,
        lambda c: c.follower_buffer_bytes,
        minimum=65_536,
    ),
    _integer(
        "CODEX_GATEWAY_MAX_ANSWER_BYTES",
        DEFAULT_MAX_ANSWER_BYTES,
        lambda c: c.max_answer_bytes,
        minimum=65_536,
        maximum=MAX_ANSWER_BYTES_LIMIT,
    ),
    _text("CODEX_GATEWAY_AGENT_USER", NONE, lambda c: c.agent_user.name if c.agent_user else ""),
    _text(
        "CODEX_GATEWAY_AGENT_HOME",
        "the agent user's home",
        lambda c: c.child_env.get("HOME", "") if c.agent_user else "",
    ),
    _integer("CODEX_GATEWAY_AGENT_NICE", 19, lambda c: c.agent_nice, minimum=0, maximum=19),
    _text(
        "CODEX_GATEWAY_TRIGGER_FILE",
        "`$XDG_STATE_HOME/codex-gateway/triggers/triggers.json`",
        lambda c: str(c.triggers.default_file),
    ),
    _list("CODEX_GATEWAY_TRIGGER_FILES", NONE, lambda c: _paths(c.triggers.extra_files)),
    _list(
        "CODEX_GATEWAY_TRIGGER_ROOTS",
        "the default file's folder and `$CODEX_HOME/sessions`",
        lambda c: _paths(c.triggers.roots),
    ),
    _flag("CODEX_GATEWAY_DISABLE_TRIGGERS", False, lambda c: c.triggers.disabled),
    _integer("CODEX_GATEWAY_TRIGGER_DEBOUNCE_MS", 250, lambda c: c.triggers.debounce_ms, minimum=0),
    _integer(
        "CODEX_GATEWAY_TRIGGER_MAX_FILE_BYTES",
        4 * 1024 * 1024,
        lambda c: c.triggers.max_file_bytes,
        minimum=1024,
    ),
    _integer(
        "CODEX_GATEWAY_TRIGGER_MAX_PER_FILE", 10_000, lambda c: c.triggers.max_per_file, minimum=1
    ),
    _list("CODEX_GATEWAY_WATCH_PATHS", NONE, lambda c: _paths(c.watcher.paths), separators=",;"),
    _text("CODEX_GATEWAY_WATCH_PATTERN", "`**/*`", lambda c: c.watcher.pattern),
    _text("CODEX_GATEWAY_WATCH_PROMPT_FILE", NONE, lambda c: str(c.watcher.prompt_file or "")),
    _integer("CODEX_GATEWAY_WATCH_DEBOUNCE_MS", 750, lambda c: c.watcher.debounce_ms, minimum=0),
    _flag("CODEX_GATEWAY_WATCH_USE_WATCHDOG", False, lambda c: c.watcher.force_polling),
    _integer("CODEX_GATEWAY_WATCH_POLL_MS", 1000, lambda c: c.watcher.poll_ms, minimum=10),
    _flag("CODEX_GATEWAY_WATCH_SKIP_INITIAL_SCAN", True, lambda c: c.watcher.skip_initial_scan),
    _secret("CODEX_GATEWAY_DATABASE_URL", lambda c: c.cluster),
    _text(
        "CODEX_GATEWAY_REPLICA_ID",
        "the host name",
        lambda c: c.cluster.replica_id if c.cluster else "",
    ),
    _text(
        "CODEX_GATEWAY_ADVERTISE_ADDR",
        "the bind address and gRPC port",
        lambda c: c.cluster.advertise_addr if c.cluster else "",
    ),
    _secret("CODEX_GATEWAY_CLUSTER_TOKEN", lambda c: c.cluster and c.cluster.token),
    _integer(
        "CODEX_GATEWAY_CLUSTER_MAX_CONCURRENT",
        0,
        lambda c: c.cluster.max_concurrent if c.cluster else 0,
        minimum=0,
    ),
    _integer(
        "CODEX_GATEWAY_REPLICA_LEASE_MS",
        30_000,
        lambda c: c.cluster.lease_ms if c.cluster else 30_000,
        minimum=1000,
        maximum=3_600_000,
    ),
    # Traces (bridge/tracing.py, gateway/tracing.py): the standard OpenTelemetry variables.
    _text(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        NONE,
        lambda c: (c.tracing.endpoint or "") if c.tracing else "",
    ),
    _text(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        NONE,
        lambda c: c.tracing.traces_url if c.tracing else "",
    ),
    _text(
        "OTEL_SERVICE_NAME",
        "`codex-gateway`",
        lambda c: c.tracing.service_name if c.tracing else "codex-gateway",
    ),
    _secret("OTEL_EXPORTER_OTLP_HEADERS", lambda c: c.tracing.headers if c.tracing else None),
    _secret(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS", lambda c: c.tracing.headers if c.tracing else None
    ),
    _secret("SESSION_WEBHOOK_URL", lambda c: c.webhook.url),
    _integer("SESSION_WEBHOOK_TIMEOUT_MS", 5000, lambda c: c.webhook.timeout_ms, minimum=1),
    _secret("SESSION_WEBHOOK_AUTH_BEARER", lambda c: c.webhook.auth_bearer),
    _secret("SESSION_WEBHOOK_HEADERS_JSON", lambda c: c.webhook.headers),
    _secret("SESSION_WEBHOOK_SECRET", lambda c: c.webhook.secret),
    _integer(
        "SESSION_WEBHOOK_MAX_ATTEMPTS",
        8,
        lambda c: c.webhook.max_attempts,
        minimum=1,
        maximum=100,
    ),
    _integer("SESSION_WEBHOOK_RETRY_BASE_MS", 500, lambda c: c.webhook.retry_base_ms, minimum=1),
    _integer("SESSION_WEBHOOK_RETRY_MAX_MS", 60_000, lambda c: c.webhook.retry_max_ms, minimum=1),
)
BY_NAME: Mapping[str, Setting] = {setting.name: setting for setting in SETTINGS}
# Gateway secrets: never passed to the agent, whatever CODEX_GATEWAY_CHILD_ENV says.
SECRET_VARIABLES = frozenset(s.name for s in SETTINGS if s.kind is Kind.SECRET)
# What GET / shows as set rather than as an effective value (kept in Config.raw_env).
RAW = tuple(dict.fromkeys([*ECHOED, *(s.name for s in SETTINGS if s.effective is None)]))


def shown(config: Config) -> dict[str, Shown]:
    """GET /'s `config` block: every declared variable with its effective value."""
    return {setting.name: setting.shown(config) for setting in SETTINGS}
