"""Classes of hostile input that are values in a request: timestamps at the edges of the date
range, every echoing input at 20 KB, and numbers no field expects; each over REST and gRPC."""

from __future__ import annotations

from typing import Any

from bench.hostile.calls import (
    DAILY,
    SID,
    grpc_probe,
    raw_json_probe,
    rest_probe,
    short,
    struct,
    value,
)
from bench.hostile.census import Probe
from bench.hostile.process import SECURE_TOKEN
from codex_gateway.v1 import runs_pb2, sessions_pb2, triggers_pb2

LONG = "x" * 20_000
"""Over grpcio's 16 KiB limit on metadata, and over the HTTP server's 16 KiB request head."""
MEDIUM = "x" * 12_000
"""Fits an HTTP request head, but not gRPC's 8 KiB default metadata budget."""

EDGE_TIMES: list[Any] = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "2024-06-01T00:00:00+24:00",
    "2024-06-01T00:00:00-24:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "NaN",
    "-Infinity",
    "99999999999999999999999999999",
    10**30,
    -1e308,
    "",
]
REDUCED_TIMES = [*EDGE_TIMES[:2], "NaN", 10**30]


def _trigger_with(field: str, moment: Any) -> dict[str, Any]:
    """A trigger whose date field `field` is `moment` (the schedule chosen so it is used)."""
    base: dict[str, Any] = {"prompt_text": "census"}
    if field == "schedule.at":
        return {**base, "schedule": {"mode": "once", "at": moment}}
    if field == "schedule.time":
        return {**base, "schedule": {"mode": "daily", "time": moment, "timezone": "UTC"}}
    if field == "last_attempt_at":
        return {**base, "schedule": {"mode": "once", "at": "2099-01-01T00:00:00Z"}, field: moment}
    return {**base, "schedule": {"mode": "interval", "interval_minutes": 5}, field: moment}


def timestamp_probes(reduced: bool) -> list[Probe]:
    """Every date field (a trigger's created_at, last_fired, last_attempt_at, schedule at and
    time, the sessions' `since`) at the edges of the range, by POST, PATCH and gRPC."""
    probes: list[Probe] = []
    fields = ["created_at", "last_fired", "last_attempt_at", "schedule.at", "schedule.time"]
    for n, moment in enumerate(REDUCED_TIMES if reduced else EDGE_TIMES):
        shown = short(repr(moment), 32)
        for field in fields:
            group = f"{field}={shown}"
            body = _trigger_with(field, moment)
            patch = {key: item for key, item in body.items() if key != "prompt_text"}
            if field.startswith("schedule."):
                patch = {"schedule": body["schedule"]}
            created = {**body, "id": f"ts-{n}-{field}"}
            probes += [
                rest_probe(group, "POST", "/triggers", f"{field}={shown}", json=created),
                rest_probe(group, "PATCH", "/triggers/census", f"{field}={shown}", json=patch),
                grpc_probe(
                    f"{field}={shown}",
                    group,
                    "CreateTriggers",
                    triggers_pb2.CreateTriggersRequest(
                        triggers=value({**created, "id": f"{created['id']}-grpc"})
                    ),
                ),
                grpc_probe(
                    f"{field}={shown}",
                    group,
                    "UpdateTrigger",
                    triggers_pb2.UpdateTriggerRequest(trigger_id="census", patch=struct(patch)),
                ),
            ]
        since = str(moment)
        probes += [
            rest_probe(
                f"since={shown}", "GET", "/sessions", f"since={shown}", params={"since": since}
            ),
            grpc_probe(
                f"since={shown}",
                f"since={shown}",
                "ListSessions",
                sessions_pb2.ListSessionsRequest(since=since),
            ),
        ]
    return probes


