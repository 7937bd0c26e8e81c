"""Which scope each RPC needs (docs/design/tenants.md). A test checks every method of the
service is here: a new RPC without a scope cannot be served."""

from __future__ import annotations

from typing import Final

NONE: Final = ""  # served to anyone (liveness)

METHOD_SCOPES: Final[dict[str, str]] = {
    "Health": NONE,
    "GetInfo": "read",
    "GetStatus": "read",
    "GetMetrics": "admin",
    "Complete": "run",
    "StreamCompletion": "run",
    "PromptSession": "run",
    "NudgeSession": "run",
    "ForkSession": "run",
    "ListSessions": "read",
    "GetSession": "read",
    "SearchSession": "read",
    "GetSessionChanges": "read",
    "TailSession": "read",
    "CancelSession": "cancel",
    "ListTriggers": "triggers",
    "GetTrigger": "triggers",
    "CreateTriggers": "triggers",
    "UpdateTrigger": "triggers",
    "DeleteTrigger": "triggers",
}


def scope_of(method: str) -> str | None:
    """The scope `/package.Service/Method` needs; None for a method not in the table."""
    return METHOD_SCOPES.get(method.rsplit("/", 1)[-1])
