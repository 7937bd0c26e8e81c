"""The bridge application: a FastAPI app whose every route comes from the proto, and its server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Final

import grpc
import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from .bindings import Binding, PathTemplate, bindings_from_service, service_descriptor
from .connections import (
    KEEP_ALIVE_S,
    AcceptErrors,
    ConnectionLimits,
    RateLimitedLog,
    limited_protocol,
)
from .docs import (
    DOCS_OPENAPI_PATH,
    DOCS_PATH,
    SCRIPT_NAME,
    STATIC_PATH,
    SwaggerBundle,
    openapi_30,
    page_endpoint,
    script_endpoint,
    static_endpoint,
)
from .endpoint import BindingEndpoint
from .errors import BridgeError, ErrorResponse, send_error, with_request_id
from .guard import HostPolicy, RequestGuard
from .listener import bind_listener
from .metrics import BridgeMetrics, MetricsMiddleware
from .openapi import openapi_document
from .requestid import REQUEST_ID_HEADER, RequestIds, request_id_from
from .responses import encode_json, json_response
from .routes import FallbackRoute, TemplateRoute
from .tracing import RequestSpans
from .transcode import parse_query
from .upstream import Upstream, forwarded_metadata

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = 1_048_576
OPENAPI_PATH: Final = "/openapi.json"
# The RPC that vouches for a caller's credentials before the OpenAPI document is served: the
# bridge holds no token, the gateway decides (and answers 401 as for every other endpoint).
_AUTH_PROBE_RPC: Final = "GetInfo"
_METRICS_RPC: Final = "GetMetrics"
# How long open requests (live tails above all) may take to finish once shutdown starts.
GRACEFUL_SHUTDOWN_S: Final = 5


def create_app(
    upstream: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    channel: grpc.aio.Channel | None = None,
    host_policy: HostPolicy | None = None,
    tracing: bool = False,
) -> FastAPI:
    """The REST bridge in front of the gRPC gateway at `upstream` ("host:port").

    The channel is created in the running loop at startup (or at the first request when the
    app runs without lifespan events) and closed at shutdown; a given `channel` is used as is
    and left open. `host_policy` (default: any host) is enforced by a `RequestGuard`. With
    `tracing` (an SDK provider installed: bridge/tracing.py) every request gets a span whose
    context goes on to the gateway with the call.
    """
    if max_body_bytes < 0:
        raise ValueError(f"max_body_bytes must not be negative, got {max_body_bytes}")
    client = Upstream(upstream, channel, tracing=tracing)
    metrics = BridgeMetrics()
    service = service_descriptor()
    bindings = bindings_from_service(service)
    routes = [
        TemplateRoute(
            binding.method.name,
            binding.template,
            binding.http_methods,
            BindingEndpoint(
                binding,
                client,
                max_body_bytes=max_body_bytes,
                # The scrape: the gateway's exposition, then the bridge's own.
                append=metrics.exposition if binding.method.name == _METRICS_RPC else None,
            ),
        )
        for binding in bindings
    ]
    document = openapi_document(service)
    probe = next(binding for binding in bindings if binding.method.name == _AUTH_PROBE_RPC)
    routes.append(
        TemplateRoute(
            "openapi",
            PathTemplate.parse(OPENAPI_PATH),
            {"GET", "HEAD"},
            _authorized_static(encode_json(document), client, probe),
        )
    )
    routes.extend(_docs_routes(encode_json(openapi_30(document)), client, probe))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        client.open()
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(
        title="Codex Gateway",
        # The documentation is served from the descriptors (OPENAPI_PATH, DOCS_PATH), not
        # FastAPI's models, and FastAPI's own pages would load Swagger UI from a CDN.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry layer would add a second span per request (and metrics
        # and log records) to whatever provider the process has: RequestSpans is the bridge's.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.routes.extend([*routes, FallbackRoute(routes)])
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(RequestGuard, policy=host_policy or HostPolicy(None))
    if tracing:  # around the guard: the span covers its refusals too
        app.add_middleware(RequestSpans)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # refusals count too
    # CODEX_GATEWAY_METRICS_PORT's app: GET /metrics alone, the same scrape (serve_bridge).
    scrape = [route for route in routes if route.name == _METRICS_RPC]
    app.state.metrics_app = MetricsMiddleware(
        Router(routes=[*scrape, FallbackRoute(scrape)]), metrics
    )
    # Last added, outermost: every answer (a refusal, a span's) carries the request's id.
    app.add_middleware(RequestIds)
    return app


def _docs_routes(document_30: bytes, client: Upstream, probe: Binding) -> list[TemplateRoute]:
    """GET /docs (bridge/docs.py): the page and its files are public, the document it shows
    (in OpenAPI 3.0, for the bundled Swagger UI) needs the API token as OPENAPI_PATH does."""
    bundle = SwaggerBundle.installed()
    read = {"GET", "HEAD"}
    return [
        TemplateRoute("docs", PathTemplate.parse(DOCS_PATH), read, page_endpoint(bundle)),
        TemplateRoute(
            "docs-script",
            PathTemplate.parse(f"{STATIC_PATH}/{SCRIPT_NAME}"),
            read,
            script_endpoint(),
        ),
        TemplateRoute(
            "docs-static",
            PathTemplate.parse(f"{STATIC_PATH}/{{version}}/{{name}}"),
            read,
            static_endpoint(bundle),
        ),
        TemplateRoute(
            "docs-openapi",
            PathTemplate.parse(DOCS_OPENAPI_PATH),
            read,
            _authorized_static(document_30, client, probe),
        ),
    ]


def _authorized_static(
    document: bytes, client: Upstream, probe: Binding
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Serves `document` to a caller the gateway accepts (its credentials forwarded with a
    call of `probe`), like any other endpoint: 401 without the API token when one is set."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        try:
            metadata = forwarded_metadata(headers, parse_query(scope.get("query_string", b"")))
            await client.unary(probe, probe.request_class(), metadata)
        except BridgeError as exc:
            await send_error(ErrorResponse.from_bridge_error(exc), scope, receive, send)
            return
        except grpc.aio.AioRpcError as exc:
            await send_error(ErrorResponse.from_rpc_error(exc), scope, receive, send)
            return
        response = Response(document, media_type="application/json")
        await response(scope, receive, send)

    return endpoint


async def _internal_error(request: Request, exc: Exception) -> Response:
    """The last resort: an exception no endpoint handled (each handles its own). It runs
    outside `RequestIds`, which left the request's id in its headers."""
    request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    logger.error("unhandled exception in the bridge (request %s)", request_id, exc_info=exc)
    error = ErrorResponse.internal()
    return json_response(
        error.status,
        with_request_id(error.body, request_id),
        {REQUEST_ID_HEADER: request_id},
    )


