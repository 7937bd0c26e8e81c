"""The configuration table is declared once (gateway/settings.py): parsing reads through it,
GET / shows it, and the README's table agrees with it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format

from codex_gateway.v1 import status_pb2
from gateway.config import Config, _Env
from gateway.settings import AMBIENT, ECHOED, NONE, SETTINGS, Kind, shown
from tests.fakes import AGENTS_DIR
from tests.harness import running_bridge, running_gateway

README = Path(__file__).resolve().parents[2] / "README.md"
_ROW = re.compile(r"\|\s*`(?P<name>[A-Z][A-Z0-9_]*)`\s*\|\s*(?P<default>[^|]*?)\s*\|")


def readme_table() -> dict[str, str]:
    """The README's configuration table: each variable's Default cell, verbatim."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        match = _ROW.match(line)
        assert match is not None, f"a configuration row names one variable: {line[:80]}"
        assert match["name"] not in rows, f"{match['name']} has two rows"
        rows[match["name"]] = match["default"]
    return rows


def declared_table() -> dict[str, str]:
    """Every declared name (a secret's _FILE form included) with its documented default."""
    return {
        name: setting.documented_default if name == setting.name else NONE
        for setting in SETTINGS
        for name in setting.names
    }


def test_the_readme_documents_every_declared_variable_and_no_other() -> None:
    readme, declared = readme_table(), declared_table()
    assert sorted(set(declared) - set(readme)) == [], "declared, not in the README's table"
    assert sorted(set(readme) - set(declared)) == [], "in the README's table, not declared"


def test_the_readme_states_the_declared_defaults() -> None:
    readme, declared = readme_table(), declared_table()
    differ = {
        name: (readme[name], declared[name])
        for name in declared
        if readme.get(name, declared[name]) != declared[name]
    }
    assert differ == {}, "README default, declared default"


def test_the_readme_table_parser_finds_every_row() -> None:
    """The checks above would pass on a parser that finds nothing: it finds every row."""
    assert len(readme_table()) == len(declared_table()) > 70
    assert readme_table()["CODEX_GATEWAY_PORT"] == "`4000`"


