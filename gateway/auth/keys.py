"""API keys: who a bearer secret belongs to, what it may do and how much (docs/design/tenants.md).

A key is stored as its SHA-256 only. `KeySet` is immutable and built whole from one parsed
document, so a request authenticates against one complete set whatever reloads meanwhile.
Authenticating hashes the offered secret, looks the digest up, and compares it in constant time
(`hmac.compare_digest`); the lookup's timing depends on the digest alone, which says nothing of
any key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from gateway.runs.workspace import within
from gateway.sessions.model import DEFAULT_TENANT

SCOPES: Final = frozenset({"read", "run", "cancel", "triggers", "admin"})
ADMIN: Final = "admin"
MAX_KEYS: Final = 100_000
# The one key CODEX_GATEWAY_API_TOKEN stands for.
TOKEN_KEY_NAME: Final = "api-token"  # noqa: S105  # a name, not a secret
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TENANT_NAME: Final = _NAME  # what a tenant may be called (a key's, a trigger's)
_HEX_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
_FIELDS: Final = frozenset(
    {
        "name",
        "sha256",
        "tenant",
        "scopes",
        "max_concurrent",
        "runs_per_minute",
        "workspace_roots",
        "allowed_models",
        "expires_at",
        "disabled",
    }
)
MAX_MODEL_CHARS: Final = 200


class KeyFileInvalid(ValueError):
    """A key document that cannot be used; the message names the entry and the field."""


class KeyRejected(Exception):
    """An offered secret that authenticates no one: `reason` is unknown, expired or disabled
    (for counting and logging; never the secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def digest_of(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes  # SHA-256 of the secret
    tenant: str
    scopes: frozenset[str]
    max_concurrent: int | None = None
    runs_per_minute: int | None = None
    workspace_roots: tuple[Path, ...] | None = None  # None: the gateway's own
    allowed_models: frozenset[str] | None = None  # None: any model
    expires_at: datetime | None = None
    disabled: bool = False

    @property
    def admin(self) -> bool:
        return ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        return self.admin or scope in self.scopes

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class KeySet:
    """The keys in force: immutable; `authenticate` is safe from any thread."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._by_digest: dict[bytes, ApiKey] = {}
        self._by_name: dict[str, ApiKey] = {}
        for key in keys:
            if key.digest in self._by_digest:
                raise KeyFileInvalid(f"key {key.name!r}: the same sha256 as another key")
            if key.name in self._by_name:
                raise KeyFileInvalid(f"key {key.name!r}: the name is used twice")
            self._by_digest[key.digest] = key
            self._by_name[key.name] = key

    def __len__(self) -> int:
        return len(self._by_digest)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def named(self, name: str) -> ApiKey | None:
        """The key called `name` (a forwarded call's caller, whose limits the home replica
        takes from its own set)."""
        return self._by_name.get(name)

    def authenticate(self, secret: str, now: datetime) -> ApiKey:
        """The key `secret` is, or KeyRejected (unknown, expired, disabled)."""
        digest = digest_of(secret)
        key = self._by_digest.get(digest)
        # Compared even when found by the digest: the lookup is by hash, the proof in
        # constant time.
        if key is None or not hmac.compare_digest(key.digest, digest):
            raise KeyRejected("unknown")
        if key.disabled:
            raise KeyRejected("disabled")
        if key.expired(now):
            raise KeyRejected("expired")
        return key

    @classmethod
    def of_token(cls, token: str) -> KeySet:
        """CODEX_GATEWAY_API_TOKEN as one admin key."""
        return cls([token_key(token)])

    def merged(self, other: KeySet) -> KeySet:
        return KeySet([*self._by_digest.values(), *other._by_digest.values()])


def token_key(token: str) -> ApiKey:
    return ApiKey(TOKEN_KEY_NAME, digest_of(token), DEFAULT_TENANT, frozenset({ADMIN}))


def parse_document(document: Any, *, roots: tuple[Path, ...]) -> KeySet:
    """`{"keys": [...]}` as a KeySet; KeyFileInvalid naming the entry and field otherwise.
    `roots` are the gateway's workspace roots: a key's own must lie within them."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeyFileInvalid('the document must be an object with a "keys" list')
    entries = document["keys"]
    if len(entries) > MAX_KEYS:
        raise KeyFileInvalid(f"more than {MAX_KEYS} keys")
    return KeySet(_entry(index, entry, roots) for index, entry in enumerate(entries))


def _entry(index: int, entry: Any, roots: tuple[Path, ...]) -> ApiKey:
    where = f"keys[{index}]"
    if not isinstance(entry, Mapping):
        raise KeyFileInvalid(f"{where}: must be an object")
    name = entry.get("name")
    if isinstance(name, str) and _NAME.fullmatch(name):
        where = f"key {name!r}"
    else:
        raise KeyFileInvalid(f"{where}.name: 1-64 of letters, digits, '.', '_', '-'")
    unknown = sorted(str(field) for field in entry if field not in _FIELDS)
    if unknown:
        raise KeyFileInvalid(f"{where}: unknown field {unknown[0]!r}")
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX_DIGEST.fullmatch(digest.lower()):
        raise KeyFileInvalid(f"{where}.sha256: the key's SHA-256 as 64 hex digits")
    tenant = entry.get("tenant")
    if not isinstance(tenant, str) or not _NAME.fullmatch(tenant):
        raise KeyFileInvalid(f"{where}.tenant: 1-64 of letters, digits, '.', '_', '-'")
    scopes = entry.get("scopes")
    if (
        not isinstance(scopes, list)
        or not scopes
        or not all(isinstance(scope, str) and scope in SCOPES for scope in scopes)
    ):
        raise KeyFileInvalid(f"{where}.scopes: a non-empty list of {', '.join(sorted(SCOPES))}")
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise KeyFileInvalid(f"{where}.disabled: true or false")
    return ApiKey(
        name=name,
        digest=bytes.fromhex(digest),
        tenant=tenant,
        scopes=frozenset(scopes),
        max_concurrent=_positive(entry, "max_concurrent", where),
        runs_per_minute=_positive(entry, "runs_per_minute", where),
        workspace_roots=_roots(entry.get("workspace_roots"), roots, where),
        allowed_models=_models(entry.get("allowed_models"), where),
        expires_at=_moment(entry.get("expires_at"), where),
        disabled=disabled,
    )


def _positive(entry: Mapping[str, Any], field: str, where: str) -> int | None:
    value = entry.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise KeyFileInvalid(f"{where}.{field}: a whole number from 1 to 1000000")
    return value


def _roots(value: Any, allowed: tuple[Path, ...], where: str) -> tuple[Path, ...] | None:
    if value is None:
        return None
    field = f"{where}.workspace_roots"
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise KeyFileInvalid(f"{field}: a non-empty list of absolute paths")
    resolved = []
    for raw in value:
        path = Path(raw)
        if not path.is_absolute():
            raise KeyFileInvalid(f"{field}: {raw[:200]!r} is not absolute")
        path = path.resolve()
        if not within(path, allowed):
            raise KeyFileInvalid(f"{field}: {raw[:200]!r} is outside the gateway's workspace roots")
        resolved.append(path)
    return tuple(resolved)


def _models(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(m, str) and 0 < len(m.strip()) <= MAX_MODEL_CHARS for m in value)
    ):
        raise KeyFileInvalid(f"{where}.allowed_models: a non-empty list of model names")
    return frozenset(m.strip() for m in value)


def _moment(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    field = f"{where}.expires_at"
    if not isinstance(value, str):
        raise KeyFileInvalid(f"{field}: an ISO-8601 time with its offset")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise KeyFileInvalid(f"{field}: an ISO-8601 time with its offset") from None
    if moment.tzinfo is None:
        raise KeyFileInvalid(f"{field}: give the offset (Z or +hh:mm)")
    return moment
