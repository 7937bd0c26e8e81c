"""A run's images end to end: the real codex CLI against the scripted model server, over gRPC
and REST. An image (inline or a workspace file) reaches the model as an `input_image` whose data
URL carries exactly our bytes, from a copy in the run's scratch directory; on every run source;
every bad image is a 400 naming it, refused before the run takes a slot; and the copies are gone
after the run however it ended (success, agent failure, timeout, cancel, shutdown)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format

from codex_gateway.v1 import runs_pb2, sessions_pb2
from gateway.config import Config
from gateway.server import drain
from tests.fakes.model_server import ModelServer
from tests.gateway.test_image_checks import ELF, png
from tests.gateway.test_limits import error_info
from tests.harness import RunningGateway, running_bridge, running_gateway

PROTOCOLS = [pytest.param("grpc", id="grpc"), pytest.param("rest", id="rest")]
_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 408,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INTERNAL: 500,
}


@dataclass
class Served:
    gw: RunningGateway
    http: httpx.AsyncClient
    scratch: Path
    workspace: Path

    def scratch_dirs(self) -> list[Path]:
        return sorted(self.scratch.iterdir()) if self.scratch.exists() else []

    async def call(
        self, protocol: str, rpc: str, body: dict[str, Any], session: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One run over either protocol, from the same JSON body: (HTTP status, the REST
        answer's JSON, or its gRPC equivalent: the result, or `error` and `field`)."""
        if protocol == "rest":
            path = {
                "Complete": "/completion",
                "PromptSession": f"/sessions/{session}/prompt",
                "NudgeSession": f"/sessions/{session}/nudge",
            }[rpc]
            response = await self.http.post(path, json=body)
            return response.status_code, response.json()
        run = json_format.ParseDict(body, runs_pb2.RunInput())
        request: Any = {
            "Complete": lambda: runs_pb2.CompleteRequest(run=run),
            "PromptSession": lambda: runs_pb2.PromptSessionRequest(session_id=session, run=run),
            "NudgeSession": lambda: runs_pb2.NudgeSessionRequest(session_id=session, run=run),
        }[rpc]()
        try:
            answer = await getattr(self.gw.stub, rpc)(request)
        except grpc.aio.AioRpcError as exc:
            info, _ = error_info(exc)
            return _HTTP[exc.code()], {"error": exc.details(), **dict(info.metadata)}
        return 200, json_format.MessageToDict(answer.result, preserving_proto_field_name=True)


@pytest.fixture
async def served(config_for: Callable[..., Config], tmp_path: Path) -> AsyncIterator[Served]:
    config = config_for(scratch_root=tmp_path / "scratch", max_image_bytes=100_000)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http,
    ):
        yield Served(gw, http, tmp_path / "scratch", config.default_workspace)


def inline(data: bytes, media_type: str = "image/png") -> dict[str, str]:
    return {"data": base64.b64encode(data).decode(), "media_type": media_type}


def images_sent(request: Any) -> list[bytes]:
    """The bytes of every input_image the model received in one request (from data URLs)."""
    found = []
    for item in request.input:
        content = item.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "input_image":
                url = part["image_url"]
                assert url.startswith("data:image/png;base64,"), url[:40]
                found.append(base64.b64decode(url.split(",", 1)[1], validate=True))
    return found


