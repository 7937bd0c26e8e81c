"""A newcomer without model credentials gets a clear 503 naming what is missing, at once,
instead of codex retrying 'waiting for network' until the run's deadline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from codex_gateway.v1 import runs_pb2
from gateway.config import Config
from gateway.credentials import missing_credentials
from tests.fakes import CODEX_BIN
from tests.harness import running_gateway


async def test_no_key_no_login_no_provider_is_unavailable_naming_them(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    home = tmp_path / "empty-codex-home"
    home.mkdir()
    config = config_for(codex_bin=CODEX_BIN, codex_home=home, child_env={"PATH": "/usr/bin:/bin"})
    async with running_gateway(config) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi")))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "OPENAI_API_KEY" in (caught.value.details() or "")
    assert not list(config.session_dirs[0].glob("session-*"))


@pytest.mark.parametrize(
    ("env", "files", "args", "ok"),
    [
        pytest.param({}, {}, (), False, id="nothing"),
        pytest.param({"OPENAI_API_KEY": "k"}, {}, (), True, id="openai-key"),
        pytest.param({"CODEX_API_KEY": "k"}, {}, (), True, id="codex-key"),
        pytest.param({"OPENAI_API_KEY": " "}, {}, (), False, id="blank-key"),
        pytest.param({}, {"auth.json": "{}"}, (), True, id="logged-in"),
        pytest.param({}, {"config.toml": 'model_provider = "fake"\n'}, (), True, id="provider"),
        pytest.param({}, {"config.toml": 'model = "gpt-5.5"\n'}, (), False, id="model-only"),
        pytest.param({}, {}, ("-c", "model_provider=ollama"), True, id="provider-arg"),
        pytest.param({}, {}, ("--oss",), True, id="oss"),
    ],
)
def test_what_counts_as_credentials(
    tmp_path: Path, env: dict[str, str], files: dict[str, str], args: tuple[str, ...], ok: bool
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert (missing_credentials(tmp_path, env, args) is None) is ok
