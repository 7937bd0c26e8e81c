"""Configuration from the environment: defaults, parsing, and startup errors naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError


def test_defaults_are_the_documented_ones_with_a_loopback_bind(tmp_path: Path) -> None:
    config = Config.from_env({}, cwd=tmp_path)
    assert (config.port, config.grpc_port, config.bind) == (4000, 50051, "127.0.0.1")
    assert config.max_body_bytes == 1_048_576
    assert (config.max_concurrent, config.timeout_ms, config.max_timeout_ms) == (
        2,
        120_000,
        1_800_000,
    )
    assert (config.default_tail_lines, config.max_tail_lines) == (200, 2000)
    assert config.sandbox == "workspace-write"
    # State lives outside the working directory (often a workspace): the XDG state directory.
    state = Path.home().resolve() / ".local" / "state" / "codex-gateway"
    assert config.session_dirs == (state / "sessions",)
    assert config.secure_session_dir == state / "secure"
    assert config.triggers.default_file == state / "triggers" / "triggers.json"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("CODEX_GATEWAY_PORT", "abc", id="port-not-a-number"),
        pytest.param("CODEX_GATEWAY_PORT", "70000", id="port-too-big"),
        pytest.param("CODEX_GATEWAY_GRPC_PORT", "-1", id="grpc-port-negative"),
        pytest.param("CODEX_GATEWAY_MAX_CONCURRENT", "0", id="concurrency-zero"),
        pytest.param("CODEX_GATEWAY_MAX_BODY_BYTES", "1e6", id="body-float"),
        pytest.param("CODEX_GATEWAY_TIMEOUT_MS", "12s", id="timeout-unit"),
        pytest.param("CODEX_GATEWAY_LOG_LEVEL", "9", id="log-level"),
        pytest.param("CODEX_GATEWAY_AGENT_NICE", "20", id="nice-too-big"),
        pytest.param("CODEX_GATEWAY_AGENT_NICE", "-5", id="nice-negative"),
        pytest.param("CODEX_GATEWAY_RETRY_ON_EMPTY", "maybe", id="bool"),
        pytest.param("CODEX_GATEWAY_SANDBOX", "none", id="sandbox"),
        pytest.param("CODEX_GATEWAY_JSON_FLAG", "--yaml", id="json-flag"),
        pytest.param("CODEX_GATEWAY_EXTRA_ARGS", "'unclosed", id="extra-args-quote"),
        pytest.param("CODEX_GATEWAY_DEFAULT_MODEL", "-m evil", id="model"),
        pytest.param("CODEX_GATEWAY_DEFAULT_WORKSPACE", "/no/such/dir", id="workspace"),
        pytest.param(
            "CODEX_GATEWAY_CHILD_ENV", "CODEX_GATEWAY_SECURE_TOKEN", id="child-env-secret"
        ),
        pytest.param("SESSION_WEBHOOK_HEADERS_JSON", "{not json", id="webhook-headers"),
        pytest.param("SESSION_WEBHOOK_HEADERS_JSON", "[1]", id="webhook-headers-array"),
        pytest.param("SESSION_WEBHOOK_URL", "ftp://x", id="webhook-url"),
    ],
)
def test_a_bad_value_names_its_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value}, cwd=tmp_path)


def test_empty_values_mean_unset(tmp_path: Path) -> None:
    config = Config.from_env(
        {"CODEX_GATEWAY_PORT": "", "CODEX_GATEWAY_API_TOKEN": " "}, cwd=tmp_path
    )
    assert config.port == 4000 and config.api_token is None


def test_lists_are_comma_separated_and_watch_paths_take_semicolons(tmp_path: Path) -> None:
    config = Config.from_env(
        {
            "CODEX_GATEWAY_SESSION_DIRS": "a, b,a",
            "CODEX_GATEWAY_WATCH_PATHS": "temp;inbox,other",
            "CODEX_GATEWAY_EXTRA_ARGS": "-c 'model_reasoning_effort=\"low\"'",
        },
        cwd=tmp_path,
    )
    assert config.session_dirs == (tmp_path / "a", tmp_path / "b")
    assert config.watcher.paths == (tmp_path / "temp", tmp_path / "inbox", tmp_path / "other")
    assert config.extra_args == ("-c", 'model_reasoning_effort="low"')


def test_child_env_is_an_allow_list_extended_by_name(tmp_path: Path) -> None:
    config = Config.from_env(
        {
            "PATH": "/bin",
            "LC_ALL": "C",
            "OPENAI_API_KEY": "k",
            "CODEX_GATEWAY_SECURE_TOKEN": "t",
            "AWS_SECRET_ACCESS_KEY": "x",
            "MY_TOOL_HOME": "/opt/tool",
            "CODEX_GATEWAY_CHILD_ENV": "MY_TOOL_HOME",
        },
        cwd=tmp_path,
    )
    assert config.child_env == {
        "PATH": "/bin",
        "LC_ALL": "C",
        "OPENAI_API_KEY": "k",
        "MY_TOOL_HOME": "/opt/tool",
        "CODEX_HOME": str(config.codex_home),
    }


def test_the_command_exits_with_a_message_on_a_bad_value(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        env={"PATH": "/usr/bin:/bin", "CODEX_GATEWAY_MAX_CONCURRENT": "lots"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "CODEX_GATEWAY_MAX_CONCURRENT" in result.stderr
    assert "Traceback" not in result.stderr
