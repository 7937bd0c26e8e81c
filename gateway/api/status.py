"""What GET / and GET /status report: configuration, slots, memory, watcher and webhook state."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import struct_pb2

from bridge.bindings import bindings_from_service, service_descriptor
from bridge.docs import DOCS_PATH
from codex_gateway.v1 import status_pb2 as pb
from gateway import settings
from gateway.auth.keyfile import KeyFileStatus
from gateway.automation.scheduler import Scheduler
from gateway.automation.watcher import FileWatcher
from gateway.automation.webhooks import WebhookSender
from gateway.config import Config
from gateway.procfs import descendants, rss_bytes
from gateway.runs.concurrency import Slots
from gateway.runs.prompt import GlobalSystemPrompt
from gateway.runs.runner import Runner
from gateway.settings import ECHOED

VERSION = "0.1.0"


class StatusReporter:
    def __init__(
        self,
        config: Config,
        slots: Slots,
        runner: Runner,
        system_prompt: GlobalSystemPrompt,
        scheduler: Scheduler,
        watcher: FileWatcher,
        webhooks: WebhookSender,
    ) -> None:
        self._webhooks = webhooks
        self._config = config
        self._scheduler = scheduler
        self._file_watcher = watcher
        self._slots = slots
        self._runner = runner
        self._system_prompt = system_prompt
        self._started = time.monotonic()
        self._endpoints = _struct(endpoints())
        self._env = _struct(self._env_block())
        self._settings = _struct(settings.shown(config))
        # Set by `serve` when it runs the REST bridge as a child process: its pid, if running.
        self.bridge_pid: Callable[[], int | None] | None = None
        # Set in cluster mode: the `cluster` block, read from the database.
        self.cluster: Callable[[], Awaitable[pb.ClusterStatus]] | None = None
        # Set with a key file: its state.
        self.key_file: Callable[[], KeyFileStatus] | None = None

    @property
    def mode(self) -> str:
        return "embedded" if self._config.cluster is None else "cluster"

    async def cluster_block(self) -> pb.ClusterStatus | None:
        return await self.cluster() if self.cluster is not None else None

    async def webhook_pending(self) -> int:
        """The outbox's pending deliveries (in cluster mode, the cluster's: a query)."""
        return await self._webhooks.pending()

    def memory(self) -> pb.MemoryStatus:
        """Reads /proc for every process of the machine (blocking: off the loop, where a busy
        worker thread would make each read wait for the GIL)."""
        bridge = self.bridge_pid() if self.bridge_pid is not None else None
        below = descendants(os.getpid()) - {bridge}
        return pb.MemoryStatus(
            rss=rss_bytes(os.getpid()),
            peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            agents_rss=sum(rss_bytes(pid) for pid in below),
            bridge_rss=rss_bytes(bridge) if bridge is not None else 0,
        )

    def info(self) -> pb.GetInfoResponse:
        return pb.GetInfoResponse(
            status="codex-gateway",
            watcher=self._watcher(),
            webhook=self._webhook(),
            system_prompt=self._system_prompt_status(),
            env=self._env,
            endpoints=self._endpoints,
            config=self._settings,
            version=VERSION,
            mode=self.mode,
        )

    def status(self, memory: pb.MemoryStatus | None = None) -> pb.GetStatusResponse:
        return pb.GetStatusResponse(
            concurrency=pb.ConcurrencyStatus(
                active=self._slots.active,
                max=self._slots.maximum,
                available=self._slots.available,
                waiting=self._slots.waiting,
            ),
            uptime=round(time.monotonic() - self._started, 3),
            memory=memory if memory is not None else self.memory(),
            watcher=self._watcher(),
            webhook=self._webhook(),
            system_prompt=self._system_prompt_status(),
            env=self._env,
            triggers=self._triggers(),
            sessions_running=self._runner.running,
            shutting_down=self._runner.closing,
            mode=self.mode,
            runs_stalled=self._runner.watchdogs.stopped,
            api_keys=self._api_keys(),
        )

    def _api_keys(self) -> pb.ApiKeysStatus | None:
        if self.key_file is None:
            return None
        state = self.key_file()
        return pb.ApiKeysStatus(
            path=state.path, keys=state.keys, loaded_at=state.loaded_at or "", error=state.error
        )

    def _triggers(self) -> pb.TriggersStatus:
        enabled, files = self._scheduler.status()
        status = pb.TriggersStatus(enabled=enabled)
        for path, count, error in files:
            skipped, problems = self._scheduler.file_problems(path)
            entry = status.files.add(path=path, triggers=count, skipped=skipped, problems=problems)
            if error is not None:
                entry.error = error
        return status

    def _watcher(self) -> pb.WatcherStatus:
        watcher = self._config.watcher
        live = self._file_watcher.status
        status = pb.WatcherStatus(
            enabled=live.enabled,
            paths=live.paths if live.enabled else [str(p) for p in watcher.paths],
            pattern=watcher.pattern,
            debounce_ms=watcher.debounce_ms,
            poll_ms=watcher.poll_ms,
            watcher_count=live.watcher_count,
            mode=self._file_watcher.mode,
            events_seen=live.events_seen,
            runs_started=live.runs_started,
        )
        if watcher.prompt_file is not None:
            status.prompt_file = str(watcher.prompt_file)
        if live.last_event is not None:
            status.last_event.update(live.last_event)
        if live.last_error is not None:
            status.last_error = live.last_error
        return status

    def _webhook(self) -> pb.WebhookStatus:
        webhook = self._config.webhook
        status = pb.WebhookStatus(
            configured=webhook.url is not None,
            timeout_ms=webhook.timeout_ms,
            has_auth_bearer=webhook.auth_bearer is not None,
            header_keys=sorted(webhook.headers),
            signed=webhook.secret is not None,
        )
        counts = self._webhooks.status()
        status.delivered = counts["delivered"]
        status.failed = counts["failed"]
        status.pending = counts["pending"]
        if webhook.url is not None:
            status.url_tail = webhook.url if len(webhook.url) <= 18 else "…" + webhook.url[-18:]
        return status

    def _system_prompt_status(self) -> pb.SystemPromptStatus:
        prompt = self._system_prompt
        status = pb.SystemPromptStatus(enabled=prompt.enabled, disabled=prompt.disabled)
        if prompt.path is not None:
            status.path = str(prompt.path)
        if prompt.reason is not None:
            status.reason = prompt.reason
        return status

    def _env_block(self) -> dict[str, Any]:
        """The reference's echo of a few variables, as set but for two effective values."""
        block: dict[str, Any] = {name: self._config.raw_env.get(name, "") for name in ECHOED}
        block["CODEX_GATEWAY_SESSION_DIRS"] = [str(p) for p in self._config.session_dirs]
        block["CODEX_SYSTEM_PROMPT_FILE"] = str(self._system_prompt.path or "")
        return block