async def serve_bridge(
    upstream: str,
    host: str,
    port: int,
    *,
    max_body_bytes: int,
    shutdown: asyncio.Event,
    ready: Callable[[int], None] | None = None,
    sock: socket.socket | None = None,
    limits: ConnectionLimits | None = None,
    check_host: bool = True,
    allowed_hosts: Iterable[str] = (),
    tracing: bool = False,
    metrics_sock: socket.socket | None = None,
) -> None:
    """Serve the bridge on `host:port` (0 picks a port), or on the listening `sock` given
    (host and port are then ignored), until `shutdown` is set.

    `ready` is called with the bound port once the server accepts connections. The socket is
    bound here, so a port in use raises OSError instead of uvicorn's exit. With `check_host`,
    only requests for the bound address, a loopback name or one of `allowed_hosts` (`*`: any)
    are served (bridge/guard.py). `tracing`: see `create_app`. On `metrics_sock`
    (CODEX_GATEWAY_METRICS_PORT), `GET /metrics` alone is served, with no Host check: a
    Prometheus server scrapes it by whatever name.
    """
    sock = sock if sock is not None else bind_listener(host, port)
    policy = HostPolicy.of(check=check_host, bound=str(sock.getsockname()[0]), extra=allowed_hosts)
    app = create_app(upstream, max_body_bytes=max_body_bytes, host_policy=policy, tracing=tracing)
    limits = limits or ConnectionLimits()
    log = RateLimitedLog(logger)
    config = uvicorn.Config(
        app,
        http=limited_protocol(limits, log),
        lifespan="on",
        log_config=None,  # the process configures logging, not uvicorn
        access_log=False,
        proxy_headers=False,  # nothing here uses client addresses; do not trust forwarded ones
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=KEEP_ALIVE_S,  # idle between requests (bridge/connections.py)
    )
    server = _Server(config)
    with sock, AcceptErrors(asyncio.get_running_loop(), log):
        async with asyncio.TaskGroup() as tasks:
            serving = tasks.create_task(server.serve(sockets=[sock]))
            if metrics_sock is not None:
                tasks.create_task(_serve_metrics(app, metrics_sock, limits, log, shutdown))
            supervisor = tasks.create_task(_announce_then_stop(server, sock, shutdown, ready))
            serving.add_done_callback(lambda _: supervisor.cancel())


async def _serve_metrics(
    app: FastAPI,
    sock: socket.socket,
    limits: ConnectionLimits,
    log: RateLimitedLog,
    shutdown: asyncio.Event,
) -> None:
    config = uvicorn.Config(
        app.state.metrics_app,
        http=limited_protocol(limits, log),
        lifespan="off",  # the upstream is the main app's, opened and closed by its lifespan
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    server = _Server(config)
    with sock:
        async with asyncio.TaskGroup() as tasks:
            serving = tasks.create_task(server.serve(sockets=[sock]))
            stopper = tasks.create_task(_announce_then_stop(server, sock, shutdown, None))
            serving.add_done_callback(lambda _: stopper.cancel())


async def _announce_then_stop(
    server: _Server,
    sock: socket.socket,
    shutdown: asyncio.Event,
    ready: Callable[[int], None] | None,
) -> None:
    await server.started_event.wait()
    if ready is not None:
        ready(int(sock.getsockname()[1]))
    await shutdown.wait()
    server.should_exit = True


class _Server(uvicorn.Server):
    """uvicorn that leaves signals to the process and says when it is serving."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process (the gateway's entrypoint) owns SIGINT/SIGTERM and sets `shutdown`.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.started_event.set()
