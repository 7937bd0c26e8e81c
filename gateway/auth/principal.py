"""The authenticated caller of one call: its key, and so its tenant, scopes and limits.

The key check (gateway/auth/gatekeeper.py) binds it for the call's task; the servicer, the
runner and the trigger API read it with `current()`. A gateway that asks for no key (neither
CODEX_GATEWAY_API_TOKEN nor a key file) serves every caller as `OPEN`: the admin of the
default tenant, as before keys existed.
"""

from __future__ import annotations

import json
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Final

from gateway.auth.keys import ADMIN, SCOPES, ApiKey
from gateway.sessions.model import DEFAULT_TENANT


@dataclass(frozen=True)
class Principal:
    key: ApiKey

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def tenant(self) -> str:
        return self.key.tenant

    @property
    def admin(self) -> bool:
        return self.key.admin

    def allows(self, scope: str) -> bool:
        return self.key.allows(scope)

    def sees(self, tenant: str | None) -> bool:
        """Whether this caller may see what `tenant` owns (None: made before tenants, the
        default tenant's)."""
        return self.admin or (tenant or DEFAULT_TENANT) == self.tenant

    def encode(self) -> str:
        """For a forwarded call (the home replica trusts it only with the cluster token)."""
        return json.dumps(
            {"key": self.name, "tenant": self.tenant, "scopes": sorted(self.key.scopes)},
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> Principal | None:
        """What `encode` wrote; None for anything else."""
        try:
            fields = json.loads(text)
        except ValueError:
            return None
        if not isinstance(fields, dict):
            return None
        key, tenant, scopes = fields.get("key"), fields.get("tenant"), fields.get("scopes")
        if not isinstance(key, str) or not isinstance(tenant, str) or not isinstance(scopes, list):
            return None
        if not all(isinstance(scope, str) and scope in SCOPES for scope in scopes):
            return None
        return cls(ApiKey(key, b"", tenant, frozenset(scopes)))


OPEN: Final = Principal(ApiKey("anonymous", b"", DEFAULT_TENANT, frozenset({ADMIN})))
PRINCIPAL_KEY: Final = "x-codex-gateway-principal"  # a forwarded call's, with the cluster token
_current: ContextVar[Principal] = ContextVar("codex_gateway_principal", default=OPEN)


def current() -> Principal:
    return _current.get()


def bind(principal: Principal) -> Token[Principal]:
    """The caller of the current task (each gRPC call runs in a task of its own); the token
    undoes it (`unbind`, for a stretch of a task shared by several callers:
    gateway/auth/tenancy.py `acting_as`)."""
    return _current.set(principal)


def unbind(token: Token[Principal]) -> None:
    _current.reset(token)
