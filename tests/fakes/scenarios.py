"""Scripted replies of the fake model server: one function per scenario, driven by prompt markers.

A scenario answers one ``POST /responses`` through an ``Exchange``, which writes either a plain
JSON error or a Responses SSE stream of the shape in shared/spec/codex-cli.md section 4.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

DEFAULT_REPLY = "Hello from the fake model."
DEFAULT_COMMAND = "ls -1"
DEFAULT_SLEEP_SECONDS = 5.0
DEFAULT_USAGE = (100, 10)
TOOL_REPLY = "I ran the command; done."
PATCH_REPLY = "I added hello.txt; done."
REASONING_SUMMARY = "Thinking about the request."
HELLO_PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"

_MARKER = re.compile(r"\[\[(scenario|reply|then|cmd|sleep|usage|reset|fails):(.*?)\]\]", re.DOTALL)
_TOOL_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})
_HTTP_ERRORS: dict[str, tuple[int, str, str, str]] = {
    # scenario: (status, error.type, error.code, error.message)
    "http400": (
        400,
        "invalid_request_error",
        "model_not_found",
        "The model `nope` does not exist.",
    ),
    "http401": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    # A provider that names no model in its 404 (a proxy, say): codex's unknown-model warning
    # tells it for what it is.
    "http404": (404, "invalid_request_error", "not_found", "Not found (scripted)."),
    "http429": (429, "requests", "rate_limit_exceeded", "Rate limit reached (scripted)."),
    "http429quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota (scripted).",
    ),
    "context": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "Your input exceeds the context window of this model (scripted).",
    ),
    "http500": (500, "server_error", "server_error", "scripted HTTP 500"),
    "http503": (503, "server_error", "server_error", "scripted HTTP 503"),
}


def input_items(body: Any) -> list[dict[str, Any]]:
    items = body.get("input") if isinstance(body, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _message_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        part["text"]
        for part in content
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    )


def user_texts(items: list[dict[str, Any]]) -> list[str]:
    return [
        _message_text(item)
        for item in items
        if item.get("type", "message") == "message" and item.get("role") == "user"
    ]


def markers(items: list[dict[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for text in user_texts(items):
        for match in _MARKER.finditer(text):
            found[match[1]] = match[2]
    return found


def _history_summary(items: list[dict[str, Any]]) -> str:
    """``developer ; user:<environment_context> ; user:'hi' ; assistant:'hello'``."""
    parts = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "?")
            text = _message_text(item).strip()
            if role in ("developer", "system"):
                parts.append(role)
            elif text.startswith("<environment_context>"):
                parts.append(f"{role}:<environment_context>")
            elif text.startswith("# AGENTS.md instructions"):
                parts.append(f"{role}:<agents_md>")
            else:
                parts.append(f"{role}:'{text}'")
        elif kind in ("function_call", "custom_tool_call"):
            parts.append(f"{kind}:{item.get('name')}")
        else:
            parts.append(kind)
    return " ; ".join(parts)


class Exchange:
    """One request and its reply, as a scenario drives it."""

    def __init__(
        self,
        handler: BaseHTTPRequestHandler,
        body: Any,
        *,
        ids: Iterator[int],
        stopping: threading.Event,
    ) -> None:
        self._handler = handler
        self._ids = ids
        self._output_index = 0
        self.body = body
        self.items = input_items(body)
        self.markers = markers(self.items)
        self.stopping = stopping
        self.response_id = self.new_id("resp")

    # -- what the request says

    @property
    def tool_has_run(self) -> bool:
        """Whether the last input item is a tool's output (the second step of a tool turn)."""
        return bool(self.items) and self.items[-1].get("type") in _TOOL_OUTPUTS

    def last_tool_output(self) -> str:
        for item in reversed(self.items):
            if item.get("type") in _TOOL_OUTPUTS:
                output = item.get("output")
                return output if isinstance(output, str) else json.dumps(output)
        return ""

    @property
    def follow_up(self) -> bool:
        """Whether the latest user message carries no markers (a turn such as a repair prompt
        that continues a scripted conversation)."""
        texts = user_texts(self.items)
        return bool(texts) and _MARKER.search(texts[-1]) is None

    def reply_text(self) -> str:
        """`[[reply:...]]`; on a follow-up turn `[[then:...]]` when the history has one."""
        if "then" in self.markers and self.follow_up:
            return self.markers["then"]
        return self.markers.get("reply", DEFAULT_REPLY)

    def new_number(self) -> int:
        return next(self._ids)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.new_number()}"

    # -- plain HTTP

    def reset_seconds(self) -> float | None:
        """`[[reset:SECONDS]]`: when the provider says its limit resets, from now."""
        try:
            return float(self.markers["reset"])
        except (KeyError, ValueError):
            return None

    def send_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self._handler.send_response(status)
        self._handler.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self._handler.send_header(name, value)
        self._handler.send_header("Content-Length", str(len(data)))
        self._handler.send_header("Connection", "close")
        self._handler.end_headers()
        self._handler.wfile.write(data)

    # -- SSE; the body ends when the connection closes

    def open_stream(self) -> None:
        self._handler.send_response(200)
        self._handler.send_header("Content-Type", "text/event-stream")
        self._handler.send_header("Cache-Control", "no-cache")
        self._handler.send_header("Connection", "close")
        self._handler.end_headers()

    def event(self, payload: dict[str, Any]) -> None:
        data = f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n"
        self._handler.wfile.write(data.encode())

    def created(self) -> None:
        self.event(
            {
                "type": "response.created",
                "response": {"id": self.response_id, "object": "response", "status": "in_progress"},
            }
        )

    def completed(self, usage: tuple[int, int] = DEFAULT_USAGE) -> None:
        input_tokens, output_tokens = usage
        self.event(
            {
                "type": "response.completed",
                "response": {
                    "id": self.response_id,
                    "object": "response",
                    "status": "completed",
                    "usage": {
                        "input_tokens": input_tokens,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens": output_tokens,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": input_tokens + output_tokens,
                    },
                },
            }
        )

    def _next_index(self) -> int:
        index = self._output_index
        self._output_index += 1
        return index

    def item(self, added: dict[str, Any], done: dict[str, Any]) -> int:
        index = self._next_index()
        self.event({"type": "response.output_item.added", "output_index": index, "item": added})
        self.event({"type": "response.output_item.done", "output_index": index, "item": done})
        return index

    def message(self, text: str, *, deltas: int = 3) -> None:
        item_id = self.new_id("msg")
        index = self._next_index()
        base = {"type": "message", "id": item_id, "role": "assistant"}
        self.event(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**base, "status": "in_progress", "content": []},
            }
        )
        step = max(1, -(-len(text) // deltas))
        for start in range(0, len(text), step):
            self.event(
                {
                    "type": "response.output_text.delta",
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "delta": text[start : start + step],
                }
            )
        content = [{"type": "output_text", "text": text, "annotations": []}]
        self.event(
            {
                "type": "response.output_item.done",
                "output_index": index,
                "item": {**base, "status": "completed", "content": content},
            }
        )

    def function_call(self, name: str, arguments: dict[str, Any]) -> None:
        number = self.new_number()
        index = self._next_index()
        base = {"type": "function_call", "id": f"fc_{number}", "call_id": f"call_{number}"}
        args = json.dumps(arguments)
        self.event(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**base, "name": name, "arguments": "", "status": "in_progress"},
            }
        )
        self.event(
            {
                "type": "response.function_call_arguments.delta",
                "item_id": base["id"],
                "output_index": index,
                "delta": args,
            }
        )
        self.event(
            {
                "type": "response.output_item.done",
                "output_index": index,
                "item": {**base, "name": name, "arguments": args, "status": "completed"},
            }
        )

    def wait(self, seconds: float | None) -> bool:
        """Sleep without streaming; False when the server is stopping."""
        return not self.stopping.wait(seconds)


