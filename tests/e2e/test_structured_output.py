"""Structured output end to end: the real codex CLI against the scripted model, a real gateway
and bridge. The schema reaches the model (`text.format`), the gateway judges the answer, repairs
it once by resuming the thread, and reports a mismatch as FAILED_PRECONDITION / 422 with the
errors listed; on every run source and both protocols. Hostile schemas are a 400 before anything
runs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2, status_pb2

from codex_gateway.v1 import runs_pb2
from gateway.config import Config, WebhookConfig
from gateway.runs.schema import MAX_DEPTH, MAX_SCHEMA_BYTES
from tests.fakes.model_server import ModelServer
from tests.fakes.webhook_receiver import Receiver
from tests.harness import RunningGateway, running_bridge, running_gateway
from tests.statusdetails import grpc_error_body

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
ADA = {"name": "Ada", "age": 36}
WRONG = '{"name": "Ada", "age": "old"}'


@dataclasses.dataclass
class Served:
    gw: RunningGateway
    http: httpx.AsyncClient
    hook: Receiver
    model: ModelServer

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(request.body) for request in self.hook.accepted()]

    async def payload_of(self, run_id: str) -> dict[str, Any]:
        for _ in range(400):
            for payload in self.payloads():
                if payload["run_id"] == run_id:
                    return payload
            await asyncio.sleep(0.05)
        raise AssertionError(f"no webhook for run {run_id}")


@pytest.fixture
async def served(
    config: Config, model_server: ModelServer, receiver_for: Callable[..., Receiver]
) -> AsyncIterator[Served]:
    hook = receiver_for()
    webhook = WebhookConfig(url=hook.url, retry_base_ms=20, retry_max_ms=100)
    async with (
        running_gateway(dataclasses.replace(config, webhook=webhook), background=True) as gw,
        running_bridge(gw.target) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        yield Served(gw, http, hook, model_server)


def run_input(prompt: str, schema: Any = PERSON, **fields: Any) -> runs_pb2.RunInput:
    message = runs_pb2.RunInput(prompt=prompt, **fields)
    if schema is not None:
        json_format.ParseDict(schema, message.output_schema)
    return message


def schema_sent(body: Any) -> Any:
    """The output schema as the model received it (Responses `text.format`)."""
    text_format = body["text"]["format"]
    assert text_format["type"] == "json_schema" and text_format["strict"] is True
    return text_format["schema"]


def scratch_dirs(run_id: str) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"codex-gateway-run-{run_id[:8]}-*"))


def details_of(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[Any]]:
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    info, violations = error_details_pb2.ErrorInfo(), []
    for detail in status.details:
        if detail.Is(runs_pb2.RunFailure.DESCRIPTOR):
            continue  # the run's failure kind: tests/e2e/test_failures.py
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(failure):
            violations += [(v.type, v.subject, v.description) for v in failure.violations]
        else:
            assert detail.Unpack(info)
    return info, violations


# -- a valid answer


async def test_a_valid_answer_is_structured_over_grpc_and_the_model_got_the_schema(
    served: Served,
) -> None:
    prompt = f"[[reply:{json.dumps(ADA)}]] who?"
    result = (await served.gw.stub.Complete(runs_pb2.CompleteRequest(run=run_input(prompt)))).result
    assert result.status == "completed", result.error
    assert json_format.MessageToDict(result.structured) == ADA
    assert json.loads(result.output) == ADA
    [request] = served.model.requests
    assert schema_sent(request.body) == PERSON
    assert scratch_dirs(result.run_id) == []  # the schema file went with the run
    payload = await served.payload_of(result.run_id)
    assert payload["structured"] == ADA and payload["status"] == "completed"
    assert "schema_errors" not in payload


async def test_a_valid_answer_is_structured_over_rest_and_in_the_stream(served: Served) -> None:
    body = {"prompt": f"[[reply:{json.dumps(ADA)}]] who?", "output_schema": PERSON}
    response = await served.http.post("/completion", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["structured"] == ADA

    lines = []
    async with served.http.stream("POST", "/completion/stream", json=body) as stream:
        assert stream.status_code == 200
        lines = [json.loads(line) async for line in stream.aiter_lines() if line.strip()]
    completed = [line["result"]["completed"] for line in lines if "completed" in line["result"]]
    assert [c["structured"] for c in completed] == [ADA]
    # grpc too: the stream's final message
    request = runs_pb2.StreamCompletionRequest(run=run_input(body["prompt"]))
    finals = [
        message.completed
        async for message in served.gw.stub.StreamCompletion(request)
        if message.WhichOneof("kind") == "completed"
    ]
    assert [json_format.MessageToDict(f.structured) for f in finals] == [ADA]
    assert all(schema_sent(r.body) == PERSON for r in served.model.requests)


async def test_a_run_without_a_schema_has_no_structured_and_no_text_format(
    served: Served,
) -> None:
    response = await served.http.post("/completion", json={"prompt": '[[reply:{"a": 1}]] x'})
    assert response.status_code == 200
    assert response.json()["structured"] is None  # an unset message field is null (CONTRACT)
    assert "format" not in served.model.requests[0].body.get("text", {})


# -- a wrong answer, repaired


async def test_a_wrong_answer_is_repaired_by_one_turn_on_the_same_thread(served: Served) -> None:
    body = {"prompt": f"[[reply:{WRONG}]] [[then:{json.dumps(ADA)}]] who?", "output_schema": PERSON}
    response = await served.http.post("/completion", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["structured"] == ADA and result["status"] == "completed"
    first, repair = served.model.requests
    assert schema_sent(repair.body) == PERSON  # --output-schema on the resume too
    assert repair.headers["thread-id"] == first.headers["thread-id"] == result["codex_session_id"]
    prompt = repair.user_texts()[-1]
    assert '/age: "old" is not of type "integer"' in prompt and "only" in prompt
    # The run's share of the thread's usage: both turns (codex reports it cumulatively).
    assert result["usage"]["input_tokens"] == 200
    detail = (await served.http.get(f"/sessions/{result['session_id']}")).json()
    [record] = detail["run_history"]
    assert record["status"] == "completed" and record["usage"]["input_tokens"] == 200
    # Both turns' events are the run's, in its log.
    events = (
        await served.http.get(
            f"/sessions/{result['session_id']}/tail",
            params={"include_events": "true", "tail_lines": "1000"},
        )
    ).text
    assert events.count('"turn.completed"') == 2


# -- a wrong answer that stays wrong


async def test_a_wrong_answer_that_stays_wrong_is_422_with_the_errors_over_rest(
    served: Served,
) -> None:
    body = {"prompt": '[[reply:{"name": "Ada"}]] who?', "output_schema": PERSON}
    response = await served.http.post("/completion", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "FAILED_PRECONDITION"
    assert error["reason"] == "OUTPUT_SCHEMA_MISMATCH"
    assert error["schema_errors"] == [{"path": "", "message": '"age" is a required property'}]
    assert "even after a repair turn" in error["error"]
    assert len(served.model.requests) == 2  # one repair, no more
    detail = (await served.http.get(f"/sessions/{error['session_id']}")).json()
    assert detail["status"] == "error"
    [record] = detail["run_history"]
    assert record["run_id"] == error["run_id"]
    assert record["status"] == "error" and "does not match output_schema" in record["error"]
    assert record["content_preview"] == '{"name": "Ada"}'  # the raw output, kept
    assert record["usage"]["input_tokens"] == 200
    payload = await served.payload_of(error["run_id"])
    assert payload["status"] == "error" and payload["output"] == '{"name": "Ada"}'
    assert payload["schema_errors"] == error["schema_errors"]
    assert "structured" not in payload
    assert scratch_dirs(error["run_id"]) == []


async def test_a_wrong_answer_is_failed_precondition_with_details_over_grpc(
    served: Served,
) -> None:
    request = runs_pb2.CompleteRequest(run=run_input(f"[[reply:{WRONG}]] who?"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.gw.stub.Complete(request)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, violations = details_of(caught.value)
    assert info.reason == "OUTPUT_SCHEMA_MISMATCH"
    assert set(info.metadata) == {"session_id", "run_id", "request_id"}
    assert violations == [("OUTPUT_SCHEMA", "/age", '"old" is not of type "integer"')]
    assert grpc_error_body(caught.value)["failure"]["kind"] == "output_schema_mismatch"
    # The session holds the run, as error, and is free for the next run.
    follow = runs_pb2.PromptSessionRequest(
        session_id=info.metadata["session_id"],
        run=run_input(f"[[reply:{json.dumps(ADA)}]] again"),
    )
    result = (await served.gw.stub.PromptSession(follow)).result
    assert json_format.MessageToDict(result.structured) == ADA


async def test_a_streamed_run_whose_answer_stays_wrong_ends_with_the_errors(
    served: Served,
) -> None:
    body = {"prompt": f"[[reply:{WRONG}]] who?", "output_schema": PERSON}
    async with served.http.stream("POST", "/completion/stream", json=body) as stream:
        assert stream.status_code == 200  # sent before the run ended
        lines = [json.loads(line) async for line in stream.aiter_lines() if line.strip()]
    error = lines[-1]["error"]
    assert error["http_status"] == 422 and error["code"] == "FAILED_PRECONDITION"
    assert error["schema_errors"] == [{"path": "/age", "message": '"old" is not of type "integer"'}]


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(f"```json\n{json.dumps(ADA)}\n```", id="fenced"),
        pytest.param(f"Here you go: {json.dumps(ADA)}", id="prose"),
    ],
)
async def test_an_answer_that_is_not_json_is_repaired_or_refused(
    served: Served, reply: str
) -> None:
    body = {"prompt": f"[[reply:{reply}]] who?", "output_schema": PERSON}
    response = await served.http.post("/completion", json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["schema_errors"]
    assert error["path"] == "" and "not JSON" in error["message"]
    assert "not JSON" in served.model.requests[1].user_texts()[-1]

    body["prompt"] = f"[[reply:{reply}]] [[then:{json.dumps(ADA)}]] who?"
    repaired = await served.http.post("/completion", json=body)
    assert repaired.status_code == 200 and repaired.json()["structured"] == ADA


# -- other run sources


async def test_a_continued_session_and_a_nudge_keep_the_schema(served: Served) -> None:
    first = await served.http.post("/completion", json={"prompt": "[[reply:hello]] hi"})
    session_id = first.json()["session_id"]
    prompted = await served.http.post(
        f"/sessions/{session_id}/prompt",
        json={"prompt": f"[[reply:{json.dumps(ADA)}]] who?", "output_schema": PERSON},
    )
    assert prompted.status_code == 200, prompted.text
    assert prompted.json()["structured"] == ADA
    resumed = served.model.requests[1]
    assert resumed.headers["thread-id"] == first.json()["codex_session_id"]
    assert schema_sent(resumed.body) == PERSON
    # A nudge without a schema of its own replays the session's last one (and its input).
    nudged = await served.http.post(f"/sessions/{session_id}/nudge", json={})
    assert nudged.status_code == 200, nudged.text
    assert nudged.json()["structured"] == ADA
    assert schema_sent(served.model.requests[2].body) == PERSON
    # Over gRPC, a nudge with a schema of its own uses it.
    other = {"type": "object", "required": ["n"]}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.gw.stub.NudgeSession(
            runs_pb2.NudgeSessionRequest(session_id=session_id, run=run_input("", other))
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert schema_sent(served.model.requests[3].body) == other


# -- hostile schemas: 400 before anything runs, on both protocols


def _deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for _ in range(levels - 1):
        schema = {"not": schema}
    return schema


async def _refused_over_grpc(served: Served, schema: dict[str, Any]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.gw.stub.Complete(runs_pb2.CompleteRequest(run=run_input("x", schema)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    info, _ = details_of(caught.value)
    assert info.metadata["field"] == "output_schema"
    return str(caught.value.details())


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        pytest.param({"description": "x" * MAX_SCHEMA_BYTES}, "at most 65536", id="65-kib"),
        pytest.param({"type": "integr"}, "not a valid JSON Schema", id="invalid"),
        pytest.param({"$ref": "http://127.0.0.1:9/s.json"}, "JSON Schema", id="remote-ref"),
        pytest.param(_deep(MAX_DEPTH + 1), f"deeper than {MAX_DEPTH}", id="too-deep"),
    ],
)
async def test_a_bad_schema_is_400_on_both_protocols_before_anything_runs(
    served: Served, schema: dict[str, Any], says: str
) -> None:
    assert says in await _refused_over_grpc(served, schema)
    response = await served.http.post("/completion", json={"prompt": "x", "output_schema": schema})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "output_schema" and says in response.json()["error"]
    assert served.model.requests == []
    assert (await served.http.get("/sessions")).json() == []


def _deep_struct_bytes(levels: int) -> bytes:
    """A CompleteRequest whose output_schema nests `levels` objects deep ({"a": {"a": ...}}),
    as raw protobuf: no client library builds such a message, a hostile client writes it."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    prefixes: list[bytes] = []
    size = 0  # of the innermost Struct: empty
    for _ in range(levels):
        value = b"\x2a" + varint(size)  # Value.struct_value = 5
        entry = b"\x0a\x01a" + b"\x12" + varint(size + len(value))  # key "a", value
        struct = b"\x0a" + varint(size + len(value) + len(entry))  # Struct.fields = 1
        prefixes.append(struct + entry + value)
        size += len(value) + len(entry) + len(struct)
    schema = b"".join(reversed(prefixes))
    run = b"\x12\x01x" + b"\x9a\x01" + varint(len(schema)) + schema  # prompt 2, schema 19
    return b"\x0a" + varint(len(run)) + run


