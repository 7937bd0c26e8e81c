"""Forwarding: where a session lives, and calls to its home replica.

A session belongs to the replica that created it (`sessions.home_replica`): its logs, workspace
and codex rollout are local there, so a call about it made to another replica is the public
`GatewayService` method called again on the home, with the cluster token
(`x-codex-gateway-cluster-token`, or the API token when the cluster has none) and
`x-codex-gateway-forwarded: <this replica>`: a forwarded call is never forwarded again. A tail
is relayed through `ClusterService.RelayTail` (in batches) instead.

The home's answer comes back as it was: an error keeps its status, message and rich details
(`HomeAnswered`). A home that is down (its lease expired, or its address refusing: UNAVAILABLE
from the channel itself, with no status details of the gateway's) is `ReplicaUnavailable` naming
it; the channels reconnect quickly, so calls work again as soon as it is back.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from bridge.errors import STATUS_DETAILS_KEY, status_details
from bridge.requestid import REQUEST_ID_HEADER, current_request_id
from codex_gateway.v1 import cluster_pb2, cluster_pb2_grpc, gateway_pb2_grpc, sessions_pb2
from gateway import tracing
from gateway.agent.events import canonical_thread_id
from gateway.auth import principal as principals
from gateway.auth.principal import PRINCIPAL_KEY
from gateway.cluster.database import Database
from gateway.cluster.tails import SharedTails
from gateway.errors import ReplicaUnavailable
from gateway.sessions.access import TOKEN_KEYS

CLUSTER_TOKEN_KEY: Final = "x-codex-gateway-cluster-token"  # noqa: S105  # a metadata key
FORWARDED_KEY: Final = "x-codex-gateway-forwarded"
# The caller's metadata a forwarded call carries on: what the home's servicer reads (the secure
# tokens) and the request id. Credentials for the home itself are this replica's own; the trace
# context is this replica's span, not the caller's.
PASSED_ON: Final = frozenset({*TOKEN_KEYS, "x-request-id"})
ERROR_DOMAIN: Final = "codex-gateway.v1"
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
# A home that was down is reached again within about a second of its return (grpc's default
# backoff grows to two minutes).
_CHANNEL_OPTIONS: Final = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.primary_user_agent", "codex-gateway-replica"),
)
Metadata = tuple[tuple[str, str | bytes], ...]

_LOCATE = (
    "SELECT s.session_id, s.home_replica, r.grpc_addr,"
    " coalesce(r.state = 'alive' AND r.lease_until > now(), false)"
    " FROM sessions s LEFT JOIN replicas r ON r.replica_id = s.home_replica"
    " WHERE s.session_id = %(ref)s OR s.codex_session_id = %(thread)s"
    " ORDER BY s.session_id = %(ref)s DESC, s.created_at LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class Home:
    """Where a session lives: its id, its home replica, that replica's address and liveness."""

    session_id: str
    replica_id: str
    grpc_addr: str | None
    alive: bool


