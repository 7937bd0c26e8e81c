"""The request guard: which requests a web page could forge are refused before any route runs.

A gateway without an API token trusts whoever reaches its port; a browser is such a someone,
driven by any page it shows. Two doors are closed here:

- DNS rebinding: a page on `evil.example` whose name is re-pointed at 127.0.0.1 talks to the
  bridge "same-origin" and reads every answer, but its requests carry `Host: evil.example`.
  Requests whose `Host` is not the bound address, a loopback name or an allowed host are refused
  with 421 (a browser's cross-origin `Origin` likewise, 403). `/health` is exempt: it tells
  nothing, and a probe may address the bridge by any name.
- Forged bodies: a form or a `text/plain` fetch crosses origins without a CORS preflight. A
  request body must be declared JSON (`json_content_type`), which no page can send to another
  origin without the bridge's consent (it gives none): else 415.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import (
    BridgeError,
    ErrorResponse,
    ForbiddenOrigin,
    MisdirectedRequest,
    UnsupportedMediaType,
    send_error,
)

LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_HOST: Final = "*"
# Paths served whatever the Host: a liveness probe may use any name or address.
_UNGUARDED_PATHS: Final = frozenset({"/health"})
_QUOTED_CHARS: Final = 64


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The hosts the bridge answers for (any port), or None: every host (no check)."""

    allowed: frozenset[str] | None

    @classmethod
    def of(cls, *, check: bool, bound: str, extra: Iterable[str] = ()) -> HostPolicy:
        """Loopback names, the bound address and `extra` (`*` in it: any host); `check` False:
        any host."""
        names = {normalize_host(name) for name in extra}
        if not check or ANY_HOST in names:
            return cls(None)
        return cls(frozenset({*LOOPBACK_HOSTS, normalize_host(bound), *names} - {""}))

    def admits(self, host: str) -> bool:
        return self.allowed is None or normalize_host(host) in self.allowed


def normalize_host(value: str) -> str:
    """`Name:port`, `[v6]:port`, `name.` -> the lower-case name or address without its port."""
    host = value.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    elif host.count(":") > 1:  # a bare IPv6 address (a configured entry)
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            return host
    return host.rstrip(".")


class RequestGuard:
    """ASGI middleware: 421 for a foreign `Host`, 403 for a foreign browser `Origin`."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.policy.allowed is not None:
            error = self._refusal(scope)
            if error is not None:
                await send_error(ErrorResponse.from_bridge_error(error), scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> BridgeError | None:
        if scope.get("path") in _UNGUARDED_PATHS:
            return None
        for name, raw in scope.get("headers", []):
            if name == b"host":
                host = raw.decode("latin-1")
                if not self.policy.admits(host):
                    return MisdirectedRequest(
                        f"Host {_quoted(host)} is not served here: "
                        "add it to CODEX_GATEWAY_ALLOWED_HOSTS"
                    )
            elif name == b"origin":
                origin = raw.decode("latin-1")
                if not self._admits_origin(origin):
                    return ForbiddenOrigin(
                        f"Origin {_quoted(origin)} is not allowed: "
                        "add its host to CODEX_GATEWAY_ALLOWED_HOSTS"
                    )
        # No Host at all (HTTP/1.0): no browser sends that, so no page can be behind it.
        return None

    def _admits_origin(self, origin: str) -> bool:
        try:
            host = urlsplit(origin.strip()).hostname
        except ValueError:
            return False
        # "null" (a sandboxed or file: page) has no host: refused.
        return host is not None and self.policy.admits(host)


def json_content_type(headers: Iterable[tuple[bytes, bytes]]) -> bool | None:
    """Whether the declared media type is JSON (`application/json` or `application/*+json`,
    any parameters but a charset other than UTF-8); None when there is no `Content-Type`."""
    declared = None
    for name, value in headers:
        if name == b"content-type":
            if declared is not None:  # two of them: ambiguous
                return False
            declared = value.decode("latin-1")
    if declared is None:
        return None
    media_type, *parameters = (part.strip().lower() for part in declared.split(";"))
    kind, _, subtype = media_type.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return False
    for parameter in parameters:
        key, _, setting = parameter.partition("=")
        if key.strip() == "charset" and setting.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


def require_json_body(headers: Iterable[tuple[bytes, bytes]], body: bytes | None) -> None:
    """415 unless the body is declared JSON; an empty body may come without a Content-Type
    (`curl -X POST .../cancel`), a non-empty one may not."""
    declared = json_content_type(headers)
    if declared is False or (declared is None and body):
        raise UnsupportedMediaType(
            "Request bodies must be JSON: send Content-Type: application/json"
        )


def refuse_non_json_declaration(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """415 at once for a declared non-JSON body, before a byte of it is read."""
    if json_content_type(headers) is False:
        require_json_body(headers, None)


def _quoted(value: str) -> str:
    shown = value[:_QUOTED_CHARS]
    return repr(shown + ("..." if len(value) > _QUOTED_CHARS else ""))
