"""The REPL with API keys: a key goes where the token goes (--key or --token,
CODEX_GATEWAY_API_KEY or CODEX_GATEWAY_API_TOKEN), and a key's refusals (its scope, its
models, its rate) are one clear line each, on both protocols."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.auth.keys import digest_of
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import running_bridge, running_gateway
from tests.repl.terminal import piped, repl_env


def key(name: str, scopes: list[str], **fields: object) -> dict[str, object]:
    return {
        "name": name,
        "sha256": digest_of(f"k-{name}").hex(),
        "tenant": "team-a",
        "scopes": scopes,
        **fields,
    }


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_keys_refusals_are_one_clear_line(
    config_for: Callable[..., Config], tmp_path: Path, protocol: str
) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(
        json.dumps(
            {
                "keys": [
                    key("reader", ["read"]),
                    key("narrow", ["run"], allowed_models=["gpt-x"]),
                    key("metered", ["run", "read"], runs_per_minute=1),
                ]
            }
        )
    )
    config = config_for(
        codex_bin=AGENTS_DIR / "echo_agent.py", api_keys_file=keys_file, default_model="gpt-d"
    )
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        where = ["--grpc", gw.target, "--mode", "compact"] if protocol == "grpc" else [url]
        forbidden = "403 Forbidden" if protocol == "rest" else "PERMISSION_DENIED"
        limited = "429 Too Many Requests" if protocol == "rest" else "RESOURCE_EXHAUSTED"

        listed = await piped([*where, "--key", "k-reader"], "list\n", repl_env(tmp_path))
        assert listed.returncode == 0 and "No sessions." in listed.stdout
        scope = await piped([*where, "--key", "k-reader"], "run x\n", repl_env(tmp_path))
        assert scope.returncode == 1
        assert scope.stderr == (
            f"✗ {forbidden}: API key 'reader' lacks the 'run' scope this call needs"
            " · this API key may not do that: use a key with the scope\n"
        )

        model = await piped(where, "run x\n", repl_env(tmp_path, CODEX_GATEWAY_API_KEY="k-narrow"))
        assert model.stderr == (
            f"✗ {forbidden}: API key 'narrow' may not run the model 'gpt-d'"
            " · not among this API key's allowed_models\n"
        )

        # The API token's variable takes a key too.
        rate = await piped(
            where, "run x\nrun y\n", repl_env(tmp_path, CODEX_GATEWAY_API_TOKEN="k-metered")
        )
        assert rate.returncode == 1
        assert "gpt-d" in rate.stdout  # the first run ran (the echo agent shows its argv)
        line = re.fullmatch(
            rf"✗ {limited}: API key 'metered' may start 1 runs a minute; retry in (\d+)s"
            r" · retry after (\d+) s · this API key's runs_per_minute is spent\n",
            rate.stderr,
        )
        assert line is not None, rate.stderr
        assert line.group(1) == line.group(2) and 1 <= int(line.group(1)) <= 60
