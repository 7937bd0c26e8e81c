"""The REST client: the documented JSON API over httpx, streams as NDJSON."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from .attachments import Attachments
from .client import (
    CANCEL_TIMEOUT_S,
    CHANGES_TIMEOUT_S,
    LIST_TIMEOUT_S,
    SEARCH_TIMEOUT_S,
    SHOW_TIMEOUT_S,
    Credentials,
    Json,
    RunRequest,
    StreamItem,
    prompt_body,
    run_wait_s,
    stream_item,
)
from .errors import GatewayError, GatewayUnreachable


def base_url(url: str) -> str:
    """`localhost:4000` and `http://localhost:4000/` both mean `http://localhost:4000`."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


class RestClient:
    """The gateway's REST API at a base URL."""

    def __init__(self, url: str, credentials: Credentials) -> None:
        self._url = base_url(url)
        headers = {"User-Agent": "codex-repl", "Accept": "application/json"}
        if credentials.api_token:
            headers["Authorization"] = f"Bearer {credentials.api_token}"
        if credentials.secure_token:
            headers["X-Codex-Secure-Token"] = credentials.secure_token
        self._http = httpx.AsyncClient(base_url=self._url, headers=headers, timeout=30.0)

    @property
    def target(self) -> str:
        return self._url

    async def stream_run(self, request: RunRequest) -> AsyncIterator[StreamItem]:
        timeout = httpx.Timeout(10.0, read=request.wait_s)
        try:
            async with self._http.stream(
                "POST", "/completion/stream", json=request.body(), timeout=timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _error_from(response)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield _stream_line(line)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    async def prompt(
        self,
        session_id: str,
        text: str,
        *,
        timeout_ms: int,
        env: Mapping[str, str],
        attachments: Attachments,
    ) -> Json:
        body = prompt_body(text, timeout_ms, env, attachments)
        wait_s = run_wait_s(timeout_ms)
        path = f"/sessions/{_segment(session_id)}/prompt"
        return _object(await self._call("POST", path, json=body, wait_s=wait_s))

    async def fork(
        self,
        session_id: str,
        text: str | None,
        *,
        timeout_ms: int,
        env: Mapping[str, str],
        attachments: Attachments,
    ) -> Json:
        body = prompt_body(text, timeout_ms, env, attachments)
        wait_s = run_wait_s(timeout_ms)
        path = f"/sessions/{_segment(session_id)}/fork"
        return _object(await self._call("POST", path, json=body, wait_s=wait_s))

    async def changes(self, session_id: str, *, run_id: str | None, diff: bool) -> Json:
        params = {"run_id": run_id} if run_id else {}
        if diff:
            params["diff"] = "true"
        path = f"/sessions/{_segment(session_id)}/changes"
        return _object(await self._call("GET", path, params=params, wait_s=CHANGES_TIMEOUT_S))

    async def list_sessions(self) -> list[Json]:
        answer = await self._call("GET", "/sessions", wait_s=LIST_TIMEOUT_S)
        if not isinstance(answer, list):
            raise GatewayError("bad answer", "GET /sessions did not answer a JSON array")
        return [item for item in answer if isinstance(item, dict)]

    async def get_session(self, session_id: str, *, tail: int, include_events: bool) -> Json:
        params: dict[str, str | int] = {"tail": tail}
        if include_events:
            params["include_events"] = "true"
        path = f"/sessions/{_segment(session_id)}"
        return _object(await self._call("GET", path, params=params, wait_s=SHOW_TIMEOUT_S))

    async def search(self, session_id: str, phrase: str, *, fuzzy: bool) -> Json:
        params = {"q": phrase, **({"fuzzy": "true"} if fuzzy else {})}
        path = f"/sessions/{_segment(session_id)}/search"
        return _object(await self._call("GET", path, params=params, wait_s=SEARCH_TIMEOUT_S))

    async def cancel(self, session_id: str) -> Json:
        path = f"/sessions/{_segment(session_id)}/cancel"
        return _object(await self._call("POST", path, json={}, wait_s=CANCEL_TIMEOUT_S))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, wait_s: float, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, timeout=wait_s, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise _error_from(response)
        try:
            return response.json()
        except ValueError as exc:
            raise GatewayError(
                _status_line(response.status_code), "the answer is not JSON"
            ) from exc

    def _transport_error(self, exc: httpx.HTTPError) -> Exception:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return GatewayUnreachable(self._url, _reason(exc))
        if isinstance(exc, httpx.TimeoutException):
            return GatewayError("timeout", f"no answer from {self._url} in time")
        return GatewayError("connection lost", _reason(exc))


def _segment(session_id: str) -> str:
    return quote(session_id, safe="")


def _object(answer: Any) -> Json:
    if not isinstance(answer, dict):
        raise GatewayError("bad answer", "expected a JSON object")
    return answer


def _stream_line(line: str) -> StreamItem:
    try:
        frame = json.loads(line)
    except ValueError as exc:
        raise GatewayError("bad stream", "a stream line is not JSON") from exc
    if isinstance(frame, dict) and isinstance(frame.get("error"), dict):
        payload = frame["error"]
        status = payload.get("http_status")
        line_status = _status_line(status) if isinstance(status, int) else "stream error"
        raise _gateway_error(line_status, payload)
    if not isinstance(frame, dict) or not isinstance(frame.get("result"), dict):
        raise GatewayError("bad stream", "a stream line has neither result nor error")
    try:
        return stream_item(frame["result"])
    except ValueError as exc:
        raise GatewayError("bad stream", str(exc)) from exc


def _error_from(response: httpx.Response) -> GatewayError:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text.strip()[:200]}
    if not isinstance(body, dict):
        body = {"error": str(body)[:200]}
    if "retry_after" not in body and response.headers.get("retry-after", "").isdigit():
        body["retry_after"] = int(response.headers["retry-after"])
    return _gateway_error(_status_line(response.status_code), body)


def _gateway_error(status: str, body: Mapping[str, Any]) -> GatewayError:
    message = body.get("error")
    code = body.get("code")
    details = {k: v for k, v in body.items() if k not in ("error", "code", "http_status")}
    return GatewayError(
        status,
        message if isinstance(message, str) else "",
        code=code if isinstance(code, str) else "",
        details=details,
    )


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _reason(exc: BaseException) -> str:
    """The root cause of a transport error, in a few words."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror})"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__