class HomeAnswered(Exception):  # not a failure of ours: the home's own answer
    """The home replica answered with an error: to be given to the client as it is."""

    def __init__(self, code: grpc.StatusCode, message: str, status_details: bytes | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_details = status_details

    def trailing_metadata(self) -> Metadata:
        if self.status_details is None:
            return ()
        return ((STATUS_DETAILS_KEY, self.status_details),)


def is_forwarded(metadata: Iterable[tuple[str, str | bytes]]) -> bool:
    return any(key == FORWARDED_KEY for key, _ in metadata)


class Forwarding:
    """This replica's view of where sessions live, and its channels to the other replicas."""

    def __init__(
        self,
        database: Database,
        replica_id: str,
        *,
        cluster_token: str | None,
        api_token: str | None,
        follower_buffer_bytes: int,
    ) -> None:
        self._db = database
        self._tails = SharedTails(follower_buffer_bytes)
        self.replica_id = replica_id
        credentials: list[tuple[str, str]] = [(FORWARDED_KEY, replica_id)]
        if cluster_token is not None:
            credentials.append((CLUSTER_TOKEN_KEY, cluster_token))
        elif api_token is not None:  # every replica on loopback: the API token opens the door
            credentials.append(("authorization", f"Bearer {api_token}"))
        self._credentials = tuple(credentials)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, gateway_pb2_grpc.GatewayServiceStub] = {}
        self._relays: dict[str, cluster_pb2_grpc.ClusterServiceStub] = {}

    async def home(self, ref: str) -> Home | None:
        """Where the session `ref` (its gateway id, or its codex thread id in any hex case)
        lives; None when the cluster does not know it. StorageUnavailable (503) when the
        database cannot be reached."""
        ref = ref.strip()
        thread = canonical_thread_id(ref)
        async with self._db.connection() as conn:
            cursor = await conn.execute(_LOCATE, {"ref": ref, "thread": thread})
            row = await cursor.fetchone()
        if row is None:
            return None
        session_id, replica_id, addr, alive = row
        return Home(
            str(session_id),
            str(replica_id),
            str(addr) if addr else None,
            bool(alive) and bool(addr),
        )

    def metadata(self, caller: Iterable[tuple[str, str | bytes]]) -> Metadata:
        """A forwarded call's metadata: this replica's credentials and what it passes on."""
        passed = tuple(
            (key, value) for key, value in caller if key in PASSED_ON and key != REQUEST_ID_HEADER
        )
        # The call's own id (as this replica chose it), so the home logs the same one.
        request_id = current_request_id()
        own = ((REQUEST_ID_HEADER, request_id),) if request_id is not None else ()
        # The trace goes on: the home's RPC span is a child of this replica's (no-op: nothing).
        trace_context = tuple(tracing.w3c_headers().items())
        # Who is calling (trusted by the home with the cluster token only): its tenant's view.
        caller_key = ((PRINCIPAL_KEY, principals.current().encode()),)
        return self._credentials + passed + own + trace_context + caller_key

    async def unary(
        self,
        home: Home,
        method: str,
        request: Message,
        *,
        caller: Metadata,
        time_left_s: float | None,
    ) -> Any:
        """The public method `method` called on the session's home."""
        callable_ = getattr(self._stub(home), method)
        try:
            return await callable_(request, metadata=self.metadata(caller), timeout=time_left_s)
        except grpc.aio.AioRpcError as error:
            raise _translated(error, home) from None

    async def stream(
        self,
        home: Home,
        method: str,
        request: Message,
        *,
        caller: Metadata,
        time_left_s: float | None,
    ) -> AsyncIterator[Any]:
        """The public streaming method `method` called on the session's home; leaving early
        cancels the call there."""
        call = getattr(self._stub(home), method)(
            request, metadata=self.metadata(caller), timeout=time_left_s
        )
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as error:
            raise _translated(error, home) from None
        finally:
            call.cancel()

    def tail(
        self,
        home: Home,
        request: sessions_pb2.TailSessionRequest,
        *,
        caller: Metadata,
        time_left_s: float | None,
    ) -> AsyncIterator[sessions_pb2.TailSessionResponse]:
        """The session's tail from its home: relayed as it is, or when following, its backlog
        relayed and its live part shared with the other followers here (cluster/tails.py)."""
        if not request.follow:
            return self.relay_tail(home, request, caller=caller, time_left_s=time_left_s)

        def relay(
            wanted: sessions_pb2.TailSessionRequest,
        ) -> AsyncIterator[sessions_pb2.TailSessionResponse]:
            left = None if wanted.follow else time_left_s  # the shared stream outlives callers
            return self.relay_tail(home, wanted, caller=caller, time_left_s=left)

        return self._tails.follow((home.replica_id, home.session_id), request, caller, relay)

    async def relay_tail(
        self,
        home: Home,
        request: sessions_pb2.TailSessionRequest,
        *,
        caller: Metadata,
        time_left_s: float | None,
    ) -> AsyncIterator[sessions_pb2.TailSessionResponse]:
        """The session's tail, relayed from its home in batches, one item at a time again."""
        self._check(home)
        call = self._relay(home).RelayTail(
            cluster_pb2.RelayTailRequest(tail=request),
            metadata=self.metadata(caller),
            timeout=time_left_s,
        )
        try:
            async for batch in call:
                for item in batch.items:
                    yield item
        except grpc.aio.AioRpcError as error:
            raise _translated(error, home) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._tails.close()
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        self._relays.clear()
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close(None)

    def _check(self, home: Home) -> str:
        if not home.alive or home.grpc_addr is None:
            raise ReplicaUnavailable(home.replica_id, home.session_id)
        return home.grpc_addr

    def _channel(self, addr: str) -> grpc.aio.Channel:
        channel = self._channels.get(addr)
        if channel is None:
            channel = grpc.aio.insecure_channel(addr, options=_CHANNEL_OPTIONS)
            self._channels[addr] = channel
        return channel

    def _stub(self, home: Home) -> gateway_pb2_grpc.GatewayServiceStub:
        addr = self._check(home)
        stub = self._stubs.get(addr)
        if stub is None:
            stub = gateway_pb2_grpc.GatewayServiceStub(self._channel(addr))  # type: ignore[no-untyped-call]  # generated
            self._stubs[addr] = stub
        return stub

    def _relay(self, home: Home) -> cluster_pb2_grpc.ClusterServiceStub:
        addr = self._check(home)
        stub = self._relays.get(addr)
        if stub is None:
            stub = cluster_pb2_grpc.ClusterServiceStub(self._channel(addr))  # type: ignore[no-untyped-call]  # generated
            self._relays[addr] = stub
        return stub


def _translated(error: grpc.aio.AioRpcError, home: Home) -> Exception:
    """The home's own answer as it was; the channel's UNAVAILABLE (nobody answered) as the
    home being unavailable."""
    details = status_details(error)
    if error.code() == grpc.StatusCode.UNAVAILABLE and not _from_gateway(details):
        return ReplicaUnavailable(home.replica_id, home.session_id)
    return HomeAnswered(error.code(), error.details() or "", details)


def _from_gateway(details: bytes | None) -> bool:
    """Whether the status details are a gateway's (an ErrorInfo of its domain)."""
    if details is None:
        return False
    status = status_pb2.Status()
    try:
        status.ParseFromString(details)
    except Exception:  # not ours, whatever it is
        return False
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            return True
    return False
