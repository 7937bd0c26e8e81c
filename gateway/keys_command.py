"""`codex-gateway keys add NAME --tenant T --scopes read,run [...]`: a new API key.

Prints the new key once, on standard output, and appends its entry (its SHA-256, never the key)
to the key file (`--file`, else CODEX_GATEWAY_API_KEYS_FILE), created if missing. The file is
replaced atomically and checked whole before it is: a name used twice or an entry the gateway
would refuse is an error, and the file is left as it was. A TOML file (by its extension) gets a
`[[keys]]` table appended to its text, so its comments stay.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tomllib
from pathlib import Path
from typing import Any, Final, TextIO

from gateway import regular_file
from gateway.atomic import write_atomic
from gateway.auth.keyfile import MAX_FILE_BYTES
from gateway.auth.keys import SCOPES, KeyFileInvalid, digest_of, parse_document

KEY_PREFIX: Final = "cgk_"
_KEY_BYTES: Final = 32


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage API keys (CODEX_GATEWAY_API_KEYS_FILE)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    add = actions.add_parser("add", help="make a new key: printed once, its hash appended")
    add.add_argument("name", help="the key's name (logs, audit): letters, digits, . _ -")
    add.add_argument("--tenant", required=True, help="whose sessions the key owns and sees")
    add.add_argument(
        "--scopes",
        required=True,
        help=f"comma-separated: {', '.join(sorted(SCOPES))}",
    )
    add.add_argument(
        "--file", type=Path, help="the key file (default: $CODEX_GATEWAY_API_KEYS_FILE)"
    )
    add.add_argument("--max-concurrent", type=int)
    add.add_argument("--runs-per-minute", type=int)
    add.add_argument("--allowed-models", help="comma-separated model names")
    add.add_argument("--workspace-roots", help="comma-separated absolute paths")
    add.add_argument("--expires-at", help="ISO-8601 time with its offset")


def run(args: argparse.Namespace, roots: tuple[Path, ...], out: TextIO | None = None) -> int:
    path: Path | None = args.file or _env_path()
    if path is None:
        print("codex-gateway keys: give --file or set CODEX_GATEWAY_API_KEYS_FILE", file=sys.stderr)
        return 2
    key = new_key()
    entry: dict[str, Any] = {
        "name": args.name,
        "sha256": digest_of(key).hex(),
        "tenant": args.tenant,
        "scopes": _listed(args.scopes),
    }
    if args.max_concurrent is not None:
        entry["max_concurrent"] = args.max_concurrent
    if args.runs_per_minute is not None:
        entry["runs_per_minute"] = args.runs_per_minute
    if args.allowed_models:
        entry["allowed_models"] = _listed(args.allowed_models)
    if args.workspace_roots:
        entry["workspace_roots"] = _listed(args.workspace_roots)
    if args.expires_at:
        entry["expires_at"] = args.expires_at
    try:
        append(path, entry, roots)
    except (KeyFileInvalid, OSError) as exc:
        print(f"codex-gateway keys: {exc}", file=sys.stderr)
        return 1
    print(key, file=out or sys.stdout)
    print(
        f"codex-gateway keys: {args.name!r} (tenant {args.tenant!r}) added to {path};"
        " the key is shown only this once",
        file=sys.stderr,
    )
    return 0


def append(path: Path, entry: dict[str, Any], roots: tuple[Path, ...]) -> None:
    """`entry` added to the key file at `path`, the whole file checked before it is replaced."""
    try:
        raw = regular_file.read(path, MAX_FILE_BYTES, follow=True)
    except FileNotFoundError:
        raw = b""
    text = raw.decode("utf-8", errors="strict") if raw else ""
    if path.suffix == ".toml":
        new_text = text + ("\n" if text and not text.endswith("\n") else "") + _toml_table(entry)
        try:
            document: Any = tomllib.loads(new_text)
        except tomllib.TOMLDecodeError as exc:
            raise KeyFileInvalid(f"{path}: cannot append a [[keys]] table: {exc}") from None
    else:
        try:
            document = json.loads(text) if text.strip() else {"keys": []}
        except json.JSONDecodeError as exc:
            raise KeyFileInvalid(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise KeyFileInvalid(f'{path}: the document must be an object with a "keys" list')
        document["keys"].append(entry)
        new_text = json.dumps(document, indent=2) + "\n"
    parse_document(document, roots=roots)  # the gateway would take it: names, hashes, fields
    path.parent.mkdir(parents=True, exist_ok=True)
    like = path.stat() if raw else None
    write_atomic(path, new_text.encode(), mode=0o600, like=like)


def _toml_table(entry: dict[str, Any]) -> str:
    lines = ["[[keys]]"]
    for name, value in entry.items():
        lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    """An entry's value (an int, a string or a list of strings) in TOML."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def _listed(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _env_path() -> Path | None:
    value = os.environ.get("CODEX_GATEWAY_API_KEYS_FILE", "").strip()
    return Path(value) if value else None
