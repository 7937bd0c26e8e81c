"""Properties of the checks that stand between open-ended client input and the machine: the
request `env` check, the agent's inherited environment, `trigger_file` confinement, and the
bridge's query and path parsing. (Globs, workspace confinement, events, prompts, schedules and
search have theirs beside their modules in tests/gateway.)"""

from __future__ import annotations

import contextlib
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.bindings import bindings_from_service, service_descriptor
from bridge.errors import InvalidRequest as BridgeInvalidRequest
from bridge.routes import split_raw_path
from bridge.transcode import parse_query, parse_scalar
from gateway.automation.triggers import TriggerFiles
from gateway.config import SECRET_VARIABLES, Config, ConfigError, TriggerConfig
from gateway.errors import InvalidRequest, quote
from gateway.runs.childenv import blocked_reason, check_request_env, child_environment
from gateway.runs.workspace import resolve_workspace

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# CONTRACT.md's list of request env names that change what runs or where (prefixes end in _).
CONTRACT_BLOCKED_NAMES = (
    "PATH",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "IFS",
    "CODEX_HOME",
    "OPENAI_BASE_URL",
    "HOME",
    "NODE_OPTIONS",
)
CONTRACT_BLOCKED_PREFIXES = ("LD_", "DYLD_", "PYTHON", "PERL5", "RUBY")
NAME_TAILS = st.from_regex(r"[A-Za-z0-9_]{0,12}", fullmatch=True)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
BINDINGS = bindings_from_service(service_descriptor())


def any_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(
            c.upper() if u else c.lower() for c, u in zip(name, upper, strict=True)
        )
    )


blocked_names = st.one_of(
    st.sampled_from(CONTRACT_BLOCKED_NAMES).flatmap(any_case),
    st.tuples(st.sampled_from(CONTRACT_BLOCKED_PREFIXES), NAME_TAILS)
    .map("".join)
    .flatmap(any_case),
    st.tuples(NAME_TAILS, st.sampled_from(["_PROXY", "_proxy", "_Proxy"])).map("".join),
)


# --- the request env ------------------------------------------------------------------------------


env_names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True),
    blocked_names,
    st.text(max_size=12),
)


@given(st.dictionaries(env_names, st.text(max_size=20), max_size=6))
def test_every_accepted_env_name_matches_the_regex_and_is_not_blocked(env: dict[str, str]) -> None:
    try:
        accepted = check_request_env(env)
    except InvalidRequest as exc:
        assert exc.field == "env"
        malformed = [name for name in env if not ENV_NAME.fullmatch(name)]
        blocked = [name for name in env if name not in malformed and blocked_reason(name)]
        with_nul = [name for name, value in env.items() if "\0" in value]
        if malformed:  # each refusal names every offender of its kind
            assert all(repr(name) in exc.message for name in malformed), exc.message
        elif blocked:
            assert all(name in exc.message for name in blocked), exc.message
        else:
            assert with_nul and any(name in exc.message for name in with_nul), exc.message
        return
    assert accepted == env
    for name, value in accepted.items():
        assert ENV_NAME.fullmatch(name), name
        assert blocked_reason(name) is None, name
        assert "\0" not in value


@given(blocked_names, st.text(max_size=20).filter(lambda v: "\0" not in v))
def test_contract_blocked_names_are_refused_in_any_case_and_named(name: str, value: str) -> None:
    assume(ENV_NAME.fullmatch(name))
    assert blocked_reason(name) is not None
    with pytest.raises(InvalidRequest) as refused:
        check_request_env({"SAFE_NAME": "ok", name: value})
    assert name in refused.value.message
    assert "SAFE_NAME" not in refused.value.message


@given(
    st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True), TEXT, max_size=5),
    st.dictionaries(
        st.from_regex(r"FAKE_[A-Z0-9_]{1,8}", fullmatch=True),
        TEXT.filter(lambda value: "\0" not in value),
        max_size=5,
    ),
)
def test_the_checked_request_env_is_layered_over_the_inherited_one(
    base: dict[str, str], request_env: dict[str, str]
) -> None:
    before = dict(base)
    assert child_environment(base, check_request_env(request_env)) == {**base, **request_env}
    assert base == before


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp).resolve()


def _secret_value(name: str) -> str:
    """A valid value of the secret `name` (the webhook URL is a secret too, and a URL; the
    database URL holds a password)."""
    if name.endswith("_JSON"):
        return '{"X-Secret": "secret-header"}'
    if name == "CODEX_GATEWAY_DATABASE_URL":
        return "postgresql://gateway:secret-password@127.0.0.1:9/gateway"
    if name.endswith("_URL"):
        return f"http://127.0.0.1:9/secret-{name.lower()}"
    return f"secret-{name.lower()}"


SECRET_VALUES = {name: _secret_value(name) for name in SECRET_VARIABLES}


