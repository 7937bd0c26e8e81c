"""`schema` and `image` reach the model through the real gateway and codex, over REST and gRPC,
and their failures print as the gateway words them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from tests.fakes.model_server import ModelServer, RecordedRequest
from tests.gateway.test_image_checks import ELF, png
from tests.harness import running_bridge, running_gateway
from tests.repl.terminal import piped, repl_env

SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "additionalProperties": False,
}
PNG = png()  # decodable: codex drops an image it cannot decode


def _where(protocol: str, target: str, url: str) -> list[str]:
    return ["--grpc", target] if protocol == "grpc" else [url]


def _images(request: RecordedRequest) -> list[dict[str, Any]]:
    return [
        part
        for item in request.input
        if isinstance(item.get("content"), list)
        for part in item["content"]
        if isinstance(part, dict) and part.get("type") == "input_image"
    ]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_a_schema_gives_a_structured_answer_and_a_wrong_answer_lists_its_errors(
    config_for: Callable[..., Config], model_server: ModelServer, tmp_path: Path, protocol: str
) -> None:
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    config = config_for()
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        script = "\n".join(
            [
                "mode compact",
                f"schema {tmp_path}/schema.json",
                'run [[reply:{"n": 7}]] give me n',
                "run [[reply:seven]] and now in words",  # the repair turn answers the same
                "schema clear",
                "run [[reply:free text]] no schema now",
            ]
        )
        answer = await piped(
            _where(protocol, gw.target, url), script + "\n", repl_env(tmp_path), wait_s=120
        )
    assert answer.returncode == 1  # the mismatch
    assert '[agent] {"n": 7}\n→ structured:\n{\n  "n": 7\n}\n' in answer.stdout
    assert "[agent] free text\n→ usage:" in answer.stdout
    status = "422 Unprocessable Entity" if protocol == "rest" else "FAILED_PRECONDITION"
    first, *problems = answer.stderr.splitlines()
    assert first.startswith(f"✗ {status}: ")
    assert "schema clear runs without it" in first
    assert "the answer is kept: show " in first
    assert problems and all(line.startswith("  - ") for line in problems)
    requests = model_server.requests
    formats = [request.body.get("text", {}).get("format") for request in requests]
    assert formats[0]["schema"] == SCHEMA and formats[0]["strict"] is True
    assert formats[-1] is None  # schema clear: none sent


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_images_reach_the_model_once_and_bad_ones_are_told(
    config_for: Callable[..., Config], model_server: ModelServer, tmp_path: Path, protocol: str
) -> None:
    (tmp_path / "shot.png").write_bytes(PNG)
    config = config_for()
    (config.default_workspace / "in-workspace.png").write_bytes(PNG)
    (config.default_workspace / "elf.png").write_bytes(ELF)
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        script = "\n".join(
            [
                "mode compact",
                f"image {tmp_path}/shot.png",
                "image ws:in-workspace.png",
                "run what do you see",
                "use clear",
                "run and now",  # the images went with the last run only
                "use clear",
                "image ws:../../etc/passwd",
                "run escape",
                "image ws:elf.png",
                "run elf",
            ]
        )
        answer = await piped(
            _where(protocol, gw.target, url), script + "\n", repl_env(tmp_path), wait_s=120
        )
    assert answer.returncode == 1
    requests = model_server.requests
    assert len(requests) == 2, answer.stderr
    assert [len(_images(request)) for request in requests] == [2, 0]
    expected = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert [part.get("image_url") for part in _images(requests[0])] == [expected, expected]
    status = "400 Bad Request" if protocol == "rest" else "INVALID_ARGUMENT"
    # images[0] both times: the refused run's image went with it, as a run's images do.
    assert answer.stderr.splitlines() == [
        f"✗ {status}: images[0]: path is outside the run's workspace: '../../etc/passwd'",
        f"✗ {status}: images[0]: path is not a PNG, JPEG, GIF or WebP image (by its first bytes)"
        " · failure: invalid_request",  # found once its run started: that run failed
    ]
