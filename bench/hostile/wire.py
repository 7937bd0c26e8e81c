"""Classes of hostile input that are about the wire rather than a value: bodies under other
content types and requests under foreign or missing Host headers (REST); undecodable messages to
every method, NaN and the infinities in Struct fields, and every string field at 20 KB (gRPC)."""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor, message, message_factory

from bench.hostile.calls import (
    DAILY,
    SERVICE,
    SID,
    call_bytes,
    grpc_probe,
    raw,
    rest_probe,
    struct,
    value,
)
from bench.hostile.census import Probe
from bench.hostile.inputs import LONG
from codex_gateway.v1 import runs_pb2, triggers_pb2

RUN_BODY = b'{"prompt":"census content type"}'
CONTENT_TYPES = [
    ("text/plain", RUN_BODY),
    ("text/plain;charset=utf-8", RUN_BODY),
    ("application/x-www-form-urlencoded", b"prompt=census"),
    ("application/x-www-form-urlencoded", RUN_BODY),
    (
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhi\r\n--b--\r\n',
    ),
    ("application/xml", RUN_BODY),
    ("application/json; charset=utf-16", RUN_BODY),
    ("APPLICATION/JSON", RUN_BODY),
    ("application/problem+json", RUN_BODY),
    ("", RUN_BODY),
    (None, RUN_BODY),
]
BODIES = [
    ("invalid UTF-8", b'{"prompt":"\xff\xfe"}'),
    ("truncated", b'{"prompt":"hi'),
    ("20,000-deep arrays", b"[" * 20_000 + b"]" * 20_000),
    ("20,000-deep objects", b'{"a":' * 20_000 + b"1" + b"}" * 20_000),
    ("a top-level array", b'[{"prompt":"hi"}]'),
    ("null", b"null"),
    ("a BOM first", b'\xef\xbb\xbf{"prompt":"hi"}'),
    ("duplicate keys", b'{"prompt":"a","prompt":"b"}'),
    ("empty", b""),
]
HOSTS = [
    "evil.example",
    "evil.example:80",
    "127.0.0.1.evil.example",
    "localhost",
    "0.0.0.0",  # noqa: S104  # a Host header, not a bind address
    "[::1]",
    "",
    "127.0.0.1:1",
    "x" * 20_000,
]


def content_probes(reduced: bool) -> list[Probe]:
    """Run bodies under content types a plain HTML form can send, malformed JSON bodies, and
    requests with foreign, empty, duplicate or missing Host headers (POST /completion starts a
    run: a 2xx in this class is a run a web page could start)."""
    probes: list[Probe] = []
    types = CONTENT_TYPES[:4] if reduced else CONTENT_TYPES
    for content_type, body in types:
        headers = {} if content_type is None else {"Content-Type": content_type}
        label = f"Content-Type {content_type!r}" if content_type is not None else "no Content-Type"
        foreign = "json" not in (content_type or "").lower()
        probes.append(
            rest_probe(
                "content-type",
                "POST",
                "/completion",
                label,
                refusal_expected=foreign,
                content=body,
                headers=headers,
            )
        )
        if not reduced:
            probes.append(
                rest_probe(
                    "content-type",
                    "POST",
                    "/triggers",
                    label,
                    refusal_expected=foreign,
                    content=b'{"id":"ct","prompt_text":"x","schedule":{"mode":"daily","time":"10:00"}}',
                    headers=headers,
                )
            )
    for label, body in BODIES[:3] if reduced else BODIES:
        headers = {"Content-Type": "application/json"}
        probes.append(
            rest_probe("bodies", "POST", "/completion", label, content=body, headers=headers)
        )
        if not reduced:
            probes.append(
                rest_probe("bodies", "POST", "/triggers", label, content=body, headers=headers)
            )
    hosts = HOSTS[:2] if reduced else HOSTS
    for host in hosts:
        shown = f"Host {host[:24]!r}"
        foreign = "evil" in host
        probes.append(
            rest_probe(
                "hosts", "GET", "/sessions", shown, refusal_expected=foreign, headers={"Host": host}
            )
        )
        if not reduced:
            probes.append(
                rest_probe(
                    "hosts",
                    "POST",
                    "/completion",
                    shown,
                    refusal_expected=foreign,
                    json={"prompt": "host"},
                    headers={"Host": host, "Origin": "http://evil.example"},
                )
            )
    raws = [
        ("HTTP/1.1, no Host", b"GET /sessions HTTP/1.1\r\nConnection: close\r\n\r\n"),
        ("HTTP/1.0, no Host", b"GET /sessions HTTP/1.0\r\n\r\n"),
        (
            "two Host headers",
            b"GET /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n"
            b"Connection: close\r\n\r\n",
        ),
        (
            "absolute-form target",
            b"GET http://evil.example/sessions HTTP/1.1\r\nHost: evil.example\r\n"
            b"Connection: close\r\n\r\n",
        ),
        (
            "POST, no Host",
            b"POST /completion HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n"
            b'Connection: close\r\n\r\n{"prompt":"nh"}',
        ),
    ]
    for label, request in raws[:2] if reduced else raws:
        send = functools.partial(raw, request=request)
        foreign = b"evil" in request or b"text/plain" in request
        probes.append(Probe(f"REST raw {label}", "hosts-raw", send, refusal_expected=foreign))
    return probes


UNDECODABLE = [
    ("0xff bytes", b"\xff\xff\xff\xff"),
    ("a varint overflow", b"\x08" + b"\xff" * 10 + b"\x01"),
    ("a truncated field", b"\x0a\x10abc"),
    ("a wrong wire type", b"\x0d\x00"),
    ("invalid UTF-8 in a string", b"\x0a\x02\xff\xfe"),
]


