"""The route table comes from the descriptors: one binding and one live route per RPC."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2

from bridge.app import create_app
from bridge.bindings import PathTemplate, bindings_from_service, service_descriptor
from bridge.routes import FallbackRoute, TemplateRoute, split_raw_path

# The documented API plus CONTRACT.md's streaming and cancel operations, and forks and changes
# (issue 15).
EXPECTED = [
    ("Health", "GET", "/health", "", ""),
    ("GetInfo", "GET", "/", "", ""),
    ("GetMetrics", "GET", "/metrics", "", "body"),
    ("GetStatus", "GET", "/status", "", ""),
    ("Complete", "POST", "/completion", "run", "result"),
    ("StreamCompletion", "POST", "/completion/stream", "run", ""),
    ("ListSessions", "GET", "/sessions", "", "sessions"),
    ("GetSession", "GET", "/sessions/{session_id}", "", "session"),
    ("SearchSession", "GET", "/sessions/{session_id}/search", "", ""),
    ("PromptSession", "POST", "/sessions/{session_id}/prompt", "run", "result"),
    ("NudgeSession", "POST", "/sessions/{session_id}/nudge", "run", "result"),
    ("ForkSession", "POST", "/sessions/{session_id}/fork", "run", "result"),
    ("GetSessionChanges", "GET", "/sessions/{session_id}/changes", "", ""),
    ("CancelSession", "POST", "/sessions/{session_id}/cancel", "*", ""),
    ("TailSession", "GET", "/sessions/{session_id}/tail", "", ""),
    ("ListTriggers", "GET", "/triggers", "", ""),
    ("GetTrigger", "GET", "/triggers/{trigger_id}", "", ""),
    ("CreateTriggers", "POST", "/triggers", "triggers", ""),
    ("UpdateTrigger", "PATCH", "/triggers/{trigger_id}", "patch", ""),
    ("DeleteTrigger", "DELETE", "/triggers/{trigger_id}", "", ""),
]


def test_every_rpc_has_exactly_one_binding() -> None:
    service = service_descriptor()
    bindings = bindings_from_service(service)
    assert sorted(b.method.name for b in bindings) == sorted(m.name for m in service.methods)
    for method in service.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        assert rule.WhichOneof("pattern"), method.name
        assert not rule.additional_bindings, method.name


def test_bindings_are_the_documented_table() -> None:
    table = [
        (b.method.name, b.http_method, b.template.text, b.body, b.response_body)
        for b in bindings_from_service(service_descriptor())
    ]
    assert table == EXPECTED


def test_every_binding_has_one_live_route_and_the_fallback_is_last() -> None:
    app = create_app("127.0.0.1:1")
    routes = [r for r in app.router.routes if isinstance(r, TemplateRoute)]
    bindings = bindings_from_service(service_descriptor())
    for binding in bindings:
        matching = [r for r in routes if r.name == binding.method.name]
        assert len(matching) == 1, binding.method.name
        assert matching[0].template == binding.template
        assert matching[0].methods == binding.http_methods
    assert isinstance(app.router.routes[-1], FallbackRoute)


def test_rpc_paths_and_message_classes_come_from_the_descriptor() -> None:
    bindings = {b.method.name: b for b in bindings_from_service(service_descriptor())}
    complete = bindings["Complete"]
    assert complete.rpc_path == "/codex_gateway.v1.GatewayService/Complete"
    assert complete.request_class.DESCRIPTOR.full_name == "codex_gateway.v1.CompleteRequest"
    assert complete.response_class.DESCRIPTOR.full_name == "codex_gateway.v1.CompleteResponse"
    assert bindings["TailSession"].server_streaming
    assert not complete.server_streaming


@pytest.mark.parametrize(
    ("name", "idempotent", "methods"),
    [
        pytest.param("Health", True, {"GET", "HEAD"}, id="get-is-idempotent-and-has-head"),
        pytest.param("DeleteTrigger", True, {"DELETE"}, id="delete-is-idempotent"),
        pytest.param("Complete", False, {"POST"}, id="post-is-not"),
        pytest.param("UpdateTrigger", False, {"PATCH"}, id="patch-is-not"),
    ],
)
def test_idempotence_and_methods(name: str, idempotent: bool, methods: set[str]) -> None:
    binding = next(b for b in bindings_from_service(service_descriptor()) if b.method.name == name)
    assert binding.idempotent is idempotent
    assert binding.http_methods == methods


@pytest.mark.parametrize(
    ("name", "query_fields"),
    [
        pytest.param("GetSession", {"tail_lines", "tail", "include_stderr", "include_events"}),
        pytest.param("ListSessions", {"limit", "since"}),
        pytest.param("CancelSession", set(), id="body-star-takes-no-query"),
        pytest.param("Complete", set(), id="only-the-body-field"),
        pytest.param("CreateTriggers", {"trigger_file"}),
        pytest.param("UpdateTrigger", {"trigger_file"}, id="path-and-body-excluded"),
        pytest.param("SearchSession", {"q", "fuzzy", "max_results", "tail_lines", "min_score"}),
    ],
)
def test_query_fields_are_the_unbound_top_level_scalars(name: str, query_fields: set[str]) -> None:
    binding = next(b for b in bindings_from_service(service_descriptor()) if b.method.name == name)
    assert set(binding.query_fields) == query_fields


@pytest.mark.parametrize(
    ("text", "segments", "variables"),
    [
        pytest.param("/", (), (), id="root"),
        pytest.param("/health", ("health",), (), id="literal"),
        pytest.param("/sessions/{session_id}", ("sessions", None), ("session_id",), id="var"),
        pytest.param("/a/{x=*}/b", ("a", None, "b"), ("x",), id="explicit-star"),
        pytest.param("/a/{run.session_id}", ("a", None), ("run.session_id",), id="nested"),
    ],
)
def test_path_template_parse(
    text: str, segments: tuple[str | None, ...], variables: tuple[str, ...]
) -> None:
    template = PathTemplate.parse(text)
    assert template.segments == segments
    assert template.variables == variables


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("health", id="relative"),
        pytest.param("/a/{x=b/*}", id="multi-segment"),
        pytest.param("/a/**", id="double-star"),
        pytest.param("/a/{x}:cancel", id="verb"),
        pytest.param("/a/{x}/{x}", id="repeated-variable"),
        pytest.param("/a//b", id="empty-segment"),
    ],
)
def test_path_template_refuses_what_it_cannot_match(text: str) -> None:
    with pytest.raises(ValueError, match="template"):
        PathTemplate.parse(text)


@pytest.mark.parametrize(
    ("raw_path", "expected"),
    [
        pytest.param(b"/", (), id="root"),
        pytest.param(b"/health", (b"health",), id="one"),
        pytest.param(b"/health/", (b"health",), id="one-trailing-slash-dropped"),
        pytest.param(b"/health//", (b"health", b""), id="only-one-dropped"),
        pytest.param(b"//sessions", (b"", b"sessions"), id="double-leading-slash"),
        pytest.param(b"/sessions/a%2Fb", (b"sessions", b"a%2Fb"), id="encoded-slash-kept"),
        pytest.param(b"*", None, id="asterisk-form"),
        pytest.param(b"", None, id="empty"),
    ],
)
def test_split_raw_path(raw_path: bytes, expected: tuple[bytes, ...] | None) -> None:
    assert split_raw_path({"type": "http", "raw_path": raw_path, "path": ""}) == expected


@pytest.mark.parametrize(
    ("template", "raw_path", "expected"),
    [
        pytest.param("/sessions/{session_id}", b"/sessions/abc", {"session_id": b"abc"}),
        pytest.param("/sessions/{session_id}", b"/sessions/a%2Fb", {"session_id": b"a%2Fb"}),
        pytest.param("/sessions/{session_id}", b"/sessions/", None, id="empty-variable"),
        pytest.param("/sessions/{session_id}", b"/sessions/a/b", None, id="too-long"),
        pytest.param("/sessions/{session_id}/search", b"/sessions/a%2Fsearch", None, id="no-%2F"),
        pytest.param("/health", b"/Health", None, id="case-sensitive"),
        pytest.param("/", b"/", {}, id="root"),
    ],
)
def test_path_template_match(
    template: str, raw_path: bytes, expected: dict[str, bytes] | None
) -> None:
    segments = split_raw_path({"type": "http", "raw_path": raw_path, "path": ""})
    assert segments is not None
    assert PathTemplate.parse(template).match(segments) == expected


def test_a_scope_without_raw_path_uses_the_decoded_path() -> None:
    assert split_raw_path({"type": "http", "path": "/sessions/a b"}) == (b"sessions", b"a%20b")