def image_paths_told(request: Any) -> list[str]:
    """The paths codex names the images by in the prompt it sends (`<image ... path="...">`)."""
    texts = [
        part["text"]
        for item in request.input
        for part in (item.get("content") if isinstance(item.get("content"), list) else [])
        if part.get("type") == "input_text" and part["text"].startswith("<image ")
    ]
    return [text.split('path="', 1)[1].split('"', 1)[0] for text in texts]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_inline_and_path_images_reach_the_model_as_exactly_our_bytes(
    served: Served, model_server: ModelServer, protocol: str
) -> None:
    first, second, third = png(2, 2), png(3, 1), png(1, 4)
    (served.workspace / "pics").mkdir()
    (served.workspace / "pics" / "b.png").write_bytes(second)
    (served.workspace / "c.png").write_bytes(third)
    status, result = await served.call(
        protocol,
        "Complete",
        {
            "prompt": "describe these",
            "images": [
                inline(first),
                {"path": "pics/b.png"},
                {"path": str(served.workspace / "c.png"), "media_type": "image/png"},
            ],
        },
    )
    assert status == 200, result
    assert result["status"] == "completed"
    (request,) = model_server.requests
    assert images_sent(request) == [first, second, third]
    told = image_paths_told(request)
    # codex read copies in the run's scratch dir, not the workspace's files
    assert [Path(p).name for p in told] == ["image-1.png", "image-2.png", "image-3.png"]
    assert all(Path(p).is_relative_to(served.scratch) for p in told)
    assert served.scratch_dirs() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_image_on_a_continued_session_and_on_a_nudge(
    served: Served, model_server: ModelServer, protocol: str
) -> None:
    """The image goes with the turn that gave it (codex keeps it in the thread's history); a
    nudge replays the last prompt without its images unless it is given some."""
    status, first = await served.call(protocol, "Complete", {"prompt": "remember 42"})
    assert status == 200, first
    session = first["session_id"]
    picture = png(5, 5)
    status, second = await served.call(
        protocol, "PromptSession", {"prompt": "and this", "images": [inline(picture)]}, session
    )
    assert status == 200, second
    assert second["codex_session_id"] == first["codex_session_id"]  # the thread resumed
    status, nudged = await served.call(protocol, "NudgeSession", {}, session)
    assert status == 200, nudged
    other = png(6, 6)
    status, given = await served.call(
        protocol, "NudgeSession", {"images": [inline(other)]}, session
    )
    assert status == 200, given
    requests = model_server.requests
    assert [images_sent(r) for r in requests] == [
        [],
        [picture],
        [picture],  # the history of the thread, not a new image
        [picture, other],
    ]
    assert served.scratch_dirs() == []


async def test_a_streamed_completion_takes_images_over_both_protocols(
    served: Served, model_server: ModelServer
) -> None:
    picture = png(4, 4)
    body = {"prompt": "look", "images": [inline(picture)]}
    run = json_format.ParseDict(body, runs_pb2.RunInput())
    kinds = [
        message.WhichOneof("kind")
        async for message in served.gw.stub.StreamCompletion(
            runs_pb2.StreamCompletionRequest(run=run)
        )
    ]
    assert kinds[-1] == "completed"
    async with served.http.stream("POST", "/completion/stream", json=body) as response:
        assert response.status_code == 200
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    assert lines[-1]["result"]["completed"]["status"] == "completed"
    assert [images_sent(r) for r in model_server.requests] == [[picture], [picture]]
    bad = {"prompt": "look", "images": [{"path": "../x.png"}]}
    async with served.http.stream("POST", "/completion/stream", json=bad) as response:
        assert response.status_code == 400
        assert json.loads(await response.aread())["field"] == "images[0]"
    assert served.scratch_dirs() == []


def _hostile(workspace: Path, outside: Path) -> None:
    """Files of the hostile cases: a link out, a FIFO, an ELF named .png, a big image."""
    outside.write_bytes(png())
    (workspace / "link.png").symlink_to(outside)
    os.mkfifo(workspace / "fifo.png")
    (workspace / "elf.png").write_bytes(ELF)
    (workspace / "big.png").write_bytes(png() + b"\x00" * 100_001)


