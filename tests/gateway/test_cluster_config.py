"""Cluster mode's configuration (gateway/config.py `_cluster`): unset URL = embedded, defaults, the
_FILE forms, and every bad value stopping startup with a message naming its variable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError
from gateway.settings import shown

URL = "postgresql://gw:hunter2@db.internal:5432/gateway"
TOKEN = "s3cret-token"


def cluster_env(**variables: str) -> dict[str, str]:
    """A valid cluster configuration, with `variables` replacing or adding to it."""
    return {
        "CODEX_GATEWAY_DATABASE_URL": URL,
        "CODEX_GATEWAY_CLUSTER_TOKEN": TOKEN,
        **variables,
    }


def test_without_a_database_url_the_gateway_is_embedded(tmp_path: Path) -> None:
    assert Config.from_env({}, cwd=tmp_path).cluster is None
    assert Config.from_env({"CODEX_GATEWAY_DATABASE_URL": " "}, cwd=tmp_path).cluster is None


def test_defaults_are_the_host_name_the_bind_address_and_grpc_port(tmp_path: Path) -> None:
    cluster = Config.from_env(
        cluster_env(CODEX_GATEWAY_BIND="127.0.0.2", CODEX_GATEWAY_GRPC_PORT="6000"), cwd=tmp_path
    ).cluster
    assert cluster is not None
    assert cluster.database_url == URL
    assert cluster.replica_id == socket.gethostname()
    assert cluster.advertise_addr == "127.0.0.2:6000"
    assert cluster.token == TOKEN
    assert (cluster.max_concurrent, cluster.lease_ms) == (0, 30_000)


def test_an_ipv6_bind_is_advertised_in_brackets(tmp_path: Path) -> None:
    cluster = Config.from_env(
        {"CODEX_GATEWAY_DATABASE_URL": URL, "CODEX_GATEWAY_BIND": "::1"}, cwd=tmp_path
    ).cluster
    assert cluster is not None
    assert cluster.advertise_addr == "[::1]:50051"
    assert cluster.token is None  # every address loopback: no token needed


@pytest.mark.parametrize(
    ("variables", "field", "expected"),
    [
        pytest.param({"CODEX_GATEWAY_REPLICA_ID": "gw-2.eu_west"}, "replica_id", "gw-2.eu_west",
                     id="replica-id"),
        pytest.param({"CODEX_GATEWAY_REPLICA_ID": "a" * 63}, "replica_id", "a" * 63,
                     id="replica-id-63"),
        pytest.param({"CODEX_GATEWAY_ADVERTISE_ADDR": "gw-2.internal:7001"}, "advertise_addr",
                     "gw-2.internal:7001", id="advertise-host"),
        pytest.param({"CODEX_GATEWAY_ADVERTISE_ADDR": "[fd00::2]:7001"}, "advertise_addr",
                     "[fd00::2]:7001", id="advertise-ipv6"),
        pytest.param({"CODEX_GATEWAY_DATABASE_URL": "postgres://db/gw"}, "database_url",
                     "postgres://db/gw", id="postgres-scheme"),
        pytest.param({"CODEX_GATEWAY_CLUSTER_MAX_CONCURRENT": "12"}, "max_concurrent", 12,
                     id="max-concurrent"),
        pytest.param({"CODEX_GATEWAY_REPLICA_LEASE_MS": "2000"}, "lease_ms", 2000, id="lease"),
    ],
)  # fmt: skip
def test_a_good_value_is_taken(
    tmp_path: Path, variables: dict[str, str], field: str, expected: object
) -> None:
    cluster = Config.from_env(cluster_env(**variables), cwd=tmp_path).cluster
    assert getattr(cluster, field) == expected


@pytest.mark.parametrize(
    ("variables", "variable", "says"),
    [
        pytest.param({"CODEX_GATEWAY_DATABASE_URL": "mysql://db/gw"},
                     "CODEX_GATEWAY_DATABASE_URL", "postgresql://", id="url-scheme"),
        pytest.param({"CODEX_GATEWAY_DATABASE_URL": "db.internal:5432"},
                     "CODEX_GATEWAY_DATABASE_URL", "postgresql://", id="url-no-scheme"),
        pytest.param({"CODEX_GATEWAY_DATABASE_URL": "postgresql://gw:hunter2@[::1/gw"},
                     "CODEX_GATEWAY_DATABASE_URL", "not a valid", id="url-unclosed-bracket"),
        pytest.param({"CODEX_GATEWAY_DATABASE_URL": "postgresql://gw:hunter2%zz@db/gw"},
                     "CODEX_GATEWAY_DATABASE_URL", "not a valid PostgreSQL", id="url-bad-escape"),
        pytest.param({"CODEX_GATEWAY_DATABASE_URL": "postgresql://gw:hunter2@db/gw?nosuchoption=1"},
                     "CODEX_GATEWAY_DATABASE_URL", "not a valid", id="url-invalid-option"),
        pytest.param({"CODEX_GATEWAY_REPLICA_ID": "gw 2"}, "CODEX_GATEWAY_REPLICA_ID",
                     "letters, digits", id="replica-id-space"),
        pytest.param({"CODEX_GATEWAY_REPLICA_ID": "-gw"}, "CODEX_GATEWAY_REPLICA_ID",
                     "letters, digits", id="replica-id-dash-first"),
        pytest.param({"CODEX_GATEWAY_REPLICA_ID": "a" * 64}, "CODEX_GATEWAY_REPLICA_ID",
                     "1-63", id="replica-id-too-long"),
        pytest.param({"CODEX_GATEWAY_REPLICA_ID": "gw/2"}, "CODEX_GATEWAY_REPLICA_ID",
                     "letters, digits", id="replica-id-slash"),
        pytest.param({"CODEX_GATEWAY_ADVERTISE_ADDR": "gw-2.internal"},
                     "CODEX_GATEWAY_ADVERTISE_ADDR", "host:port", id="advertise-no-port"),
        pytest.param({"CODEX_GATEWAY_ADVERTISE_ADDR": "gw-2:0"}, "CODEX_GATEWAY_ADVERTISE_ADDR",
                     "host:port", id="advertise-port-zero"),
        pytest.param({"CODEX_GATEWAY_ADVERTISE_ADDR": "gw-2:70000"},
                     "CODEX_GATEWAY_ADVERTISE_ADDR", "host:port", id="advertise-port-too-big"),
        pytest.param({"CODEX_GATEWAY_ADVERTISE_ADDR": "http://gw-2:7001"},
                     "CODEX_GATEWAY_ADVERTISE_ADDR", "host:port", id="advertise-url"),
        pytest.param({"CODEX_GATEWAY_ADVERTISE_ADDR": "fd00::2:7001"},
                     "CODEX_GATEWAY_ADVERTISE_ADDR", "host:port", id="advertise-ipv6-bare"),
        pytest.param({"CODEX_GATEWAY_BIND": "0.0.0.0"}, "CODEX_GATEWAY_ADVERTISE_ADDR",
                     "binds every address", id="bind-any-without-advertise"),
        pytest.param({"CODEX_GATEWAY_BIND": "::"}, "CODEX_GATEWAY_ADVERTISE_ADDR",
                     "binds every address", id="bind-any-ipv6-without-advertise"),
        pytest.param({"CODEX_GATEWAY_CLUSTER_TOKEN": "",
                      "CODEX_GATEWAY_ADVERTISE_ADDR": "gw-2.internal:7001"},
                     "CODEX_GATEWAY_CLUSTER_TOKEN", "required", id="token-advertised-host"),
        pytest.param({"CODEX_GATEWAY_CLUSTER_TOKEN": "", "CODEX_GATEWAY_BIND": "10.0.0.5"},
                     "CODEX_GATEWAY_CLUSTER_TOKEN", "required", id="token-bind-non-loopback"),
        pytest.param({"CODEX_GATEWAY_CLUSTER_TOKEN": "", "CODEX_GATEWAY_BIND": "0.0.0.0",
                      "CODEX_GATEWAY_ADVERTISE_ADDR": "127.0.0.1:7001"},
                     "CODEX_GATEWAY_CLUSTER_TOKEN", "required", id="token-bind-any"),
        pytest.param({"CODEX_GATEWAY_CLUSTER_MAX_CONCURRENT": "-1"},
                     "CODEX_GATEWAY_CLUSTER_MAX_CONCURRENT", "", id="max-concurrent-negative"),
        pytest.param({"CODEX_GATEWAY_REPLICA_LEASE_MS": "999"}, "CODEX_GATEWAY_REPLICA_LEASE_MS",
                     "", id="lease-too-short"),
        pytest.param({"CODEX_GATEWAY_REPLICA_LEASE_MS": "2s"}, "CODEX_GATEWAY_REPLICA_LEASE_MS",
                     "", id="lease-unit"),
    ],
)  # fmt: skip
def test_a_bad_value_names_its_variable(
    tmp_path: Path, variables: dict[str, str], variable: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=variable) as raised:
        Config.from_env(cluster_env(**variables), cwd=tmp_path)
    assert says in str(raised.value)
    assert "hunter2" not in str(raised.value)  # never the URL's password or the token


@pytest.mark.parametrize(
    ("bind", "advertise"),
    [
        pytest.param("127.0.0.1", None, id="ipv4-loopback"),
        pytest.param("127.0.0.1", "127.0.0.1:7001", id="ipv4-loopback-advertised"),
        pytest.param("::1", "[::1]:7001", id="ipv6-loopback"),
        pytest.param("localhost", "localhost:7001", id="localhost"),
    ],
)
def test_the_token_is_optional_when_every_address_is_loopback(
    tmp_path: Path, bind: str, advertise: str | None
) -> None:
    env = {"CODEX_GATEWAY_DATABASE_URL": URL, "CODEX_GATEWAY_BIND": bind}
    if advertise:
        env["CODEX_GATEWAY_ADVERTISE_ADDR"] = advertise
    cluster = Config.from_env(env, cwd=tmp_path).cluster
    assert cluster is not None and cluster.token is None


def test_the_url_and_the_token_can_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "url").write_text(URL + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    cluster = Config.from_env(
        {
            "CODEX_GATEWAY_DATABASE_URL_FILE": str(tmp_path / "url"),
            "CODEX_GATEWAY_CLUSTER_TOKEN_FILE": str(tmp_path / "token"),
            "CODEX_GATEWAY_BIND": "10.0.0.5",
        },
        cwd=tmp_path,
    ).cluster
    assert cluster is not None
    assert (cluster.database_url, cluster.token) == (URL, TOKEN)


@pytest.mark.parametrize(
    ("variables", "variable"),
    [
        pytest.param({"CODEX_GATEWAY_DATABASE_URL_FILE": "{tmp}/url"},
                     "CODEX_GATEWAY_DATABASE_URL", id="url-and-url-file"),
        pytest.param({"CODEX_GATEWAY_CLUSTER_TOKEN_FILE": "{tmp}/url"},
                     "CODEX_GATEWAY_CLUSTER_TOKEN", id="token-and-token-file"),
        pytest.param({"CODEX_GATEWAY_DATABASE_URL": "",
                      "CODEX_GATEWAY_DATABASE_URL_FILE": "{tmp}/missing"},
                     "CODEX_GATEWAY_DATABASE_URL_FILE", id="url-file-missing"),
    ],
)  # fmt: skip
def test_a_secret_and_its_file_form_are_one_or_the_other(
    tmp_path: Path, variables: dict[str, str], variable: str
) -> None:
    (tmp_path / "url").write_text(URL)
    env = cluster_env(**{k: v.format(tmp=tmp_path) for k, v in variables.items()})
    with pytest.raises(ConfigError, match=variable):
        Config.from_env(env, cwd=tmp_path)


def test_the_secrets_are_not_shown_in_the_configuration(tmp_path: Path) -> None:
    """GET / shows the configuration: never the URL (it may hold a password) nor the token."""
    config = Config.from_env(cluster_env(), cwd=tmp_path)
    values = shown(config)
    assert "hunter2" not in repr(values) and TOKEN not in repr(values)
    assert values["CODEX_GATEWAY_REPLICA_ID"] == socket.gethostname()