# -- scenarios: each answers one request


def _message(ex: Exchange) -> None:
    ex.open_stream()
    ex.created()
    ex.message(ex.reply_text())
    ex.completed()


def _tool(ex: Exchange) -> None:
    ex.open_stream()
    ex.created()
    if ex.tool_has_run:
        ex.message(f"{TOOL_REPLY}\n{ex.last_tool_output()}")
    else:
        ex.function_call("exec_command", {"cmd": ex.markers.get("cmd", DEFAULT_COMMAND)})
    ex.completed()


def _patch(ex: Exchange) -> None:
    ex.open_stream()
    ex.created()
    if ex.tool_has_run:
        ex.message(f"{PATCH_REPLY}\n{ex.last_tool_output()}")
    else:
        number = ex.new_number()
        base = {"type": "custom_tool_call", "id": f"ctc_{number}", "call_id": f"call_{number}"}
        ex.item(
            {**base, "name": "apply_patch", "input": "", "status": "in_progress"},
            {**base, "name": "apply_patch", "input": HELLO_PATCH, "status": "completed"},
        )
    ex.completed()


def _reasoning(ex: Exchange) -> None:
    ex.open_stream()
    ex.created()
    item_id = ex.new_id("rs")
    summary = [{"type": "summary_text", "text": REASONING_SUMMARY}]
    ex.item(
        {"type": "reasoning", "id": item_id, "summary": []},
        {"type": "reasoning", "id": item_id, "summary": summary},
    )
    ex.message(ex.reply_text())
    ex.completed()