async def test_a_100000_deep_schema_is_400_on_both_protocols_and_nothing_crashes(
    served: Served,
) -> None:
    prompt_tag = runs_pb2.RunInput.DESCRIPTOR.fields_by_name["prompt"].number
    schema_tag = runs_pb2.RunInput.DESCRIPTOR.fields_by_name["output_schema"].number
    assert (prompt_tag, schema_tag) == (2, 19)  # as _deep_struct_bytes writes them
    raw = served.gw.channel.unary_unary(
        "/codex_gateway.v1.GatewayService/Complete",
        request_serializer=None,
        response_deserializer=None,
    )
    # 50,000 levels: about what fits the server's message limit (over it: grpcio's own refusal).
    for levels in (40, 50_000):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw(_deep_struct_bytes(levels))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert "nested too deeply" in str(caught.value.details())

    # 40: protobuf's decoder refuses it in the gateway; 100,000: json's stack guard, in the bridge.
    for levels in (40, 100_000):
        body = '{"prompt": "x", "output_schema": ' + '{"a": ' * levels + "{}" + "}" * (levels + 1)
        response = await served.http.post(
            "/completion", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text[:500]
        assert "nested too deeply" in response.json()["error"], response.text[:500]
    assert served.model.requests == []
    assert (await served.http.get("/health")).json() == {"status": "ok"}
    ok = await served.http.post(
        "/completion", json={"prompt": f"[[reply:{json.dumps(ADA)}]] x", "output_schema": PERSON}
    )
    assert ok.status_code == 200 and ok.json()["structured"] == ADA


def test_deep_struct_bytes_decode_as_the_schema_they_claim() -> None:
    message = runs_pb2.CompleteRequest.FromString(_deep_struct_bytes(3))
    assert message.run.prompt == "x"
    assert json_format.MessageToDict(message.run.output_schema) == {"a": {"a": {"a": {}}}}
    assert isinstance(message.run.output_schema, struct_pb2.Struct)
