"""Tenant isolation: a caller sees only its own tenant's sessions and triggers; `admin` sees all.

Every session and trigger records the tenant of the key that made it (a session in its meta's
`tenant`, a trigger in its entry's; one made before tenants has none and is the default
tenant's). What a caller may not see does not exist for it: another tenant's session is
SessionNotFound and its trigger TriggerNotFound (404, the id it asked for echoed, nothing
else), never a 403 that would say it exists. The caller is `principal.current()`.

The checks live here and only here: every per-session call resolves its session through
`resolve` (the servicer's, and admission's for a continued, forked or resumed session);
listings ask `listed_tenant` what to filter by; the trigger API asks `check_trigger`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from gateway.auth import principal as principals
from gateway.auth.keys import TENANT_NAME, ApiKey
from gateway.auth.principal import Principal
from gateway.errors import InvalidRequest, SessionNotFound, TriggerNotFound, quote
from gateway.sessions.model import DEFAULT_TENANT, Session
from gateway.sessions.store import SessionStore

TENANT_FIELD: Final = "tenant"
TRIGGER_KEY_NAME: Final = "trigger"  # the name a trigger's runs are made under
_TENANT: Final = TENANT_NAME


def visible(session: Session, asked: str) -> Session:
    """`session`, if the caller may see it; else SessionNotFound for the id it `asked` for."""
    if not principals.current().sees(session.tenant):
        raise SessionNotFound(asked)
    return session


def resolve(store: SessionStore, session_id: str) -> Session:
    """The session `session_id` (a gateway or codex thread id) names, as the caller sees it."""
    return visible(store.resolve(session_id), session_id)


def listed_tenant() -> str | None:
    """The tenant a listing is filtered to: the caller's, or None (all) for an admin."""
    caller = principals.current()
    return None if caller.admin else caller.tenant


def creating_tenant() -> str:
    """The tenant that owns what the caller makes now."""
    return principals.current().tenant


# Triggers.


def trigger_owner(entry: Mapping[str, Any]) -> str:
    tenant = entry.get(TENANT_FIELD)
    return tenant if isinstance(tenant, str) and tenant else DEFAULT_TENANT


def sees_trigger(entry: Mapping[str, Any]) -> bool:
    return principals.current().sees(trigger_owner(entry))


def check_trigger(entry: Mapping[str, Any], trigger_id: str) -> None:
    """TriggerNotFound unless the caller may see the trigger `entry`."""
    if not sees_trigger(entry):
        raise TriggerNotFound(trigger_id)


def given_tenant(item: object, *, where: str = "") -> str | None:
    """The `tenant` a trigger payload names, if it may: a key names its own tenant only (as a
    trigger read back and sent again does); an admin may name any tenant (to make or move a
    trigger for it). Anything else is 400 naming the field: the gateway sets the tenant."""
    if not isinstance(item, Mapping) or item.get(TENANT_FIELD) is None:
        return None
    given = item[TENANT_FIELD]
    field = f"{where}{TENANT_FIELD}"
    if not isinstance(given, str) or not _TENANT.fullmatch(given):
        raise InvalidRequest(
            "tenant must be 1-64 of letters, digits, '.', '_', '-' (or left out: the key's)",
            field=field,
        )
    caller = principals.current()
    if given != caller.tenant and not caller.admin:
        raise InvalidRequest(
            f"tenant is set by the gateway: this key's triggers are {quote(caller.tenant)}'s, "
            f"not {quote(given)}'s",
            field=field,
        )
    return given


def trigger_principal(entry: Mapping[str, Any]) -> Principal:
    """Whom a trigger's runs run as: its tenant, with no other right (not admin: the session
    it continues must be its tenant's)."""
    return Principal(ApiKey(TRIGGER_KEY_NAME, b"", trigger_owner(entry), frozenset({"run"})))


@contextmanager
def acting_as(caller: Principal) -> Iterator[None]:
    """`caller` bound for what runs inside (and for the tasks started there), then undone."""
    token = principals.bind(caller)
    try:
        yield
    finally:
        principals.unbind(token)
