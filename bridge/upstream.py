"""The upstream: the gRPC channel to the gateway, the metadata forwarded to it, retried calls.

Calls carry no deadline of their own (a run may take the gateway's maximum, 30 minutes). Only
idempotent bindings (GET, DELETE) are retried, and only on UNAVAILABLE (or a call a stopping gateway
cancelled before taking it up, bridge/errors.py `ended_by_upstream`): exponential backoff with
jitter, at most four attempts within about two seconds.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import grpc
from google.protobuf.message import Message
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from .bindings import Binding
from .errors import InvalidRequest, ended_by_upstream
from .tracing import with_trace_context

logger = logging.getLogger(__name__)

# Request headers forwarded as gRPC metadata under the same (lower-case) name.
FORWARDED_HEADERS: Final = (
    "authorization",
    "x-codex-secure-token",
    "x-secure-token",
    "x-request-id",
)
# `?secure_token=` is not a request field; it travels as this metadata key.
SECURE_TOKEN_QUERY_PARAM: Final = "secure_token"  # noqa: S105 - a parameter name, not a secret
SECURE_TOKEN_QUERY_METADATA: Final = "x-secure-token-query"  # noqa: S105 - a metadata key

MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
CHANNEL_OPTIONS: Final = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after a gateway restart, so a retried call can find it again.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.primary_user_agent", "codex-gateway-bridge"),
    # No retry machinery of grpc's own on every call (~15 us of CPU a call, and latency): the
    # bridge retries what may be retried itself (`_retried`).
    ("grpc.enable_retries", 0),
)

RETRY_ATTEMPTS: Final = 4
RETRY_BUDGET_S: Final = 2.0
RETRY_BASE_S: Final = 0.1
RETRY_MAX_WAIT_S: Final = 0.8
RETRY_JITTER_S: Final = 0.1

# gRPC metadata values are printable ASCII.
_METADATA_VALUE: Final = re.compile(rb"[\x20-\x7e]*")
# Within the gateway's own cap on one metadata entry (gateway.boundary.MAX_METADATA_VALUE_BYTES,
# 8 KiB), and far below grpcio's limit on all of it, which it would answer with
# RESOURCE_EXHAUSTED (429 here): no token or request id is this long.
MAX_METADATA_VALUE_BYTES: Final = 4096
MAX_METADATA_BYTES: Final = 8192

Metadata = tuple[tuple[str, str], ...]
# The end-of-stream marker of `call.read()`.
EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
T = TypeVar("T")


def forwarded_metadata(
    headers: Iterable[tuple[bytes, bytes]], query: Sequence[tuple[str, str]]
) -> Metadata:
    """The request's credentials and request id, as gRPC metadata (every occurrence, in order)."""
    pairs: list[tuple[str, str]] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name in FORWARDED_HEADERS:
            pairs.append((name, _metadata_value(raw_value, f"{name} header")))
    for name, value in query:
        if name == SECURE_TOKEN_QUERY_PARAM:
            raw = value.encode("utf-8")
            pairs.append((SECURE_TOKEN_QUERY_METADATA, _metadata_value(raw, "secure_token")))
    if sum(len(name) + len(value) for name, value in pairs) > MAX_METADATA_BYTES:
        raise InvalidRequest("Credentials and request id are too long together")
    return tuple(pairs)


def _metadata_value(raw: bytes, what: str) -> str:
    if len(raw) > MAX_METADATA_VALUE_BYTES:
        raise InvalidRequest(f"Invalid {what}: longer than {MAX_METADATA_VALUE_BYTES} bytes")
    if not _METADATA_VALUE.fullmatch(raw):
        raise InvalidRequest(f"Invalid {what}: only printable ASCII is allowed")
    return raw.decode("ascii")


def is_unavailable(error: BaseException) -> bool:
    """UNAVAILABLE, or a call a stopping upstream cancelled before taking it up."""
    if isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.UNAVAILABLE:
        return True
    return ended_by_upstream(error)