def _usage(ex: Exchange) -> None:
    raw_in, _, raw_out = ex.markers.get("usage", "").partition(",")
    try:
        usage = (int(raw_in), int(raw_out))
    except ValueError:
        usage = DEFAULT_USAGE
    ex.open_stream()
    ex.created()
    ex.message(ex.reply_text())
    ex.completed(usage)


def _echo_history(ex: Exchange) -> None:
    ex.open_stream()
    ex.created()
    ex.message(_history_summary(ex.items))
    ex.completed()


def _slow(ex: Exchange) -> None:
    try:
        seconds = float(ex.markers.get("sleep", DEFAULT_SLEEP_SECONDS))
    except ValueError:
        seconds = DEFAULT_SLEEP_SECONDS
    ex.open_stream()
    ex.created()
    if ex.wait(seconds):
        ex.message(ex.reply_text())
        ex.completed()


def _failed(ex: Exchange) -> None:
    ex.open_stream()
    ex.created()
    ex.event(
        {
            "type": "response.failed",
            "response": {
                "id": ex.response_id,
                "object": "response",
                "status": "failed",
                "error": {"code": "server_error", "message": "scripted failure"},
            },
        }
    )


def _truncate(ex: Exchange) -> None:
    ex.open_stream()
    ex.created()
    ex.event(
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "message", "id": ex.new_id("msg"), "role": "assistant", "content": []},
        }
    )
    # The handler returns and the connection closes: no response.completed.


def _close(ex: Exchange) -> None:
    """Close the connection without a status line."""


def _hang(ex: Exchange) -> None:
    ex.open_stream()
    ex.created()
    ex.wait(None)


def _stall(ex: Exchange) -> None:
    """Accept the request and send nothing, not even headers, until the server stops."""
    ex.wait(None)


def _http_error(name: str) -> Callable[[Exchange], None]:
    status, kind, code, message = _HTTP_ERRORS[name]

    def scenario(ex: Exchange) -> None:
        reset = ex.reset_seconds()
        # A 429 with [[reset:N]] also says when, as providers do (codex does not report it).
        headers = {"Retry-After": str(max(0, round(reset)))} if reset and status == 429 else {}
        ex.send_json(status, {"error": {"message": message, "type": kind, "code": code}}, headers)

    return scenario


def _usage_limit(ex: Exchange) -> None:
    """ChatGPT's usage limit: a 429 whose error is `usage_limit_reached`, with `resets_at`
    (unix seconds) when `[[reset:N]]` is given: codex says "Try again at <local time>"."""
    error: dict[str, Any] = {
        "type": "usage_limit_reached",
        "message": "The usage limit has been reached (scripted).",
    }
    reset = ex.reset_seconds()
    if reset is not None:
        error["resets_at"] = int(time.time() + reset)
    ex.send_json(429, {"error": error})


def _rate_limited(ex: Exchange) -> None:
    """A rate limit reported in the stream (`response.failed`, code rate_limit_exceeded),
    saying when to try again (`[[reset:N]]` seconds, default 1.5), as the OpenAI API words it."""
    reset = ex.reset_seconds()
    ex.open_stream()
    ex.created()
    ex.event(
        {
            "type": "response.failed",
            "response": {
                "id": ex.response_id,
                "object": "response",
                "status": "failed",
                "error": {
                    "code": "rate_limit_exceeded",
                    "message": "Rate limit reached for gpt-5.5 (scripted) on tokens per min"
                    f" (TPM): Limit 1, Used 1, Requested 1. Please try again in"
                    f" {1.5 if reset is None else reset:g}s.",
                },
            },
        }
    )


SCENARIOS: dict[str, Callable[[Exchange], None]] = {
    "message": _message,
    "tool": _tool,
    "patch": _patch,
    "reasoning": _reasoning,
    "usage": _usage,
    "echo_history": _echo_history,
    "slow": _slow,
    "failed": _failed,
    "truncate": _truncate,
    "close": _close,
    "hang": _hang,
    "stall": _stall,
    "http429usage": _usage_limit,
    "ratelimited": _rate_limited,
    **{name: _http_error(name) for name in _HTTP_ERRORS},
}