def _run(fields: dict[str, Any]) -> runs_pb2.RunInput:
    run = runs_pb2.RunInput(prompt="census")
    for key, item in fields.items():
        if key == "env":
            run.env.update(item)
        elif key == "metadata":
            run.metadata.CopyFrom(struct(item))
        elif key == "messages":
            run.messages.extend(runs_pb2.ChatMessage(**m) for m in item)
        else:
            setattr(run, key, item)
    return run


def echo_probes(reduced: bool) -> list[Probe]:
    """Every input an error message might quote, at 20 KB (and at 12 KB where 20 KB cannot get
    past the HTTP server's head limit): ids in paths, body fields, query values, headers."""
    sizes = [LONG] if reduced else [LONG, MEDIUM]
    probes: list[Probe] = []
    for text in sizes:
        kb = f"{len(text) // 1000}KB"
        paths: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", f"/sessions/{text}", {}),
            ("GET", f"/sessions/{text}/search", {"params": {"q": "a"}}),
            ("GET", f"/sessions/{text}/tail", {}),
            ("POST", f"/sessions/{text}/prompt", {"json": {"prompt": "hi"}}),
            ("POST", f"/sessions/{text}/nudge", {"json": {}}),
            ("POST", f"/sessions/{text}/cancel", {"json": {}}),
            ("GET", f"/triggers/{text}", {}),
            ("PATCH", f"/triggers/{text}", {"json": {"enabled": False}}),
            ("DELETE", f"/triggers/{text}", {}),
            ("GET", "/sessions", {"params": {"since": text}}),
            ("GET", "/triggers", {"params": {"trigger_file": text}}),
            ("GET", "/sessions/{sid}/search", {"params": {"q": text}}),
            ("GET", "/sessions/{sid}", {"params": {"tail_lines": text}}),
            ("GET", "/health", {"headers": {"X-Codex-Secure-Token": text}}),
            ("GET", "/sessions", {"headers": {"Authorization": f"Bearer {text}"}}),
            ("GET", "/sessions", {"headers": {"X-Request-Id": text}}),
            ("GET", "/sessions", {"headers": {"X-Census": text}}),
            (
                "POST",
                "/completion",
                {
                    "json": {"prompt": "s", "secure": True},
                    "headers": {"X-Codex-Secure-Token": text},
                },
            ),
        ]
        for method, path, kwargs in paths:
            probes.append(rest_probe(f"echo-rest-{kb}", method, path, kb, **kwargs))
    if reduced:
        del probes[3:15]
    fields: list[tuple[str, dict[str, Any]]] = [
        ("workspace", {"workspace": LONG}),
        ("cwd", {"cwd": LONG}),
        ("model", {"model": LONG}),
        ("session_id", {"session_id": LONG}),
        ("resume_session_id", {"resume_session_id": LONG}),
        ("env name", {"env": {LONG: "1"}}),
        ("env value", {"env": {"TASK_CENSUS": LONG}}),
        ("metadata key", {"metadata": {LONG: 1}}),
        ("message role", {"messages": [{"role": LONG, "content": "hi"}]}),
    ]
    if reduced:
        fields = fields[:3] + fields[5:6]
    for label, fields_json in fields:
        probes.append(
            rest_probe(
                "echo-body",
                "POST",
                "/completion",
                f"{label} 20KB",
                json={"prompt": "e", **fields_json},
            )
        )
        probes.append(
            grpc_probe(
                f"{label} 20KB",
                "echo-grpc",
                "Complete",
                runs_pb2.CompleteRequest(run=_run(fields_json)),
            )
        )
    trigger_fields: list[tuple[str, dict[str, Any]]] = [
        ("id", {"id": LONG}),
        ("cwd", {"cwd": LONG}),
        ("cron", {"schedule": {"mode": "cron", "cron": LONG}}),
        ("timezone", {"schedule": {"mode": "daily", "time": "10:00", "timezone": LONG}}),
        ("env name", {"env": {LONG: "x"}}),
    ]
    if reduced:
        trigger_fields = trigger_fields[:2]
    for label, extra in trigger_fields:
        body = {"prompt_text": "e", "schedule": DAILY, **extra}
        probes.append(
            rest_probe("echo-body", "POST", "/triggers", f"trigger {label} 20KB", json=body)
        )
        probes.append(
            grpc_probe(
                f"trigger {label} 20KB",
                "echo-grpc",
                "CreateTriggers",
                triggers_pb2.CreateTriggersRequest(triggers=value(body)),
            )
        )
    grpc_ids: list[tuple[str, Any]] = [
        ("GetSession", sessions_pb2.GetSessionRequest(session_id=LONG)),
        ("SearchSession", sessions_pb2.SearchSessionRequest(session_id=LONG, q="a")),
        ("TailSession", sessions_pb2.TailSessionRequest(session_id=LONG)),
        (
            "PromptSession",
            runs_pb2.PromptSessionRequest(session_id=LONG, run=_run({})),
        ),
        ("NudgeSession", runs_pb2.NudgeSessionRequest(session_id=LONG)),
        ("CancelSession", sessions_pb2.CancelSessionRequest(session_id=LONG)),
        ("GetTrigger", triggers_pb2.GetTriggerRequest(trigger_id=LONG)),
        ("UpdateTrigger", triggers_pb2.UpdateTriggerRequest(trigger_id=LONG)),
        ("DeleteTrigger", triggers_pb2.DeleteTriggerRequest(trigger_id=LONG)),
        ("ListSessions", sessions_pb2.ListSessionsRequest(since=LONG)),
        ("ListTriggers", triggers_pb2.ListTriggersRequest(trigger_file=LONG)),
        (
            "SearchSession",
            sessions_pb2.SearchSessionRequest(session_id=SID, q=LONG),
        ),
    ]
    if reduced:
        grpc_ids = grpc_ids[:2] + grpc_ids[6:7]
    for method, build in grpc_ids:
        probes.append(grpc_probe("20KB id", "echo-grpc", method, build))
    headers = [("x-codex-secure-token", MEDIUM), ("authorization", f"Bearer {MEDIUM}")]
    headers += [("x-request-id", MEDIUM), ("x-codex-secure-token", LONG)]
    if reduced:
        headers = headers[:1]
    for key, text in headers:
        probes.append(
            grpc_probe(
                f"metadata {key} {len(text) // 1000}KB",
                "echo-grpc",
                "Complete",
                runs_pb2.CompleteRequest(run=_run({"secure": True})),
                ((key, text),),
            )
        )
    probes.append(
        grpc_probe(
            "a wrong secure token",
            "echo-grpc",
            "Complete",
            runs_pb2.CompleteRequest(run=_run({"secure": True})),
            (("x-codex-secure-token", SECURE_TOKEN + "x"),),
        )
    )
    return probes