def _message_class(descriptor_: descriptor.Descriptor) -> type[message.Message]:
    return message_factory.GetMessageClass(descriptor_)


def _base_request(method: str) -> Any:
    """A valid request of `method` naming the census's session or trigger."""
    request: Any = _message_class(SERVICE.methods_by_name[method].input_type)()
    fields = request.DESCRIPTOR.fields_by_name
    if "session_id" in fields and fields["session_id"].message_type is None:
        request.session_id = SID
    if "trigger_id" in fields:
        request.trigger_id = "census"
    if "run" in fields:
        request.run.prompt = "census"
    if "q" in fields:
        request.q = "census"
    if method == "CreateTriggers":
        request.triggers.CopyFrom(value({"prompt_text": "g", "schedule": DAILY}))
    return request


def _string_paths(method: str) -> list[str]:
    """Each string field of the method's request, with the run's fields as `run.<name>`, plus
    map keys and values, a chat message's fields and a Struct's key."""
    paths: list[str] = []
    request = SERVICE.methods_by_name[method].input_type
    for field in request.fields:
        if field.type == descriptor.FieldDescriptor.TYPE_STRING:
            paths.append(field.name)
        elif field.message_type is not None and field.message_type.name == "RunInput":
            for inner in field.message_type.fields:
                if inner.type == descriptor.FieldDescriptor.TYPE_STRING:
                    paths.append(f"run.{inner.name}")
            paths += ["run.env key", "run.env value", "run.messages", "run.metadata key"]
        elif field.message_type is not None and field.message_type.name in ("Struct", "Value"):
            paths.append(f"{field.name} key")
    return paths


def _with_long(method: str, path: str) -> message.Message:
    request: Any = _base_request(method)
    if path.startswith("run."):
        run = request.run
        name = path.removeprefix("run.")
        if name == "env key":
            run.env[LONG] = "1"
        elif name == "env value":
            run.env["TASK_CENSUS"] = LONG
        elif name == "messages":
            run.messages.append(runs_pb2.ChatMessage(role="user", content=LONG))
        elif name == "metadata key":
            run.metadata.CopyFrom(struct({LONG: 1}))
        else:
            setattr(run, name, LONG)
    elif path == "patch key":
        request.patch.CopyFrom(struct({LONG: 1}))
    elif path == "triggers key":
        request.triggers.CopyFrom(value({"prompt_text": "g", "schedule": DAILY, LONG: 1}))
    else:
        setattr(request, path, LONG)
    return request  # type: ignore[no-any-return]  # a request message


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


def grpc_probes(reduced: bool) -> list[Probe]:
    """Undecodable bytes to every method; NaN and the infinities in every Struct field; every
    string field of every request at 20 KB."""
    probes: list[Probe] = []
    payloads = UNDECODABLE[:1] if reduced else UNDECODABLE
    for method in SERVICE.methods_by_name:
        for label, payload in payloads:
            probes.append(
                Probe(
                    f"gRPC {method} {label}",
                    "undecodable",
                    functools.partial(call_bytes, method=method, payload=payload),
                )
            )
    for number in NON_FINITE[:1] if reduced else NON_FINITE:
        structs: list[tuple[str, str, Any]] = [
            (
                "Complete",
                "run.metadata",
                runs_pb2.CompleteRequest(
                    run=runs_pb2.RunInput(prompt="n", metadata=struct({"n": number}))
                ),
            ),
            (
                "StreamCompletion",
                "run.metadata",
                runs_pb2.StreamCompletionRequest(
                    run=runs_pb2.RunInput(prompt="n", metadata=struct({"n": {"deep": [number]}}))
                ),
            ),
            (
                "PromptSession",
                "run.metadata",
                runs_pb2.PromptSessionRequest(
                    session_id=SID,
                    run=runs_pb2.RunInput(prompt="n", metadata=struct({"n": number})),
                ),
            ),
            (
                "CreateTriggers",
                "interval_minutes",
                triggers_pb2.CreateTriggersRequest(
                    triggers=value(
                        {
                            "prompt_text": "n",
                            "schedule": {"mode": "interval", "interval_minutes": number},
                        }
                    )
                ),
            ),
            (
                "CreateTriggers",
                "timeout_ms",
                triggers_pb2.CreateTriggersRequest(
                    triggers=value({"prompt_text": "n", "timeout_ms": number, "schedule": DAILY})
                ),
            ),
            (
                "CreateTriggers",
                "created_at",
                triggers_pb2.CreateTriggersRequest(
                    triggers=value({"prompt_text": "n", "created_at": number, "schedule": DAILY})
                ),
            ),
            (
                "UpdateTrigger",
                "timeout_ms",
                triggers_pb2.UpdateTriggerRequest(
                    trigger_id="census", patch=struct({"timeout_ms": number})
                ),
            ),
            (
                "UpdateTrigger",
                "enabled",
                triggers_pb2.UpdateTriggerRequest(
                    trigger_id="census", patch=struct({"enabled": number})
                ),
            ),
        ]
        for method, label, build in structs[:4] if reduced else structs:
            probes.append(grpc_probe(f"{label}={number}", "non-finite", method, build))
    for method in SERVICE.methods_by_name:
        paths = _string_paths(method)
        for path in paths[:2] if reduced else paths:
            probes.append(
                grpc_probe(f"{path}=20KB", "long-strings", method, _with_long(method, path))
            )
    return probes