HOSTILE = [
    pytest.param({"data": "!!!!not base64", "media_type": "image/png"}, "", id="invalid-base64"),
    pytest.param(inline(ELF), "not a PNG, JPEG, GIF or WebP", id="png-that-is-an-elf"),
    pytest.param(inline(b"hello", "text/plain"), "is not one of", id="not-an-image-type"),
    pytest.param({"data": base64.b64encode(png()).decode()}, "media_type", id="no-media-type"),
    pytest.param(inline(png() + b"\x00" * 100_001), "over the limit", id="oversize-data"),
    pytest.param({**inline(png()), "path": "a.png"}, "not both", id="data-and-path"),
    pytest.param({}, "give data", id="neither"),
    pytest.param({"path": "../outside.png"}, "outside the run's workspace", id="dotdot"),
    pytest.param({"path": "/etc/hostname"}, "outside the run's workspace", id="absolute-outside"),
    pytest.param({"path": "link.png"}, "outside the run's workspace", id="symlink-outside"),
    pytest.param({"path": "fifo.png"}, "a FIFO", id="fifo"),
    pytest.param({"path": "big.png"}, "over the limit", id="oversize-file"),
    pytest.param({"path": "none.png"}, "does not exist", id="missing-file"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_bad_image_is_a_400_naming_it_and_takes_no_slot(
    config_for: Callable[..., Config], tmp_path: Path, model_server: ModelServer, protocol: str
) -> None:
    """With the only slot held by a run that never ends, each bad image is still answered 400
    (not 429): it was refused before a slot was asked for. Nothing reaches the model, no
    session is made, no scratch dir is left."""
    config = config_for(
        scratch_root=tmp_path / "scratch", max_image_bytes=100_000, max_concurrent=1
    )
    _hostile(config.default_workspace, tmp_path / "outside.png")
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http,
    ):
        served = Served(gw, http, tmp_path / "scratch", config.default_workspace)
        holder = asyncio.ensure_future(
            gw.stub.Complete(
                runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="[[scenario:stall]]"))
            )
        )
        await asyncio.to_thread(model_server.wait_for_requests, 1, 30)
        busy = await served.call(protocol, "Complete", {"prompt": "x"})
        assert busy[0] == 429  # the slot is taken
        good = inline(png())
        for case in HOSTILE:
            image, message = case.values
            if protocol == "grpc" and case.id == "invalid-base64":
                continue  # gRPC carries bytes: there is no encoding to get wrong
            status, answer = await served.call(
                protocol, "Complete", {"prompt": "x", "images": [good, image]}
            )
            assert status == 400, (case.id, answer)
            if case.id == "invalid-base64":
                assert "images[1].data" in answer["error"] and "base64" in answer["error"]
            else:
                assert answer["field"] == "images[1]", (case.id, answer)
                assert answer["error"].startswith("images[1]: ") and message in answer["error"]
        many = {"prompt": "x", "images": [good] * 2000}
        status, answer = await served.call(protocol, "Complete", many)
        assert (status, answer["field"]) == (400, "images"), answer
        assert answer["error"] == "at most 16 images per run, got 2000"
        (session,) = [
            s.session_id
            for s in (await gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())).sessions
        ]
        await gw.stub.CancelSession(sessions_pb2.CancelSessionRequest(session_id=session))
        with pytest.raises(grpc.aio.AioRpcError):
            await holder
        assert len(model_server.requests) == 1
        assert served.scratch_dirs() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_path_whose_bytes_are_not_an_image_is_refused_at_run_start(
    served: Served, model_server: ModelServer, protocol: str, tmp_path: Path
) -> None:
    """A file's bytes are read once the run starts (off the event loop): an ELF named .png is
    a 400 naming it then, recorded as the run's error; the inline image already copied is
    removed with the run's scratch dir, and codex never ran."""
    _hostile(served.workspace, tmp_path / "outside.png")
    status, answer = await served.call(
        protocol, "Complete", {"prompt": "x", "images": [inline(png()), {"path": "elf.png"}]}
    )
    assert status == 400, answer
    assert answer["field"] == "images[1]"
    assert "not a PNG, JPEG, GIF or WebP image" in answer["error"]
    assert model_server.requests == []
    assert served.scratch_dirs() == []


async def test_every_attempt_gets_the_images_and_a_failed_run_leaves_no_copies(
    config_for: Callable[..., Config], tmp_path: Path, model_server: ModelServer
) -> None:
    config = config_for(
        scratch_root=tmp_path / "scratch", max_retries=1, retry_delay_ms=0, timeout_ms=60_000
    )
    picture = png(7, 7)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http,
    ):
        served = Served(gw, http, tmp_path / "scratch", config.default_workspace)
        status, answer = await served.call(
            "rest", "Complete", {"prompt": "[[scenario:http500]]", "images": [inline(picture)]}
        )
        assert status == 500, answer
        assert [images_sent(r) for r in model_server.requests] == [[picture], [picture]]
        assert served.scratch_dirs() == []


