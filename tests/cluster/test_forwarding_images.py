"""A run's images through a non-home replica: a prompt with images to a session homed on alpha,
sent to beta, runs on alpha, its path image read from alpha's workspace."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import httpx

from codex_gateway.v1 import runs_pb2
from tests.cluster.test_forwarding import WAIT_S, homed
from tests.fakes.model_server import ModelServer
from tests.gateway.test_image_checks import png
from tests.gateway.test_images import images_sent
from tests.harness import cluster_config, running_bridge, running_gateway


async def test_images_of_a_prompt_sent_to_another_replica_reach_the_model_from_the_home(
    tmp_path: Path, pg_dsn: str, model_server: ModelServer
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        configs = {
            name: cluster_config(
                tmp_path,
                pg_dsn,
                name,
                model_url=model_server.base_url,
                scratch_root=tmp_path / name / "scratch",
            )
            for name in ("alpha", "beta")
        }
        alpha = await stack.enter_async_context(running_gateway(configs["alpha"], background=True))
        beta = await stack.enter_async_context(running_gateway(configs["beta"], background=True))
        url = await stack.enter_async_context(running_bridge(beta.target))
        rest = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=WAIT_S))
        first = (
            await alpha.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi")))
        ).result
        await homed(pg_dsn, first.session_id, "alpha")
        inline, on_alpha = png(3, 3), png(4, 4)
        (configs["alpha"].default_workspace / "only-on-alpha.png").write_bytes(on_alpha)

        response = await rest.post(
            f"/sessions/{first.session_id}/prompt",
            json={
                "prompt": "look",
                "images": [
                    {"data": base64.b64encode(inline).decode(), "media_type": "image/png"},
                    {"path": "only-on-alpha.png"},
                ],
            },
        )
        assert response.status_code == 200, response.text
        assert [images_sent(r) for r in model_server.requests] == [[], [inline, on_alpha]]
        refused = await rest.post(
            f"/sessions/{first.session_id}/prompt",
            json={"prompt": "look", "images": [{"path": "../beta/x.png"}]},
        )
        assert refused.status_code == 400 and refused.json()["field"] == "images[0]"
        assert len(beta.gateway.store) == 0
        for name in ("alpha", "beta"):
            scratch = tmp_path / name / "scratch"
            assert not scratch.exists() or list(scratch.iterdir()) == []
