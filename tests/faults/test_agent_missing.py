"""A codex binary that is missing or cannot be executed: every run source answers REST 503 with a
message naming the problem, while /health, /status and the read endpoints keep working and no slot
is held. (tests/gateway/test_faults.py has the missing binary over gRPC.)"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fakes import AGENTS_DIR
from tests.harness import base_config, running_bridge, running_gateway


def missing(tmp_path: Path) -> Path:
    return tmp_path / "no-such-codex"


def not_executable(tmp_path: Path) -> Path:
    copy = tmp_path / "codex-without-x-bit"
    shutil.copyfile(AGENTS_DIR / "echo_agent.py", copy)
    copy.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return copy


def a_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "codex-is-a-directory"
    directory.mkdir()
    return directory


def no_interpreter(tmp_path: Path) -> Path:
    script = tmp_path / "codex-with-a-missing-interpreter"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    ("make_binary", "reason"),
    [
        pytest.param(missing, "not found", id="missing"),
        pytest.param(not_executable, "not executable", id="no-x-bit"),
        pytest.param(a_directory, "not executable", id="a-directory"),
        pytest.param(
            no_interpreter, "interpreter or loader that was not found", id="no-interpreter"
        ),
    ],
)
async def test_an_unusable_codex_binary_is_503_naming_it_and_the_rest_still_works(
    tmp_path: Path, make_binary: Callable[[Path], Path], reason: str
) -> None:
    binary = make_binary(tmp_path)
    config = base_config(tmp_path, codex_bin=binary, max_concurrent=2)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
    ):
        for _ in range(config.max_concurrent + 1):  # no slot is kept by a failed start
            response = await client.post("/completion", json={"prompt": "x"})
            assert response.status_code == 503, response.text
            assert reason in response.json()["error"] and "codex" in response.json()["error"]
        sid = next(s["session_id"] for s in (await client.get("/sessions")).json())
        for path in (f"/sessions/{sid}/prompt", f"/sessions/{sid}/nudge"):
            response = await client.post(path, json={"prompt": "x"})
            assert response.status_code == 503, (path, response.text)
            assert reason in response.json()["error"]
        # A stream has begun (`started`) before codex is spawned: its last line is the error.
        stream = await client.post("/completion/stream", json={"prompt": "x"})
        assert stream.status_code == 200
        error = json.loads(stream.text.strip().splitlines()[-1])["error"]
        assert error["http_status"] == 503 and reason in error["error"], error
        assert (await client.get("/health")).json() == {"status": "ok"}
        status = await client.get("/status")
        assert status.status_code == 200
        assert status.json()["concurrency"]["active"] == 0
        assert (await client.get(f"/sessions/{sid}")).json()["status"] == "error"
        assert (await client.get("/")).status_code == 200
