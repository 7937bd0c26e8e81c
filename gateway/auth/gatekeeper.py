"""The key check at the gRPC boundary: who is calling, and may they make this call.

Every method but the liveness probes needs `authorization: Bearer <key>`: one of the key set
in force (CODEX_GATEWAY_API_TOKEN's, the key file's). A key that authenticates no one is
UNAUTHENTICATED (401), counted by reason and logged without the key; a key without the
method's scope (gateway/auth/scopes.py) is PERMISSION_DENIED (403, SCOPE_DENIED). The caller
is bound for the call's task (gateway/auth/principal.py).

Cluster mode: another replica's forwarded call offers the cluster token
(`x-codex-gateway-cluster-token`) and the original caller (`x-codex-gateway-principal`), which is
trusted only with that token; ClusterService's methods need the cluster token whatever else is
offered. A cluster without a token (every replica on loopback, no key file) forwards with the
API token, which then opens ClusterService too.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import grpc

from codex_gateway.v1 import cluster_pb2
from gateway.api.around import wrapped
from gateway.api.boundary import answering
from gateway.auth import principal as principals
from gateway.auth.keys import KeyRejected, KeySet
from gateway.auth.principal import OPEN, PRINCIPAL_KEY, Principal
from gateway.auth.scopes import scope_of
from gateway.cluster.forwarding import CLUSTER_TOKEN_KEY
from gateway.errors import GatewayError, ScopeDenied, Unauthenticated

log = logging.getLogger(__name__)
if TYPE_CHECKING:  # generic in the stubs only
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
CLUSTER_SERVICE: Final = f"/{cluster_pb2.DESCRIPTOR.services_by_name['ClusterService'].full_name}/"
_BEARER: Final = "bearer "
_DENIED: Final = "Missing or invalid API token or key (Authorization: Bearer <token>)"
_CLUSTER_DENIED: Final = f"Missing or invalid cluster token ({CLUSTER_TOKEN_KEY})"
# A method the scope table does not name (gRPC reflection) needs this.
_OTHER_SCOPE: Final = "read"


class KeyCheck(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # stubs only
    def __init__(
        self,
        keys: Callable[[], KeySet] | None,
        *,
        open_methods: frozenset[str],
        cluster: bool = False,
        cluster_token: str | None = None,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`keys`: the set in force now (None: no key asked, every caller is `OPEN`)."""
        self._keys = keys
        self._open = open_methods
        self._cluster = cluster
        self._cluster_expected = cluster_token.encode() if cluster_token is not None else None
        self._on_failure = on_failure
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        method = str(details.method)
        if handler is None or method in self._open:
            return handler
        metadata = dict(details.invocation_metadata or ())
        if self._cluster:
            offered = str(metadata.get(CLUSTER_TOKEN_KEY, "")).encode()
            cluster_ok = self._cluster_expected is not None and hmac.compare_digest(
                offered, self._cluster_expected
            )
            if cluster_ok:  # a replica's call: its caller as it says
                forwarded = Principal.decode(str(metadata.get(PRINCIPAL_KEY, "")))
                return self._admitted(handler, method, self._local(forwarded) or OPEN)
            if method.startswith(CLUSTER_SERVICE) and self._cluster_expected is not None:
                return _refused(handler, Unauthenticated(_CLUSTER_DENIED))
        caller = self._authenticate(str(metadata.get("authorization", "")), method)
        if caller is None:
            return _refused(handler, Unauthenticated(_DENIED))
        return self._admitted(handler, method, caller)

    def _authenticate(self, authorization: str, method: str) -> Principal | None:
        if self._keys is None:
            return OPEN
        if authorization[: len(_BEARER)].lower() != _BEARER:
            self._failed("missing", method)
            return None
        try:
            key = self._keys().authenticate(authorization[len(_BEARER) :], self._clock())
        except KeyRejected as rejected:
            self._failed(rejected.reason, method)
            return None
        return Principal(key)

    def _local(self, forwarded: Principal | None) -> Principal | None:
        """A forwarded caller with its key's limits and restrictions as this replica's key set
        has them (the header carries name, tenant and scopes only); as forwarded when this
        replica does not know the key."""
        if forwarded is None or self._keys is None:
            return forwarded
        key = self._keys().named(forwarded.name)
        if key is None or key.tenant != forwarded.tenant:
            return forwarded
        return Principal(key)

    def _failed(self, reason: str, method: str) -> None:
        log.warning("authentication failed (%s key) for %s", reason, method.rsplit("/", 1)[-1])
        if self._on_failure is not None:
            self._on_failure(reason)

    def _admitted(self, handler: Handler, method: str, caller: Principal) -> Handler:
        scope = scope_of(method) if not method.startswith(CLUSTER_SERVICE) else ""
        if scope is None:
            scope = _OTHER_SCOPE
        if scope and not caller.allows(scope):  # refused as the caller (the audit log names it)
            return _as(caller, _refused(handler, ScopeDenied(caller.name, scope)))
        return _as(caller, handler)


def _refused(handler: Handler, error: GatewayError) -> Handler:
    # Imported here: the servicer module imports the whole API (and this one, through it).
    from gateway.api.service import abort

    return answering(handler, lambda context: abort(context, error))


def _as(caller: Principal, handler: Handler) -> Handler:
    """`handler`, run with `caller` bound for its task."""
    return wrapped(handler, lambda _request, _context: _Bound(caller))


class _Bound:
    """The caller bound for the call (each gRPC call runs in a task of its own: nothing to
    undo at its end)."""

    __slots__ = ("caller",)

    def __init__(self, caller: Principal) -> None:
        self.caller = caller

    def __enter__(self) -> None:
        principals.bind(self.caller)

    def __exit__(self, *_: object) -> None:
        return None