@settings(deadline=None)
@given(
    st.dictionaries(
        st.one_of(
            st.sampled_from(["PATH", "HOME", "LANG", "LC_ALL", "OPENAI_API_KEY", "TZ"]),
            st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True),
        ),
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=10),
        max_size=8,
    ),
    st.lists(
        st.one_of(
            st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True),
            st.sampled_from(sorted(SECRET_VARIABLES)),
        ),
        max_size=3,
    ),
)
def test_the_agent_never_inherits_a_gateway_secret(
    environ: dict[str, str], extra_names: list[str]
) -> None:
    environ = {**environ, **SECRET_VALUES, "CODEX_GATEWAY_CHILD_ENV": ",".join(extra_names)}
    with scratch_dir() as here:
        try:
            config = Config.from_env(environ, cwd=here)
        except ConfigError as exc:
            assert SECRET_VARIABLES & set(extra_names)
            assert "CODEX_GATEWAY_CHILD_ENV" in str(exc)
            return
    assert not SECRET_VARIABLES & set(extra_names)
    assert not SECRET_VARIABLES & set(config.child_env)
    inherited = " ".join(config.child_env.values())
    assert "secret-" not in inherited
    for name, value in config.child_env.items():
        assert not name.startswith(("CODEX_GATEWAY_", "SESSION_WEBHOOK_")), name
        if name != "CODEX_HOME":  # the gateway hands codex its configured home
            assert environ[name] == value


# --- trigger_file confinement ---------------------------------------------------------------------

# "loop" (a symlink to itself) is left out: with "out" after "loop/.." it escapes today, which
# test_a_symlink_loop_cannot_smuggle_a_path_out_of_its_root pins; put it back once that passes.
SEGMENTS = st.sampled_from(
    ["..", ".", "", "a", "b", "t.json", "out", "loop", "~", "/etc", "a/../..", " ", "é", "x" * 300]
)


def trigger_tree(base: Path) -> tuple[TriggerFiles, Path]:
    root = base / "triggers"
    (root / "a" / "b").mkdir(parents=True)
    (base / "outside").mkdir()
    (root / "out").symlink_to(base / "outside")
    (root / "loop").symlink_to(root / "loop")
    files = TriggerFiles(TriggerConfig(default_file=root / "triggers.json", roots=(root,)))
    return files, root


@settings(max_examples=300, deadline=None)
@given(st.lists(SEGMENTS, max_size=6), st.sampled_from(["", "relative-to-root", "/"]))
def test_a_resolved_trigger_file_is_always_inside_a_root_and_not_a_directory(
    parts: list[str], prefix: str
) -> None:
    with scratch_dir() as base:
        files, root = trigger_tree(base)
        raw = "/".join(parts)
        if prefix == "relative-to-root":
            raw = f"{root}/{raw}"
        elif prefix == "/":
            raw = "/" + raw
        try:
            path = files.resolve(raw)
        except InvalidRequest as exc:
            assert exc.field == "trigger_file"
            # Nothing revealed but (a short prefix of) what was asked for.
            shown = exc.message.replace(quote(raw.strip()), "").replace(raw.strip(), "")
            assert str(base) not in shown
        else:
            assert path.resolve().is_relative_to(root)
            assert not path.is_dir()
        assert list((base / "outside").iterdir()) == []  # nothing created, in or out


@settings(max_examples=300, deadline=None)
@given(st.lists(SEGMENTS, max_size=6), st.booleans())
def test_a_resolved_workspace_really_is_inside_a_root(parts: list[str], absolute: bool) -> None:
    """tests/gateway/test_workspace.py checks the returned path; this follows it on disk."""
    with scratch_dir() as base:
        _, root = trigger_tree(base)  # the same tree serves as a workspace root
        requested = ("/".join([str(root), *parts])) if absolute else "/".join(parts)
        try:
            resolved = resolve_workspace(requested, default=root, roots=[root])
        except InvalidRequest as exc:
            assert exc.field == "workspace"
            return
        assert resolved.resolve().is_relative_to(root) and resolved.is_dir()


@pytest.mark.parametrize(
    ("what", "raw"),
    [
        ("trigger_file", "loop/../out/t.json"),
        ("trigger_file", "a/../loop/../out/b/t.json"),
        ("workspace", "loop/../out"),
        ("workspace", "a/../loop/../out/b"),
    ],
)
def test_a_symlink_loop_cannot_smuggle_a_path_out_of_its_root(what: str, raw: str) -> None:
    with scratch_dir() as base:
        files, root = trigger_tree(base)
        (base / "outside" / "b").mkdir()
        try:
            if what == "trigger_file":
                found = files.resolve(raw)
            else:
                found = resolve_workspace(raw, default=root, roots=[root])
        except InvalidRequest:
            return
        assert found.resolve().is_relative_to(root), f"{raw!r} -> {found.resolve()}"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("x" * 256, id="component-over-name-max"),
        pytest.param("a/" + "y" * 300 + "/t.json", id="inner-component-over-name-max"),
    ],
)
def test_an_overlong_trigger_file_name_is_invalid_not_an_os_error(raw: str) -> None:
    with scratch_dir() as base:
        files, _ = trigger_tree(base)
        with pytest.raises(InvalidRequest):
            files.resolve(raw)