class _Reads(dict[str, str]):
    """An environment that records which names were looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


def test_parsing_reads_every_declared_variable_and_no_other(tmp_path: Path) -> None:
    # Every name from_env looks up (its child_env allow-list iterates instead); an agent user
    # (this process's own) makes CODEX_GATEWAY_AGENT_HOME read too, a database URL the cluster's.
    environ = _Reads(
        {
            "CODEX_GATEWAY_AGENT_USER": str(os.geteuid()),
            "CODEX_GATEWAY_DATABASE_URL": "postgresql://127.0.0.1/gateway",
        }
    )
    Config.from_env(environ, cwd=tmp_path)
    assert sorted(environ.read - AMBIENT) == sorted(declared_table())


@pytest.mark.parametrize(
    ("read", "name"),
    [
        pytest.param("integer", "CODEX_GATEWAY_NO_SUCH_THING", id="undeclared"),
        pytest.param("text", "PATH", id="not-the-gateways"),
        pytest.param("flag", "CODEX_GATEWAY_PORT", id="an-integer-as-a-flag"),
        pytest.param("text", "CODEX_GATEWAY_API_TOKEN", id="a-secret-as-text"),
        pytest.param("names", "CODEX_GATEWAY_BIND", id="text-as-a-list"),
    ],
)
def test_reading_a_variable_other_than_declared_is_refused(read: str, name: str) -> None:
    with pytest.raises(LookupError, match=name):
        getattr(_Env({}), read)(name)


def test_the_echoed_variables_are_declared() -> None:
    assert set(ECHOED) <= {s.name for s in SETTINGS}


def test_the_config_objects_defaults_are_the_declared_ones() -> None:
    """Tests build Config directly: its field defaults are the ones an empty environment gets."""
    config = Config()
    numbers = [s for s in SETTINGS if s.kind in (Kind.INTEGER, Kind.FLAG)]
    assert {s.name: s.shown(config) for s in numbers} == {s.name: s.default for s in numbers}


SECRETS = {
    "CODEX_GATEWAY_API_TOKEN": "leak-api-token",
    "CODEX_GATEWAY_SECURE_TOKEN": "leak-secure-token",
    # GET /'s webhook block shows a URL's last 18 characters (the reference's url_tail).
    "SESSION_WEBHOOK_URL": "http://127.0.0.1:9/leak-hook/then-eighteen-more",
    "SESSION_WEBHOOK_AUTH_BEARER": "leak-bearer",
    "SESSION_WEBHOOK_HEADERS_JSON": '{"X-Leak": "leak-header"}',
    "SESSION_WEBHOOK_SECRET": "leak-signing-secret",
}


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Config]:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    environ = {
        **SECRETS,
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "CODEX_GATEWAY_PORT": "0",
        "CODEX_GATEWAY_GRPC_PORT": "0",
        "CODEX_GATEWAY_CODEX_BIN": str(AGENTS_DIR / "echo_agent.py"),
        "CODEX_GATEWAY_CODEX_HOME": str(tmp_path / "codex-home"),
        "CODEX_GATEWAY_DEFAULT_WORKSPACE": str(workspace),
        "CODEX_GATEWAY_SESSION_DIR": str(tmp_path / "more-sessions"),
        "CODEX_SANDBOX_NETWORK_DISABLED": "1",
        "CODEX_DISABLE_DEFAULT_PROMPT": "true",
        "CODEX_GATEWAY_AGENT_NICE": "0",
    }
    yield Config.from_env(environ, cwd=tmp_path)


async def test_get_info_shows_every_declared_variable_over_grpc_and_rest(
    configured: Config,
) -> None:
    token = ("authorization", f"Bearer {SECRETS['CODEX_GATEWAY_API_TOKEN']}")
    async with running_gateway(configured) as gw:
        info = await gw.stub.GetInfo(status_pb2.GetInfoRequest(), metadata=(token,))
        async with (
            running_bridge(gw.target) as url,
            httpx.AsyncClient(
                base_url=url, headers=dict([token]), timeout=30, trust_env=False
            ) as client,
        ):
            response = await client.get("/")
    assert response.status_code == 200, response.text
    over_grpc = json_format.MessageToDict(info.config)
    over_rest = response.json()["config"]
    expected = shown(configured)
    assert sorted(over_grpc) == sorted(over_rest) == sorted(s.name for s in SETTINGS)
    assert over_grpc == over_rest == expected
    # The README's table, its secrets' _FILE forms aside, is what GET / lists.
    assert sorted(over_rest) == sorted(n for n in readme_table() if n not in _file_forms())
    for name in SECRETS:
        assert over_rest[name] == "configured"
    assert over_rest["CODEX_GATEWAY_SESSION_DIR"] == str(configured.session_dirs[-1])
    assert over_rest["CODEX_SANDBOX_NETWORK_DISABLED"] == "1"
    assert "leak-" not in response.text and "leak-" not in json.dumps(over_grpc)
    # The reference's env block: these variables as set, the session roots as effective.
    assert response.json()["env"] == {
        "CODEX_GATEWAY_SESSION_DIRS": [str(path) for path in configured.session_dirs],
        "CODEX_GATEWAY_SECURE_SESSION_DIR": "",
        "CODEX_GATEWAY_EXTRA_ARGS": "",
        "CODEX_SANDBOX_NETWORK_DISABLED": "1",
        "CODEX_SYSTEM_PROMPT_FILE": "",  # the prompt's path, and it is disabled
        "CODEX_DISABLE_DEFAULT_PROMPT": "true",
    }


def _file_forms() -> set[str]:
    return {name for s in SETTINGS for name in s.names if name != s.name}