@dataclass(frozen=True, slots=True)
class OpenedStream:
    """A server-streaming call and the read of its first message (which may still be pending)."""

    call: grpc.aio.UnaryStreamCall[Message, Message]
    first: asyncio.Future[object]  # a message or EOF


class Upstream:
    """The channel to the gateway (created inside the running loop) and the calls made on it."""

    def __init__(
        self, target: str, channel: grpc.aio.Channel | None = None, *, tracing: bool = False
    ) -> None:
        self.target = target
        # Calls carry the current span's W3C trace context (bridge/tracing.py) in their metadata.
        self._tracing = tracing
        self._channel = channel
        self._stream_channel = channel
        self._owns_channel = channel is None

    def open(self, *, streaming: bool = False) -> grpc.aio.Channel:
        """Streams get a connection of their own: on one HTTP/2 connection a unary call
        (a health probe) would queue behind megabytes of a fast stream's frames."""
        if streaming:
            if self._stream_channel is None:
                self._stream_channel = grpc.aio.insecure_channel(
                    self.target, options=[*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
                )
            return self._stream_channel
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.target, options=[*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
            )
        return self._channel

    async def aclose(self) -> None:
        """Close the channels this object created; a channel passed in is left to its owner."""
        if self._owns_channel:
            for channel in {self._channel, self._stream_channel} - {None}:
                await channel.close(grace=None)  # type: ignore[union-attr]  # None removed
            self._channel = self._stream_channel = None

    async def unary(self, binding: Binding, request: Message, metadata: Metadata) -> Message:
        if self._tracing:
            metadata = with_trace_context(metadata)
        multicallable = self.open().unary_unary(
            binding.rpc_path,
            request_serializer=binding.request_class.SerializeToString,
            response_deserializer=binding.response_class.FromString,
        )

        async def call() -> Message:
            response: Message = await multicallable(request, metadata=metadata)
            return response

        return await _retried(binding, call)

    async def open_stream(
        self, binding: Binding, request: Message, metadata: Metadata, *, first_wait_s: float
    ) -> OpenedStream:
        """Start the call and wait up to `first_wait_s` for its first message or its error.

        An error that arrives in that window is raised (and, for idempotent bindings, an
        UNAVAILABLE one retried), so it can still be answered with its own HTTP status.
        """
        if self._tracing:
            metadata = with_trace_context(metadata)
        multicallable = self.open(streaming=True).unary_stream(
            binding.rpc_path,
            request_serializer=binding.request_class.SerializeToString,
            response_deserializer=binding.response_class.FromString,
        )

        async def attempt() -> OpenedStream:
            call = multicallable(request, metadata=metadata)
            first = asyncio.ensure_future(call.read())
            try:
                await asyncio.wait({first}, timeout=first_wait_s)
            except BaseException:
                first.cancel()
                call.cancel()
                raise
            if first.done():
                first.result()  # raises the call's error, if it failed
            return OpenedStream(call, first)

        return await _retried(binding, attempt)


async def _retried(binding: Binding, call: Callable[[], Awaitable[T]]) -> T:
    """The call, and for idempotent bindings its retries on UNAVAILABLE.

    The first attempt is made directly: building tenacity's machinery costs about 90 us a
    call, and nearly every call succeeds the first time. A failed first attempt is replayed
    into tenacity as its attempt 1, so the backoff and the attempt count are tenacity's; the
    time budget counts from that replay (an UNAVAILABLE first attempt fails fast).
    """
    try:
        return await call()
    except grpc.aio.AioRpcError as exc:
        if not binding.idempotent or not is_unavailable(exc):
            raise
        first_failure: BaseException | None = exc

    async def attempt() -> T:
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return await call()

    retrying = AsyncRetrying(
        stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_before_delay(RETRY_BUDGET_S),
        wait=wait_exponential_jitter(
            multiplier=RETRY_BASE_S, max=RETRY_MAX_WAIT_S, jitter=RETRY_JITTER_S
        ),
        retry=retry_if_exception(is_unavailable),
        before_sleep=before_sleep_log(logger, logging.INFO),
        reraise=True,
    )
    return await retrying(attempt)