BIG = "1" + "0" * 399
"""A 400-digit integer, as JSON text."""
NUMBER_TEXTS = [
    BIG,
    f"-{BIG}",
    "-1",
    "0",
    "9223372036854775808",
    "1e308",
    "1.5",
    "NaN",
    "Infinity",
    "-Infinity",
    '"NaN"',
]
REDUCED_NUMBER_TEXTS = [BIG, "-1", "NaN", "Infinity"]
QUERY_NUMBERS = [BIG, "-1", "0", "2147483648", "-2147483649", "NaN", "inf", "1e3", "0x10"]
REDUCED_QUERY_NUMBERS = [BIG, "-1", "NaN"]
INT32_EDGES = [-(2**31), -1, 0, 2**31 - 1]
INT64_EDGES = [-(2**63), -1, 0, 2**63 - 1]


def number_probes(reduced: bool) -> list[Probe]:
    """400-digit integers, NaN and the infinities (as raw JSON text, which JSON allows neither),
    negative and huge counts and durations, in bodies, queries and gRPC fields."""
    probes: list[Probe] = []
    texts = REDUCED_NUMBER_TEXTS if reduced else NUMBER_TEXTS
    for text in texts:
        shown = short(text, 16)
        bodies = [
            ("POST", "/completion", f'{{"prompt":"n","metadata":{{"n":{text}}}}}', "metadata.n"),
            ("POST", "/completion", f'{{"prompt":"n","timeout_ms":{text}}}', "timeout_ms"),
            (
                "POST",
                "/completion",
                f'{{"prompt":"n","max_duration_ms":{text}}}',
                "max_duration_ms",
            ),
            (
                "POST",
                "/triggers",
                f'{{"prompt_text":"n","schedule":{{"mode":"interval","interval_minutes":{text}}}}}',
                "interval_minutes",
            ),
            (
                "POST",
                "/triggers",
                f'{{"prompt_text":"n","timeout_ms":{text},"schedule":{{"mode":"daily","time":"10:00"}}}}',
                "trigger timeout_ms",
            ),
            ("PATCH", "/triggers/census", f'{{"timeout_ms":{text}}}', "patch timeout_ms"),
            ("PATCH", "/triggers/census", f'{{"enabled":{text}}}', "patch enabled"),
        ]
        if reduced:
            bodies = bodies[:2] + bodies[3:4]
        for method, path, body, label in bodies:
            probes.append(raw_json_probe(f"{label}={shown}", "numbers-rest", method, path, body))
    queries = REDUCED_QUERY_NUMBERS if reduced else QUERY_NUMBERS
    for text in queries:
        for path, key in [
            ("/sessions/{sid}", "tail_lines"),
            ("/sessions/{sid}/tail", "tail_lines"),
            ("/sessions", "limit"),
            ("/sessions/{sid}/search", "max_results"),
            ("/sessions/{sid}/search", "tail_lines"),
            ("/sessions/{sid}/search", "min_score"),
        ]:
            params = {key: text, **({"q": "census"} if "search" in path else {})}
            probes.append(
                rest_probe("numbers-rest", "GET", path, f"{key}={short(text, 16)}", params=params)
            )
    for edge in INT32_EDGES[:2] if reduced else INT32_EDGES:
        probes += [
            grpc_probe(
                f"tail_lines={edge}",
                "numbers-grpc",
                "GetSession",
                sessions_pb2.GetSessionRequest(session_id=SID, tail_lines=edge),
            ),
            grpc_probe(
                f"tail_lines={edge}",
                "numbers-grpc",
                "TailSession",
                sessions_pb2.TailSessionRequest(session_id=SID, tail_lines=edge),
            ),
            grpc_probe(
                f"max_results={edge}, tail_lines={edge}",
                "numbers-grpc",
                "SearchSession",
                sessions_pb2.SearchSessionRequest(
                    session_id=SID, q="census", max_results=edge, tail_lines=edge
                ),
            ),
            grpc_probe(
                f"limit={edge}",
                "numbers-grpc",
                "ListSessions",
                sessions_pb2.ListSessionsRequest(limit=edge),
            ),
        ]
    for score in [float("nan"), float("inf"), float("-inf"), -1.0, 1e308]:
        probes.append(
            grpc_probe(
                f"min_score={score}",
                "numbers-grpc",
                "SearchSession",
                sessions_pb2.SearchSessionRequest(session_id=SID, q="census", min_score=score),
            )
        )
    for edge in INT64_EDGES[:2] if reduced else INT64_EDGES:
        for key in ["timeout_ms", "max_duration_ms"]:
            probes.append(
                grpc_probe(
                    f"{key}={edge}",
                    "numbers-grpc",
                    "Complete",
                    runs_pb2.CompleteRequest(run=_run({key: edge})),
                )
            )
    for number in [1e308, -1.0, 10.0**20, 0.5]:
        probes.append(
            grpc_probe(
                f"trigger timeout_ms={number}",
                "numbers-grpc",
                "CreateTriggers",
                triggers_pb2.CreateTriggersRequest(
                    triggers=value({"prompt_text": "n", "timeout_ms": number, "schedule": DAILY})
                ),
            )
        )
    return probes
