"""API keys on their own (docs/design/tenants.md): the key set and its checks, the key file and
its reload, per-key quotas, the audit log, and `keys add`. Real files, real threads."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.auth.audit import AuditLog
from gateway.auth.keyfile import SETTLE_S, KeyFile, read_key_set
from gateway.auth.keys import (
    ApiKey,
    KeyFileInvalid,
    KeyRejected,
    KeySet,
    digest_of,
    parse_document,
    token_key,
)
from gateway.auth.quotas import KeyQuotas
from gateway.errors import ConcurrencyLimitReached, RateLimited
from gateway.keys_command import KEY_PREFIX, append
from gateway.keys_command import run as keys_add

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def entry(name: str = "ci", secret: str = "s3cret-ci", **fields: Any) -> dict[str, Any]:  # noqa: S107
    return {
        "name": name,
        "sha256": digest_of(secret).hex(),
        "tenant": "team-a",
        "scopes": ["read", "run"],
        **fields,
    }


def keyset(*entries: dict[str, Any], roots: tuple[Path, ...] = (Path("/"),)) -> KeySet:
    return parse_document({"keys": list(entries)}, roots=roots)


def test_a_key_authenticates_as_itself_and_nothing_else() -> None:
    keys = keyset(entry(), entry("admin", "s3cret-admin", scopes=["admin"], tenant="ops"))
    ci = keys.authenticate("s3cret-ci", NOW)
    assert (ci.name, ci.tenant, ci.scopes) == ("ci", "team-a", frozenset({"read", "run"}))
    assert ci.allows("run") and not ci.allows("cancel") and not ci.admin
    admin = keys.authenticate("s3cret-admin", NOW)
    assert admin.admin and admin.allows("triggers")
    for wrong in ("s3cret-c", "s3cret-ci ", "", "S3CRET-CI", digest_of("s3cret-ci").hex()):
        with pytest.raises(KeyRejected) as rejected:
            keys.authenticate(wrong, NOW)
        assert rejected.value.reason == "unknown"


def test_upper_case_hex_is_the_same_hash() -> None:
    keys = keyset(entry(sha256=digest_of("s3cret-ci").hex().upper()))
    assert keys.authenticate("s3cret-ci", NOW).name == "ci"


def test_disabled_and_expired_keys_are_refused_with_their_reason() -> None:
    keys = keyset(
        entry("off", "k-off", disabled=True),
        entry("old", "k-old", expires_at="2029-12-31T23:59:59Z"),
        entry("new", "k-new", expires_at="2030-01-01T00:00:01+00:00"),
    )
    for secret, reason in (("k-off", "disabled"), ("k-old", "expired")):
        with pytest.raises(KeyRejected) as rejected:
            keys.authenticate(secret, NOW)
        assert rejected.value.reason == reason
    assert keys.authenticate("k-new", NOW).name == "new"
    with pytest.raises(KeyRejected):
        keys.authenticate("k-new", NOW + timedelta(seconds=1))


def test_the_api_token_is_one_admin_key_beside_the_files() -> None:
    keys = keyset(entry()).merged(KeySet.of_token("the-token"))
    token = keys.authenticate("the-token", NOW)
    assert token == token_key("the-token") and token.admin and token.tenant == "default"
    with pytest.raises(KeyFileInvalid, match="same sha256"):
        keyset(entry(secret="the-token")).merged(KeySet.of_token("the-token"))


@pytest.mark.parametrize(
    ("document", "names"),
    [
        ([], "keys"),
        ({"keys": {}}, "keys"),
        ({"keys": [1]}, "keys[0]: must be an object"),
        ({"keys": [entry(name="")]}, "keys[0].name"),
        ({"keys": [entry(name="a b")]}, "keys[0].name"),
        ({"keys": [entry(sha256="abc")]}, "key 'ci'.sha256"),
        ({"keys": [entry(tenant="")]}, "key 'ci'.tenant"),
        ({"keys": [entry(tenant="../x")]}, "key 'ci'.tenant"),
        ({"keys": [entry(scopes=[])]}, "key 'ci'.scopes"),
        ({"keys": [entry(scopes=["read", "root"])]}, "key 'ci'.scopes"),
        ({"keys": [entry(scopes="read")]}, "key 'ci'.scopes"),
        ({"keys": [entry(max_concurrent=0)]}, "key 'ci'.max_concurrent"),
        ({"keys": [entry(max_concurrent=True)]}, "key 'ci'.max_concurrent"),
        ({"keys": [entry(runs_per_minute=1.5)]}, "key 'ci'.runs_per_minute"),
        ({"keys": [entry(allowed_models=[])]}, "key 'ci'.allowed_models"),
        ({"keys": [entry(allowed_models=[" "])]}, "key 'ci'.allowed_models"),
        ({"keys": [entry(expires_at="tomorrow")]}, "key 'ci'.expires_at"),
        ({"keys": [entry(expires_at="2030-01-01T00:00:00")]}, "key 'ci'.expires_at"),
        ({"keys": [entry(disabled="yes")]}, "key 'ci'.disabled"),
        ({"keys": [entry(scope=["read"])]}, "unknown field 'scope'"),
        ({"keys": [entry(), entry(secret="other")]}, "name is used twice"),
        ({"keys": [entry(), entry(name="ci2")]}, "same sha256"),
    ],
)
def test_every_field_is_checked_and_the_error_names_it(document: Any, names: str) -> None:
    with pytest.raises(KeyFileInvalid) as invalid:
        parse_document(document, roots=(Path("/"),))
    assert names in str(invalid.value)
    assert digest_of("s3cret-ci").hex() not in str(invalid.value)


def test_a_keys_workspace_roots_lie_within_the_gateways(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "team").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    key = keyset(entry(workspace_roots=[str(root / "team")]), roots=(root,)).authenticate(
        "s3cret-ci", NOW
    )
    assert key.workspace_roots == (root / "team",)
    for bad in (str(tmp_path / "outside"), str(root / "escape"), "team", str(root / "..")):
        with pytest.raises(KeyFileInvalid, match="workspace_roots"):
            keyset(entry(workspace_roots=[bad]), roots=(root,))


def test_ten_thousand_keys_authenticate_each_its_own() -> None:
    keys = keyset(*(entry(f"k{i}", f"secret-{i}") for i in range(10_000)))
    assert len(keys) == 10_000
    assert keys.authenticate("secret-9999", NOW).name == "k9999"
    assert keys.authenticate("secret-0", NOW).name == "k0"


# -- the file ------------------------------------------------------------------------------


def write(path: Path, *entries: dict[str, Any]) -> None:
    path.write_text(json.dumps({"keys": list(entries)}))


def test_the_file_is_json_or_toml_by_its_extension(tmp_path: Path) -> None:
    toml = tmp_path / "keys.toml"
    toml.write_text(
        "# team keys\n[[keys]]\n"
        f'name = "ci"\nsha256 = "{digest_of("s3cret-ci").hex()}"\n'
        'tenant = "team-a"\nscopes = ["read"]\nexpires_at = "2031-01-01T00:00:00Z"\n'
    )
    assert read_key_set(toml, (Path("/"),)).authenticate("s3cret-ci", NOW).tenant == "team-a"
    broken = tmp_path / "keys.json"
    broken.write_text("[[keys]]")
    with pytest.raises(KeyFileInvalid, match="not valid JSON"):
        read_key_set(broken, (Path("/"),))


def test_a_fifo_or_a_missing_file_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "keys.json"
    os.mkfifo(fifo)
    with pytest.raises(KeyFileInvalid, match="cannot read"):
        read_key_set(fifo, (Path("/"),))
    with pytest.raises(KeyFileInvalid, match="cannot read"):
        read_key_set(tmp_path / "none.json", (Path("/"),))


async def test_the_file_is_followed_and_a_broken_one_keeps_the_last_good_set(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.json"
    write(path, entry())
    keys = KeyFile(path, (Path("/"),), token_keys=KeySet.of_token("tok"))
    assert keys.status().keys == 2 and keys.status().error is None
    stop = asyncio.Event()
    follower = asyncio.create_task(keys.follow(stop))
    try:
        write(path, entry(), entry("new", "s3cret-new"))
        await until(lambda: "new" in keys.keys.names)
        assert keys.keys.authenticate("tok", NOW).admin  # the token's key stays

        path.write_text('{"keys": [')  # broken: the last good set stays in force
        await until(lambda: keys.status().error is not None)
        assert "not valid JSON" in str(keys.status().error)
        assert keys.keys.authenticate("s3cret-new", NOW).name == "new"

        write(path, entry())  # fixed: applied, the error gone
        await until(lambda: keys.status().error is None)
        assert "new" not in keys.keys.names
    finally:
        stop.set()
        await follower


async def test_a_file_written_in_place_is_never_applied_half_read(tmp_path: Path) -> None:
    """A writer rewriting the file in place (truncate, then an entry per write: every prefix
    is a valid smaller file) in bursts, while it is followed closely: every set ever in force
    is one of the complete ones written."""
    path = tmp_path / "keys.toml"
    sets = [[entry(f"k{i}-{j}", f"s-{i}-{j}") for j in range(30)] for i in range(2)]
    path.write_text("".join(_toml(e) for e in sets[0]))
    keys = KeyFile(path, (Path("/"),), poll_s=0.002)
    complete = {frozenset(e["name"] for e in entries) for entries in sets}
    seen: set[frozenset[str]] = set()
    stop = asyncio.Event()
    follower = asyncio.create_task(keys.follow(stop))

    def rewrite(rounds: int) -> None:
        for number in range(1, rounds + 1):
            with path.open("r+b", buffering=0) as file:
                file.truncate(0)
                for fields in sets[number % 2]:
                    file.write(_toml(fields).encode())
                    time.sleep(0.001)  # a slow writer: its partial files last
            time.sleep(random.uniform(SETTLE_S * 1.5, SETTLE_S * 2.5))

    writer = asyncio.ensure_future(asyncio.to_thread(rewrite, 12))
    try:
        while not writer.done():
            seen.add(keys.keys.names)
            await asyncio.sleep(0.001)
        await writer
    finally:
        stop.set()
        await follower
    assert seen <= complete, sorted(len(names) for names in seen)
    assert len(seen) == 2  # both sets were applied: the follower kept up


def _toml(fields: dict[str, Any]) -> str:
    body = "".join(f"{name} = {json.dumps(value)}\n" for name, value in fields.items())
    return "[[keys]]\n" + body


async def until(check: Any, timeout_s: float = 15) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


# -- quotas --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_max_concurrent_counts_the_keys_runs_and_refuses_at_its_edge() -> None:
    key = ApiKey("ci", digest_of("x"), "t", frozenset({"run"}), max_concurrent=2)
    quotas = KeyQuotas()
    first, second = quotas.admit(key), quotas.admit(key)
    with pytest.raises(ConcurrencyLimitReached) as refused:
        quotas.admit(key)
    assert (refused.value.active, refused.value.maximum) == (2, 2)
    first()
    first()  # released once only
    assert quotas.running(key) == 1
    third = quotas.admit(key)
    second()
    third()
    assert quotas.running(key) == 0


def test_runs_per_minute_is_a_bucket_with_retry_after() -> None:
    clock = Clock()
    key = ApiKey("ci", digest_of("x"), "t", frozenset({"run"}), runs_per_minute=3)
    quotas = KeyQuotas(clock=clock)
    for _ in range(3):
        quotas.admit(key)()
    with pytest.raises(RateLimited) as refused:
        quotas.admit(key)
    assert refused.value.retry_after_s == 20  # a token every 20 s
    assert refused.value.details() == {"retry_after": "20"}
    clock.now += 19.9
    with pytest.raises(RateLimited) as again:
        quotas.admit(key)
    assert again.value.retry_after_s == 1
    clock.now += 0.1
    quotas.admit(key)()
    clock.now += 3600  # a full bucket holds a minute's worth, no more
    for _ in range(3):
        quotas.admit(key)()
    with pytest.raises(RateLimited):
        quotas.admit(key)


def test_a_refusal_takes_nothing() -> None:
    clock = Clock()
    key = ApiKey("ci", digest_of("x"), "t", frozenset(), max_concurrent=1, runs_per_minute=2)
    quotas = KeyQuotas(clock=clock)
    held = quotas.admit(key)
    with pytest.raises(ConcurrencyLimitReached):  # no token spent by this one
        quotas.admit(key)
    held()
    quotas.admit(key)()  # the second token
    with pytest.raises(RateLimited):
        quotas.admit(key)
    assert quotas.running(key) == 0  # a rate refusal holds no place


# -- audit ---------------------------------------------------------------------------------


def test_the_audit_log_is_json_lines_owner_only_and_rotated(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    audit = AuditLog(path, max_bytes=2000, backups=2)
    try:
        for number in range(60):
            audit.record(
                key="ci",
                tenant="team-a",
                method="Complete",
                code="OK",
                request_id=f"req-{number}",
                target={"session_id": "s-1", "run_id": None},
            )
    finally:
        audit.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert all(f.stat().st_size <= 2000 for f in files)
    newest = json.loads(path.read_text().splitlines()[-1])
    assert newest["request_id"] == "req-59" and newest["session_id"] == "s-1"
    assert "run_id" not in newest and {"time", "key", "tenant", "method", "code"} <= set(newest)
    assert len(lines) < 60  # the oldest rotated away


# -- keys add ------------------------------------------------------------------------------


def add_args(path: Path, name: str = "ci", **options: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "name": name,
        "tenant": "team-a",
        "scopes": "read,run",
        "file": path,
        "max_concurrent": None,
        "runs_per_minute": None,
        "allowed_models": None,
        "workspace_roots": None,
        "expires_at": None,
    }
    values.update(options)
    return argparse.Namespace(**values)


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_keys_add_prints_the_key_once_and_appends_only_its_hash(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"keys{suffix}"
    if suffix == ".toml":
        path.write_text("# our keys\n")
        path.chmod(0o644)
    out = io.StringIO()
    assert (
        keys_add(add_args(path, max_concurrent=2, allowed_models="gpt-5,o3"), (tmp_path,), out) == 0
    )
    key = out.getvalue().strip()
    assert key.startswith(KEY_PREFIX) and len(key) > 40
    assert key not in path.read_text()
    # A new file is owner-only; one that was there keeps its mode.
    assert stat.S_IMODE(path.stat().st_mode) == (0o644 if suffix == ".toml" else 0o600)
    out2 = io.StringIO()
    assert keys_add(add_args(path, "bot", scopes="read"), (tmp_path,), out2) == 0
    keys = read_key_set(path, (tmp_path,))
    ci = keys.authenticate(key, NOW)
    assert (ci.name, ci.max_concurrent, ci.allowed_models) == (
        "ci",
        2,
        frozenset({"gpt-5", "o3"}),
    )
    assert keys.authenticate(out2.getvalue().strip(), NOW).scopes == frozenset({"read"})
    if suffix == ".toml":
        assert path.read_text().startswith("# our keys\n")  # the comments stay


def test_keys_add_refuses_what_the_gateway_would_and_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert keys_add(add_args(path), (tmp_path,), io.StringIO()) == 0
    before = path.read_bytes()
    for args in (
        add_args(path),  # the name again
        add_args(path, "x", scopes="read,sudo"),
        add_args(path, "y", workspace_roots="/etc"),
        add_args(path, "z", expires_at="soon"),
    ):
        out = io.StringIO()
        assert keys_add(args, (tmp_path,), out) == 1
        assert out.getvalue() == ""  # no key printed for an entry that was not added
        assert path.read_bytes() == before
    path.write_text("not json")
    with pytest.raises(KeyFileInvalid):
        append(path, entry(), (tmp_path,))


def test_the_command_line_adds_a_key_the_gateway_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.__main__ import main

    path = tmp_path / "keys.json"
    monkeypatch.setenv("CODEX_GATEWAY_API_KEYS_FILE", str(path))
    monkeypatch.setenv("CODEX_GATEWAY_DEFAULT_WORKSPACE", str(tmp_path))
    assert main(["keys", "add", "ci", "--tenant", "team-a", "--scopes", "read,run"]) == 0
    key = capsys.readouterr().out.strip()
    assert read_key_set(path, (tmp_path,)).authenticate(key, NOW).name == "ci"
    assert main(["keys", "add", "ci", "--tenant", "team-a", "--scopes", "read"]) == 1
    assert "used twice" in capsys.readouterr().err