def test_a_trigger_file_through_a_symlink_loop_is_invalid_not_a_runtime_error() -> None:
    with scratch_dir() as base:
        files, _ = trigger_tree(base)
        with pytest.raises(InvalidRequest):
            files.resolve("loop/t.json")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("x" * 256, id="component-over-name-max"),
        pytest.param("a/" + "y" * 300, id="inner-component-over-name-max"),
    ],
)
def test_an_overlong_workspace_name_is_invalid_not_an_os_error(raw: str) -> None:
    with scratch_dir() as base:
        (base / "a").mkdir()
        with pytest.raises(InvalidRequest):
            resolve_workspace(raw, default=base, roots=[base])


# --- the bridge's query and path parsing ----------------------------------------------------------

PAIRS = st.lists(st.tuples(TEXT, TEXT), max_size=6)


@given(PAIRS, st.sampled_from([urllib.parse.quote, urllib.parse.quote_plus]))
def test_any_encoded_query_parses_back_to_its_pairs(
    pairs: list[tuple[str, str]], quote_via: object
) -> None:
    query = urllib.parse.urlencode(pairs, quote_via=quote_via)  # type: ignore[arg-type]
    expected = [pair for pair in pairs if pair != ("", "")] if query else []
    parsed = parse_query(query.encode())
    # An empty name with an empty value encodes as "=": kept; only empty pieces are skipped.
    assert [p for p in parsed if p != ("", "")] == expected


@given(st.binary(max_size=80))
def test_any_query_bytes_parse_or_are_a_400(raw: bytes) -> None:
    with contextlib.suppress(BridgeInvalidRequest):
        for name, value in parse_query(raw):
            assert isinstance(name, str) and isinstance(value, str)


TAIL_LINES = next(b for b in BINDINGS if b.method.name == "GetSession").query_fields["tail_lines"]
INT32 = (-(2**31), 2**31 - 1)


@given(st.integers(min_value=-(2**80), max_value=2**80))
def test_an_integer_query_value_round_trips_or_is_out_of_range(number: int) -> None:
    what = "query parameter 'tail_lines'"
    low, high = INT32
    assert TAIL_LINES.type == TAIL_LINES.TYPE_INT32
    if low <= number <= high:
        assert parse_scalar(TAIL_LINES, str(number), what=what) == number
    else:
        with pytest.raises(BridgeInvalidRequest, match="out of range"):
            parse_scalar(TAIL_LINES, str(number), what=what)


@given(TEXT)
def test_any_integer_query_text_parses_or_is_a_400_naming_the_parameter(text: str) -> None:
    try:
        value = parse_scalar(TAIL_LINES, text, what="query parameter 'tail_lines'")
    except BridgeInvalidRequest as exc:
        assert "'tail_lines'" in exc.message
        return
    assert isinstance(value, int) and int(text) == value


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30))
def test_any_session_id_reaches_its_path_parameter_intact(session_id: str) -> None:
    from bridge.transcode import decode_component

    quoted = urllib.parse.quote(session_id, safe="").encode()
    segments = split_raw_path({"raw_path": b"/sessions/" + quoted + b"/search"})
    assert segments is not None
    matches = [b for b in BINDINGS if b.template.match(segments) is not None]
    assert [b.method.name for b in matches] == ["SearchSession"]
    raw = matches[0].template.match(segments)["session_id"]  # type: ignore[index]
    assert decode_component(raw, what="path parameter 'session_id'") == session_id


_SEGMENTS = st.lists(
    st.sampled_from(["", "sessions", "x", "search", "triggers", "status"]), max_size=3
)


# An empty segment is put in, not only filtered for: filtering alone discarded so many inputs
# that Hypothesis's health check failed the test now and then. (One trailing slash is dropped,
# so "/x/" has none: those few are still filtered out.)
@given(_SEGMENTS, _SEGMENTS)
def test_a_path_with_an_empty_segment_matches_no_route(before: list[str], after: list[str]) -> None:
    """The reference routed `//sessions` to `/`; here an empty segment matches nothing."""
    raw = "/" + "/".join([*before, "", *after])
    segments = split_raw_path({"raw_path": raw.encode()})
    assume(segments is not None and b"" in segments)
    assert [b.method.name for b in BINDINGS if b.template.match(segments) is not None] == []