def endpoints() -> dict[str, Any]:
    """The documented `endpoints` block: each RPC's main REST binding."""
    routes: dict[str, dict[str, str]] = {}
    for binding in bindings_from_service(service_descriptor()):
        if binding.method.name in routes:
            continue  # an additional binding: the block names the main one
        path = binding.template.text
        for name in ("{session_id}", "{trigger_id}"):
            path = path.replace(name, ":id")
        routes[binding.method.name] = {"path": path, "method": binding.http_method}

    def pick(name: str) -> dict[str, str]:
        return routes[name]

    return {
        "health": pick("Health")["path"],
        "status": pick("GetStatus")["path"],
        "docs": DOCS_PATH,  # the REST bridge's API documentation (no RPC)
        "metrics": pick("GetMetrics")["path"],
        "completion": pick("Complete"),
        "completion_stream": pick("StreamCompletion"),
        "sessions": {
            "list": pick("ListSessions"),
            "detail": pick("GetSession"),
            "search": pick("SearchSession"),
            "prompt": pick("PromptSession"),
            "nudge": pick("NudgeSession"),
            "cancel": pick("CancelSession"),
            "fork": pick("ForkSession"),
            "changes": pick("GetSessionChanges"),
            "tail": pick("TailSession"),
        },
        "triggers": {
            "list": pick("ListTriggers"),
            "get": pick("GetTrigger"),
            "create": pick("CreateTriggers"),
            "update": pick("UpdateTrigger"),
            "delete": pick("DeleteTrigger"),
        },
    }


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct
