"""Request ids: every request has one, the client's (`X-Request-Id`) when it is sane, else new.

A sane id is at most `MAX_REQUEST_ID_CHARS` of a safe charset (letters, digits, `._:=+/-`): it
goes into response headers, error bodies and log lines, so anything else (a CRLF, a control
character, a megabyte) is replaced by a new id (uuid4 hex), never echoed. The gRPC side applies
the same rule to the `x-request-id` metadata (gateway/api/requestid.py); the bridge passes its
id on as that metadata, so both processes' logs carry one id per request.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logformat import bind, log_context, unbind

REQUEST_ID_HEADER: Final = "x-request-id"
MAX_REQUEST_ID_CHARS: Final = 128
REQUEST_ID_PATTERN: Final = rf"^[A-Za-z0-9._:=+/-]{{1,{MAX_REQUEST_ID_CHARS}}}$"
_SANE: Final = re.compile(REQUEST_ID_PATTERN.strip("^$"), re.ASCII)
_HEADER: Final = REQUEST_ID_HEADER.encode()


def new_request_id() -> str:
    return uuid.uuid4().hex


def is_sane(offered: str) -> bool:
    return _SANE.fullmatch(offered) is not None


def request_id_from(offered: str | bytes | None) -> str:
    """The offered id when it is sane, else a new one."""
    if isinstance(offered, bytes):
        try:
            offered = offered.decode("ascii")
        except UnicodeDecodeError:
            return new_request_id()
    return offered if offered is not None and is_sane(offered) else new_request_id()


def current_request_id() -> str | None:
    """The request id of the request being served, if any."""
    return log_context().get("request_id")


class RequestIds:
    """ASGI middleware, outermost: picks the request's id (the client's sane `X-Request-Id`,
    else a new one), leaves exactly that one in the request's headers (forwarded to the
    gateway as `x-request-id` metadata), logs the request's work with it and returns it in the
    response's `X-Request-Id` header; error bodies add it (bridge/errors.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        offered = [value for name, value in headers if name == _HEADER]
        # Two of them: ambiguous, neither is trusted.
        request_id = request_id_from(offered[0] if len(offered) == 1 else None)
        encoded = request_id.encode("ascii")
        # In place: the app's last-resort error handler (outside this middleware) reads it.
        scope["headers"] = [*(item for item in headers if item[0] != _HEADER), (_HEADER, encoded)]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        *(
                            item
                            for item in message.get("headers", [])
                            if item[0].lower() != _HEADER
                        ),
                        (_HEADER, encoded),
                    ],
                }
            await send(message)

        token = bind(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            unbind(token)
