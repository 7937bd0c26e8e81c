"""Triggers with an output_schema and images: checked when written (both protocols), shown in
the Trigger message, and carried into the run when the trigger fires (the real codex CLI)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2

from codex_gateway.v1 import triggers_pb2
from gateway.automation.triggers import images_problem, normalise, trigger_images
from gateway.config import Config, WebhookConfig
from gateway.errors import InvalidRequest
from gateway.runs.images import ImageInput
from tests.fakes.model_server import ModelServer
from tests.fakes.webhook_receiver import Receiver
from tests.gateway.test_triggers import DAILY, file_triggers, with_triggers
from tests.harness import RunningGateway, running_bridge, running_gateway

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
IMAGES = [{"data": PNG, "media_type": "image/png"}, {"path": "shots/a.png"}]


@pytest.fixture
async def api(
    config: Config, tmp_path: Path
) -> AsyncIterator[tuple[RunningGateway, httpx.AsyncClient]]:
    async with (
        running_gateway(with_triggers(config, tmp_path)) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
    ):
        yield gw, client


def value_of(payload: Any) -> struct_pb2.Value:
    return json_format.ParseDict(payload, struct_pb2.Value())


async def test_schema_and_images_are_stored_and_shown_on_both_protocols(
    api: tuple[RunningGateway, httpx.AsyncClient],
) -> None:
    gw, client = api
    body = {"id": "t", "prompt_text": "x", "schedule": DAILY}
    created = await client.post(
        "/triggers", json={**body, "output_schema": SCHEMA, "images": IMAGES}
    )
    assert created.status_code == 200, created.text
    shown = (await client.get("/triggers/t")).json()["trigger"]
    assert shown["output_schema"] == SCHEMA
    assert shown["images"] == [
        {"data": PNG, "media_type": "image/png", "path": None},
        {"data": None, "media_type": None, "path": "shots/a.png"},
    ]
    [stored] = file_triggers(gw.gateway.config)
    assert stored["output_schema"] == SCHEMA and stored["images"] == IMAGES

    reply = await gw.stub.GetTrigger(triggers_pb2.GetTriggerRequest(trigger_id="t"))
    assert json_format.MessageToDict(reply.trigger.output_schema) == SCHEMA
    assert reply.trigger.images[0].data == base64.b64decode(PNG)
    assert reply.trigger.images[1].path == "shots/a.png"

    grpc_made = await gw.stub.CreateTriggers(
        triggers_pb2.CreateTriggersRequest(
            triggers=value_of({**body, "id": "g", "output_schema": SCHEMA})
        )
    )
    assert json_format.MessageToDict(grpc_made.trigger.output_schema) == SCHEMA


BAD = [
    pytest.param({"output_schema": {"type": "integr"}}, "output_schema", id="invalid-schema"),
    pytest.param({"output_schema": [1]}, "output_schema", id="schema-not-object"),
    pytest.param(
        {"output_schema": {"description": "x" * 70_000}}, "output_schema", id="schema-65-kib"
    ),
    pytest.param(
        {"output_schema": {"$ref": "http://127.0.0.1:9/x.json"}}, "output_schema", id="remote-ref"
    ),
    pytest.param({"images": {"path": "a.png"}}, "images", id="images-not-array"),
    pytest.param({"images": ["a.png"]}, "images[0]", id="image-not-object"),
    pytest.param({"images": [{}]}, "images[0]", id="image-empty"),
    pytest.param({"images": [{"data": PNG}]}, "images[0]", id="data-without-media-type"),
    pytest.param(
        {"images": [{"data": "not base64!", "media_type": "image/png"}]},
        "images[0].data",
        id="bad-base64",
    ),
    pytest.param({"images": [{"path": 5}]}, "images[0].path", id="path-not-string"),
    pytest.param(
        {"images": [{"path": "a.png", "data": PNG, "media_type": "image/png"}]},
        "images[0]",
        id="path-and-data",
    ),
    pytest.param({"images": [{"path": "a", "url": "http://x"}]}, "images[0]", id="unknown-key"),
]


@pytest.mark.parametrize(("extra", "field"), BAD)
async def test_a_bad_schema_or_images_is_400_naming_the_field_on_both_protocols(
    api: tuple[RunningGateway, httpx.AsyncClient], extra: dict[str, Any], field: str
) -> None:
    gw, client = api
    body = {"id": "t", "prompt_text": "x", "schedule": DAILY}
    response = await client.post("/triggers", json={**body, **extra})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.CreateTriggers(
            triggers_pb2.CreateTriggersRequest(triggers=value_of({**body, **extra}))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not gw.gateway.config.triggers.default_file.exists()
    # An update is checked alike.
    assert (await client.post("/triggers", json=body)).status_code == 200
    patched = await client.patch("/triggers/t", json=extra)
    assert patched.status_code == 400 and patched.json()["field"] == field, patched.text
    assert "output_schema" not in file_triggers(gw.gateway.config)[0]


def test_a_trigger_file_with_a_bad_schema_reports_that_trigger() -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalise(
            {"prompt_text": "x", "schedule": DAILY, "output_schema": {"type": 3}},
            where="triggers[4].",
        )
    assert caught.value.field == "triggers[4].output_schema"


def test_images_become_the_run_s_image_inputs() -> None:
    assert images_problem(IMAGES) is None
    assert trigger_images(IMAGES) == [
        ImageInput(data=base64.b64decode(PNG), media_type="image/png"),
        ImageInput(path="shots/a.png"),
    ]
    assert trigger_images(None) == []


async def test_a_fired_trigger_runs_with_its_schema_and_reports_structured(
    config: Config,
    tmp_path: Path,
    model_server: ModelServer,
    receiver_for: Callable[..., Receiver],
) -> None:
    hook = receiver_for()
    webhook = WebhookConfig(url=hook.url, retry_base_ms=20, retry_max_ms=100)
    config = dataclasses.replace(with_triggers(config, tmp_path), webhook=webhook)
    soon = datetime.now(UTC) + timedelta(seconds=1)
    entry = {
        "id": "shaped",
        "prompt_text": '[[reply:{"n": "one"}]] [[then:{"n": 1}]] count',
        "schedule": {"mode": "once", "at": soon.isoformat()},
        "output_schema": SCHEMA,
    }
    config.triggers.default_file.write_text(json.dumps({"triggers": [entry]}))
    async with running_gateway(config, background=True) as gw:
        for _ in range(300):
            if hook.accepted():
                break
            await asyncio.sleep(0.05)
        [delivered] = hook.accepted()
        payload = json.loads(delivered.body)
        assert payload["source"] == "trigger" and payload["status"] == "completed"
        assert payload["structured"] == {"n": 1}  # repaired, by resuming the fire's thread
        first, repair = model_server.requests
        assert first.body["text"]["format"]["schema"] == SCHEMA
        assert repair.body["text"]["format"]["schema"] == SCHEMA
        (session,) = list(gw.gateway.store)
        assert session.runs[0].status == "completed"
