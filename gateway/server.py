"""Assembling and serving the gateway: the gRPC server (with health, reflection and the API-token
check) and, for `serve`, the REST bridge in a supervised process of its own
(gateway/bridge_process.py), all in one TaskGroup until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import ProcessCollector

from bridge.listener import bind_listener
from codex_gateway.v1 import cluster_pb2, cluster_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from gateway import tracing
from gateway.agent import codex
from gateway.api.boundary import MAX_METADATA_SIZE_BYTES, MetadataGuard, ServicerGuard
from gateway.api.forward import HERE, ClusterPlacement, Placement
from gateway.api.relay import RelayServicer
from gateway.api.requestid import RequestIds
from gateway.api.service import GatewayServicer
from gateway.api.status import StatusReporter
from gateway.auth.audit import AuditLog
from gateway.auth.auditing import AuditTrail
from gateway.auth.gatekeeper import KeyCheck
from gateway.auth.keyfile import KeyFile
from gateway.auth.keys import KeyFileInvalid, KeySet
from gateway.automation.ledger import FireLedger
from gateway.automation.outbox import DirectoryOutbox, Outbox
from gateway.automation.scheduler import Scheduler
from gateway.automation.store import TriggerStore
from gateway.automation.triggers import TriggerFiles
from gateway.automation.watcher import FileWatcher
from gateway.automation.webhooks import WebhookSender
from gateway.bridge_process import BridgeProcess
from gateway.clock import Clock, system_clock
from gateway.cluster.forwarding import Forwarding
from gateway.cluster.keyquotas import ClusterKeyQuotas
from gateway.cluster.node import ClusterNode
from gateway.cluster.outbox import DatabaseOutbox
from gateway.cluster.slots import ClusterSlots
from gateway.cluster.store import LOST_ERROR, ClusterSessionStore
from gateway.cluster.triggers import cluster_triggers
from gateway.config import Config, ConfigError, StartupError
from gateway.metrics.collector import StateCollector
from gateway.metrics.families import GatewayMetrics
from gateway.metrics.interceptor import RpcMetrics
from gateway.metrics.lag import sample_lag
from gateway.runs.concurrency import RunSlots, Slots
from gateway.runs.prompt import GlobalSystemPrompt
from gateway.runs.runner import Runner
from gateway.sessions.access import SecureAccess
from gateway.sessions.feed import LiveFeed
from gateway.sessions.files import FileSessionStore
from gateway.sessions.store import SessionStore
from gateway.supervisor import supervise

log = logging.getLogger(__name__)
# grpc_health re-exports its asyncio servicer as `health.aio`, which mypy cannot see.
AioHealthServicer = health.aio.HealthServicer  # type: ignore[attr-defined]

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name
CLUSTER_SERVICE_NAME = cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name
# Methods that answer without the API token: liveness probes.
_OPEN_METHODS = frozenset({f"/{SERVICE_NAME}/Health", "/grpc.health.v1.Health/Check"})
# CODEX_GATEWAY_METRICS_PUBLIC: the scrape answers without the API token too.
_METRICS_METHOD = f"/{SERVICE_NAME}/GetMetrics"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
REST_BACKLOG = 1024
SWITCH_INTERVAL_S = 0.001


@dataclass
class Gateway:
    """The gateway's parts, wired together; nothing here has started yet."""

    config: Config
    store: SessionStore
    slots: Slots
    runner: Runner
    access: SecureAccess
    feed: LiveFeed
    reporter: StatusReporter
    trigger_files: TriggerFiles
    scheduler: Scheduler
    watcher: FileWatcher
    webhooks: WebhookSender
    # Cluster mode: this replica's database, registration and signals; None: embedded.
    node: ClusterNode | None = None
    # Where a session lives (gateway/api/forward.py); cluster mode: also the channels to the
    # other replicas, and the tail relay is served.
    placement: Placement = HERE
    forwarding: Forwarding | None = None
    # The API keys' check (and in cluster mode the cluster token's); None: no check.
    token_check: KeyCheck | None = None
    # CODEX_GATEWAY_API_KEYS_FILE, followed; None: no key file.
    key_file: KeyFile | None = None
    # CODEX_GATEWAY_AUDIT_FILE: a record per mutating call (gateway/auth/auditing.py); None: off.
    audit: AuditTrail | None = None
    audit_log: AuditLog | None = None
    # Cluster mode: the store's write-behind into the database (ClusterSessionStore.run).
    store_sync: Callable[[asyncio.Event], Awaitable[None]] | None = None
    # This process's metric families (gateway/metrics/); None: CODEX_GATEWAY_METRICS off (bench).
    metrics: GatewayMetrics | None = None

    @classmethod
    def build(cls, config: Config, *, clock: Clock = system_clock) -> Gateway:
        node = ClusterNode(config.cluster) if config.cluster is not None else None
        files = FileSessionStore(config.session_dirs, config.secure_session_dir)
        store: SessionStore = files
        store_sync = None
        if node is not None:
            cluster_store = ClusterSessionStore(files, node)
            store, store_sync = cluster_store, cluster_store.run
        local_slots = RunSlots(config.max_concurrent)
        slots: Slots = ClusterSlots(node, local_slots) if node is not None else local_slots
        system_prompt = GlobalSystemPrompt.load(
            config.system_prompt_file, disabled=config.system_prompt_disabled
        )
        feed = LiveFeed(buffer_bytes=config.follower_buffer_bytes)
        spool = config.primary_session_dir / ".webhooks"
        outbox: Outbox = DirectoryOutbox(spool)
        if node is not None:
            outbox = DatabaseOutbox(
                node.database,
                config.webhook,
                spool,
                replica_id=node.replica_id,
                signals=node.signals,
                replicas=node.replicas,
            )
        webhooks = WebhookSender(config.webhook, outbox, tracer=tracing.tracer(config))
        access = SecureAccess(config.secure_token)
        metrics = GatewayMetrics() if config.metrics_enabled else None
        runner = Runner(
            config,
            store,
            slots,
            access,
            system_prompt,
            feed,
            on_finished=webhooks.run_finished if webhooks.configured else None,
            metrics=metrics,
            # The API keys' quotas: this process's runs, or (cluster) the cluster's.
            quotas=ClusterKeyQuotas(node) if node is not None else None,
        )
        trigger_files = TriggerFiles(config.triggers)
        # Embedded: the files, their own bookkeeping and this machine's clock; cluster: the
        # database's triggers and ledger, and the database's time.
        trigger_store: TriggerStore = trigger_files
        ledger: FireLedger | None = None
        scheduler_clock = clock
        if node is not None:
            trigger_store, ledger, scheduler_clock = cluster_triggers(
                node, trigger_files, config.triggers, clock
            )
        scheduler = Scheduler(
            config.triggers,
            trigger_store,
            runner,
            store,
            default_workspace=config.default_workspace,
            workspace_roots=config.workspace_roots,
            request_env_allow=config.request_env_allow,
            clock=scheduler_clock,
            ledger=ledger,
        )
        watcher = FileWatcher(config.watcher, runner)
        reporter = StatusReporter(
            config, slots, runner, system_prompt, scheduler, watcher, webhooks
        )
        placement: Placement = HERE
        forwarding = None
        if metrics is not None:
            metrics.registry.register(
                StateCollector(
                    feed,
                    webhooks,
                    watcher,
                    lambda: files.interrupted_found,
                    scheduler.counts,
                    bridge_pid=lambda: reporter.bridge_pid() if reporter.bridge_pid else None,
                    output=runner.output,
                )
            )
            ProcessCollector(namespace="codex_gateway", registry=metrics.registry)
        open_methods = _OPEN_METHODS | ({_METRICS_METHOD} if config.metrics_public else set())
        key_file, keys = _api_keys(config)
        on_failure = metrics.auth_failures_counter() if metrics is not None else None
        token_check = (
            KeyCheck(keys, open_methods=open_methods, on_failure=on_failure)
            if keys is not None
            else None
        )
        if key_file is not None:
            reporter.key_file = key_file.status
        audit_log = _audit_log(config)
        if node is not None:
            reporter.cluster = node.status
            lost = LOST_ERROR.format(node.replica_id)
            node.replicas.on_fenced(lambda: runner.interrupt_all(lost))
            forwarding = Forwarding(
                node.database,
                node.replica_id,
                cluster_token=node.config.token,
                api_token=config.api_token,
                follower_buffer_bytes=config.follower_buffer_bytes,
            )
            placement = ClusterPlacement(store, forwarding)
            token_check = KeyCheck(
                keys,
                cluster=True,
                cluster_token=node.config.token,
                open_methods=open_methods,
                on_failure=on_failure,
            )
        audit = (
            AuditTrail(
                audit_log,
                keys_required=keys is not None,
                cluster_token=node.config.token if node is not None else None,
            )
            if audit_log is not None
            else None
        )
        return cls(
            config,
            store,
            slots,
            runner,
            access,
            feed,
            reporter,
            trigger_files,
            scheduler,
            watcher,
            webhooks,
            node,
            placement=placement,
            forwarding=forwarding,
            token_check=token_check,
            key_file=key_file,
            audit=audit,
            audit_log=audit_log,
            store_sync=store_sync,
            metrics=metrics,
        )

    async def open(self) -> None:
        """Join the cluster (cluster mode), then open the store: index the sessions and
        reconcile what a crash left running. StartupError when any of it fails."""
        if self.node is not None:
            await self.node.open()
        try:
            self.store.load()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self.forwarding is not None:
            await self.forwarding.close()
        self.store.close()
        if self.node is not None:
            await self.node.close()
        if self.audit_log is not None:
            self.audit_log.close()  # what is queued is written first

    async def background(self, stop: asyncio.Event, webhooks_stop: asyncio.Event) -> None:
        """The loops beside the servers: scheduler, watcher, webhook delivery (and in cluster
        mode the replica's heartbeat and signals). Webhooks and the heartbeat stop last, so
        runs that end while the gateway drains still get theirs out and are recorded. Each is
        supervised: one that raises is logged and restarted, and the gateway goes on serving."""
        async with asyncio.TaskGroup() as group:
            if self.node is not None:
                group.create_task(self.node.run(webhooks_stop))
            if self.store_sync is not None:
                group.create_task(supervise("session sync", self.store_sync, webhooks_stop))
            group.create_task(supervise("scheduler", self.scheduler.run, stop))
            if self.key_file is not None:
                group.create_task(supervise("API keys", self.key_file.follow, stop))
            group.create_task(supervise("watcher", self.watcher.run, stop))
            group.create_task(supervise("webhook delivery", self.webhooks.run, webhooks_stop))
            if self.metrics is not None:
                lag = self.metrics.loop_lag
                group.create_task(supervise("loop lag", lambda s: sample_lag(lag, s), stop))


def _audit_log(config: Config) -> AuditLog | None:
    if config.audit_file is None:
        return None
    try:
        return AuditLog(
            config.audit_file, max_bytes=config.audit_max_bytes, backups=config.audit_backups
        )
    except OSError as exc:
        raise ConfigError(
            f"CODEX_GATEWAY_AUDIT_FILE: cannot open {config.audit_file}: {exc.strerror}"
        ) from None


def _api_keys(config: Config) -> tuple[KeyFile | None, Callable[[], KeySet] | None]:
    """The key file (followed) and the key set in force now: the file's keys and the API
    token's; (None, None) when no key is asked for."""
    token_keys = KeySet.of_token(config.api_token) if config.api_token else None
    if config.api_keys_file is None:
        return None, (lambda: token_keys) if token_keys is not None else None
    roots = tuple(root.resolve() for root in (*config.workspace_roots, config.default_workspace))
    try:
        key_file = KeyFile(config.api_keys_file, roots, token_keys=token_keys)
    except KeyFileInvalid as exc:
        raise ConfigError(f"CODEX_GATEWAY_API_KEYS_FILE: {exc}") from None
    return key_file, lambda: key_file.keys


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    port: int
    health: Any  # an AioHealthServicer


class _GenericHandlersOnly:
    """The gRPC server as the generated `add_*_to_server` functions see it: each service is
    served by its generic handler alone, its methods not registered besides it.

    grpcio's aio server waits, at every call it accepts, on one future per registered method
    and one for the rest (grpcio 1.85, `AioServer._server_main_loop`): with the services'
    twenty-odd methods that wait took about 45 us of every RPC, as much as the rest of a
    health check. Unregistered, a call is found by its service's handler (a dict lookup)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        """Not registered: the generic handler given with them serves the same methods."""


async def start_grpc(
    gateway: Gateway,
    host: str,
    port: int,
    *,
    before_start: Callable[[], Awaitable[None]] | None = None,
) -> GrpcServer:
    """Start the gRPC server on host:port (0 picks a free port). `before_start` runs once the
    port is bound, before anything is served; if it raises, nothing is left bound."""
    config = gateway.config
    interceptors: list[grpc.aio.ServerInterceptor] = [  # type: ignore[type-arg]  # stubs only
        RequestIds(),  # every answer, a refusal too, carries the call's request id
        MetadataGuard(_OPEN_METHODS),  # then: an oversized token is a 400, not a 401
    ]
    if gateway.metrics is not None:  # refused RPCs are counted with their code
        interceptors.insert(0, RpcMetrics(gateway.metrics))
    if config.tracing is not None:  # a span per RPC, continuing the caller's trace
        interceptors.insert(0, tracing.RpcSpans())
    if gateway.audit is not None:  # before the key check: its refusals are recorded too
        interceptors.append(gateway.audit)
    if gateway.token_check is not None:
        interceptors.append(gateway.token_check)
    interceptors.append(ServicerGuard())  # after the token check: a 401 stays a 401
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            # Bounded as the REST body is, with room for the framing of a full-size body.
            ("grpc.max_receive_message_length", config.max_body_bytes + 65_536),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # One limit, not a soft and a hard one, so that grpcio's answer to long metadata
            # (RESOURCE_EXHAUSTED) is deterministic and starts far above MetadataGuard's cap.
            ("grpc.max_metadata_size", MAX_METADATA_SIZE_BYTES),
            ("grpc.absolute_max_metadata_size", MAX_METADATA_SIZE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    servicer = GatewayServicer(
        config,
        gateway.runner,
        gateway.access,
        gateway.store,
        gateway.feed,
        gateway.reporter,
        gateway.scheduler,
        gateway.trigger_files,
        gateway.placement,
        metrics=gateway.metrics,
    )
    services = _GenericHandlersOnly(server)
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, services)  # type: ignore[no-untyped-call]  # generated
    if gateway.forwarding is not None:  # cluster mode: the other replicas' tails
        cluster_pb2_grpc.add_ClusterServiceServicer_to_server(  # type: ignore[no-untyped-call]  # generated
            RelayServicer(servicer.local_tail), services
        )
    health_servicer = AioHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, services)
    # (Registered, as reflection registers itself: one method, one more future to wait on.)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    try:
        bound = server.add_insecure_port(f"{_host(host)}:{port}")
    except RuntimeError:  # grpc's way of saying the address cannot be bound
        bound = 0
    if bound == 0:
        raise ConfigError(f"CODEX_GATEWAY_GRPC_PORT: cannot listen on {host}:{port}")
    if before_start is not None:
        try:
            await before_start()
        except BaseException:
            await server.stop(None)
            raise
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server, bound, health_servicer)


async def drain(gateway: Gateway, grpc_server: GrpcServer) -> None:
    """Stop answering health and taking runs; give running ones their grace, then stop them."""
    await grpc_server.health.enter_graceful_shutdown()
    await gateway.runner.shutdown(gateway.config.shutdown_grace_ms / 1000)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def warn_if_exposed(config: Config) -> None:
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(config.bind).is_loopback and not config.api_token:
            log.warning(
                "!!! CODEX_GATEWAY_BIND=%s exposes an agent that runs shell commands to the "
                "network WITHOUT authentication. Set CODEX_GATEWAY_API_TOKEN. !!!",
                config.bind,
            )


def warn_if_prompt_in_a_workspace(config: Config) -> None:
    """The global system prompt is prepended to every run, secure ones included: one that an
    agent can rewrite (by default ./PROMPT.md, and the working directory is often the
    workspace) steers every later run after a restart."""
    if config.system_prompt_disabled:
        return
    prompt = config.system_prompt_file.resolve()
    for root in (config.default_workspace, *config.workspace_roots):
        if prompt.is_relative_to(root.resolve()):
            log.warning(
                "CODEX_SYSTEM_PROMPT_FILE %s lies inside the workspace %s: an agent can rewrite "
                "the prompt of every later run; keep it outside the workspaces",
                prompt,
                root,
            )
            return


async def serve(
    config: Config,
    *,
    with_bridge: bool = True,
    stop: asyncio.Event | None = None,
    ready: Callable[[int, int | None], None] | None = None,
) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives. `ready(grpc_port, rest_port)`."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    # CPU-bound work in worker threads (a large trigger file parsed, a search) holds the GIL
    # for up to the switch interval each time the loop thread wants it back, which it does at
    # every blocking call: at the default 5 ms, a few hundred of them stall an answer by
    # seconds. 1 ms keeps that wait short; with no such thread nothing changes.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _watch_children_with_pidfds(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    warn_if_exposed(config)
    warn_if_prompt_in_a_workspace(config)
    gateway = Gateway.build(config)
    # Both ports before the sessions: a second gateway started by mistake must fail before its
    # startup reconciliation takes the first one's running runs for a crash's leftovers (the
    # store's lock on its roots catches one on other ports).
    rest_socket = _rest_listener(config) if with_bridge else None
    metrics_socket = None
    if rest_socket is not None and config.metrics_port:
        try:
            metrics_socket = _listener(config.metrics_port, "CODEX_GATEWAY_METRICS_PORT", config)
        except BaseException:
            rest_socket.close()
            raise
    try:
        grpc_server = await start_grpc(
            gateway, config.bind, config.grpc_port, before_start=gateway.open
        )
    except BaseException:
        if rest_socket is not None:
            rest_socket.close()
        if metrics_socket is not None:
            metrics_socket.close()
        raise
    log.info("gRPC listening on %s:%d", config.bind, grpc_server.port)
    try:
        config.codex_home.mkdir(parents=True, exist_ok=True)  # codex refuses a missing home
    except OSError as exc:
        log.warning("CODEX_HOME %s cannot be created: %s", config.codex_home, exc.strerror)
    problem = codex.missing_credentials(config.codex_home, config.child_env, config.extra_args)
    if problem is not None and codex.is_codex(config.codex_bin):
        log.warning("%s; runs will answer 503 until then", problem)
    if not config.codex_bin.exists():
        log.warning("codex binary not found at %s: runs will answer 503", config.codex_bin)
    bridge_stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            background_stop, webhooks_stop = asyncio.Event(), asyncio.Event()
            group.create_task(gateway.background(background_stop, webhooks_stop))
            if rest_socket is not None:
                bridge = BridgeProcess(
                    _upstream(config.bind, grpc_server.port),
                    rest_socket,
                    max_body_bytes=config.max_body_bytes,
                    log_level=config.logging_level,
                    log_format=config.log_format,
                    guards=config.bridge,
                    check_host=config.bridge.check_host(config.authenticates),
                    tracing=config.tracing,
                    metrics_sock=metrics_socket,
                )
                gateway.reporter.bridge_pid = lambda: bridge.pid
                group.create_task(bridge.run(bridge_stop))
                port = await _first(bridge.ready, stop)
                if port is not None:
                    log.info("REST listening on %s:%d", config.bind, port)
                    if ready is not None:
                        ready(grpc_server.port, port)
            elif ready is not None:
                ready(grpc_server.port, None)
            await stop.wait()
            log.info("shutting down: runs get %d ms", config.shutdown_grace_ms)
            background_stop.set()
            await drain(gateway, grpc_server)
            webhooks_stop.set()
            bridge_stop.set()  # after the runs: their REST callers still get their answers
    except* StartupError as failed:  # no bridge could start: the command's message, not a group
        raise failed.exceptions[0] from None
    finally:
        if rest_socket is not None:
            rest_socket.close()  # the bridge is gone: refuse connections rather than hold them
        if metrics_socket is not None:
            metrics_socket.close()
        await grpc_server.server.stop(grace=1.0)
        await gateway.close()


def _rest_listener(config: Config) -> socket.socket:
    """Bound and listening before anything else starts: a port in use fails startup, and
    connections wait in the backlog until the bridge process accepts them."""
    return _listener(config.port, "CODEX_GATEWAY_PORT", config)


def _listener(port: int, variable: str, config: Config) -> socket.socket:
    try:
        sock = bind_listener(config.bind, port)
    except OSError as exc:
        raise ConfigError(
            f"{variable}: cannot listen on {config.bind}:{port}: {exc.strerror}"
        ) from exc
    sock.listen(REST_BACKLOG)
    return sock


def _upstream(bind: str, grpc_port: int) -> str:
    """Where the bridge reaches the gRPC server: loopback when it listens on every address."""
    if bind in ("0.0.0.0", "::", "127.0.0.1"):  # noqa: S104  # a comparison
        return f"127.0.0.1:{grpc_port}"
    return f"{_host(bind)}:{grpc_port}"


def _watch_children_with_pidfds(loop: asyncio.AbstractEventLoop) -> None:
    """Python 3.11's default child watcher starts a thread per process; a pidfd watcher (Linux
    5.3+) has the event loop itself wait for exits. 3.12 does this alone. It serves the asyncio
    subprocesses (git for a run's changes, the bridge); agents are watched by
    gateway/agent/child.py itself."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return  # the kernel has no pidfds: keep the default
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)


async def _first(port: asyncio.Future[int], stop: asyncio.Event) -> int | None:
    waiter: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    pending: set[asyncio.Future[Any]] = {port, waiter}
    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    return port.result() if port in done else None