async def test_a_timed_out_run_leaves_no_copies(served: Served, model_server: ModelServer) -> None:
    status, answer = await served.call(
        "grpc",
        "Complete",
        {
            "prompt": "[[scenario:stall]]",
            "timeout_ms": 1000,
            "images": [inline(png())],
        },
    )
    assert status == 408, answer
    assert served.scratch_dirs() == []


async def _stalled_run_with_an_image(
    served: Served, model_server: ModelServer, picture: bytes
) -> tuple[asyncio.Future[Any], str]:
    """A run that never ends, once codex has asked the model: (its call, its session id), its
    copy of the image checked to be in the scratch dir meanwhile."""
    body = {"prompt": "[[scenario:stall]]", "images": [inline(picture)]}
    call = asyncio.ensure_future(
        served.gw.stub.Complete(
            runs_pb2.CompleteRequest(run=json_format.ParseDict(body, runs_pb2.RunInput()))
        )
    )
    await asyncio.to_thread(model_server.wait_for_requests, 1, 30)
    (scratch,) = served.scratch_dirs()
    assert (scratch / "image-1.png").read_bytes() == picture
    listed = await served.gw.stub.ListSessions(sessions_pb2.ListSessionsRequest())
    return call, listed.sessions[0].session_id


async def test_a_cancelled_run_leaves_no_copies(served: Served, model_server: ModelServer) -> None:
    call, session = await _stalled_run_with_an_image(served, model_server, png(8, 8))
    response = await served.http.post(f"/sessions/{session}/cancel", json={})
    assert response.status_code == 200 and response.json()["cancelled"], response.text
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.CANCELLED
    assert served.scratch_dirs() == []


async def test_a_run_interrupted_by_shutdown_leaves_no_copies(
    config_for: Callable[..., Config], tmp_path: Path, model_server: ModelServer
) -> None:
    config = config_for(scratch_root=tmp_path / "scratch", shutdown_grace_ms=200)
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http,
    ):
        served = Served(gw, http, tmp_path / "scratch", config.default_workspace)
        call, _ = await _stalled_run_with_an_image(served, model_server, png(9, 9))
        await drain(gw.gateway, gw.grpc_server)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert served.scratch_dirs() == []


async def test_an_inline_image_counts_against_the_request_limit_of_each_protocol(
    config_for: Callable[..., Config], tmp_path: Path, model_server: ModelServer
) -> None:
    """An inline image travels in the request: over REST as base64 (a third larger) in a body
    of at most CODEX_GATEWAY_MAX_BODY_BYTES (413 above it); over gRPC as bytes in a message of
    that limit plus 64 KiB. So an image of 1.1 MB under a 1.2 MB limit goes over gRPC but not
    over REST, and one of 800 kB over both, as the README says."""
    config = config_for(scratch_root=tmp_path / "scratch", max_body_bytes=1_200_000)
    big, fits = png(600, 600, noise=True), png(500, 500, noise=True)
    assert 1_050_000 < len(big) < 1_150_000 and 700_000 < len(fits) < 800_000
    async with (
        running_gateway(config) as gw,
        running_bridge(gw.target, max_body_bytes=config.max_body_bytes) as url,
        httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http,
    ):
        served = Served(gw, http, tmp_path / "scratch", config.default_workspace)
        response = await http.post("/completion", json={"prompt": "x", "images": [inline(big)]})
        assert response.status_code == 413, response.text
        status, answer = await served.call(
            "grpc", "Complete", {"prompt": "x", "images": [inline(big)]}
        )
        assert status == 200, answer
        status, answer = await served.call(
            "rest", "Complete", {"prompt": "x", "images": [inline(fits)]}
        )
        assert status == 200, answer
    assert [images_sent(r) for r in model_server.requests] == [[big], [fits]]
    assert served.scratch_dirs() == []
