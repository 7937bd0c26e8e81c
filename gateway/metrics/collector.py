"""What is read at scrape time rather than counted as it happens: the state the gateway's parts
already keep (live tails, webhook deliveries, the watcher, crash recovery, agent memory). Costs
nothing between scrapes and nothing on the paths it reports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.agent.budget import OutputBudget
from gateway.automation.scheduler import FireCounts
from gateway.automation.watcher import FileWatcher
from gateway.automation.webhooks import WebhookSender
from gateway.procfs import descendants, rss_bytes
from gateway.sessions.feed import LiveFeed


@dataclass(eq=False)  # registered by identity
class StateCollector(Collector):
    feed: LiveFeed
    webhooks: WebhookSender
    watcher: FileWatcher
    interrupted_found: Callable[[], int]
    fires: FireCounts
    # The bridge's pid, whose memory is not the agents'.
    bridge_pid: Callable[[], int | None] = lambda: None
    # The agents' output budget (gateway/agent/budget.py), when the runner has one.
    output: OutputBudget | None = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        feed = self.feed
        yield _gauge("codex_gateway_tail_followers", "Live tail followers now.", feed.following)
        yield _counter(
            "codex_gateway_tail_followers_dropped",
            "Live tail followers dropped for lagging behind.",
            feed.dropped,
        )
        yield _counter(
            "codex_gateway_tail_items_delivered", "Items queued to live followers.", feed.delivered
        )
        counts = self.webhooks.status()
        yield _counter(
            "codex_gateway_webhooks_delivered", "Webhook deliveries made.", counts["delivered"]
        )
        yield _counter(
            "codex_gateway_webhooks_retried",
            "Webhook attempts that failed and were scheduled again.",
            self.webhooks.retried,
        )
        yield _counter(
            "codex_gateway_webhooks_failed",
            "Webhook deliveries given up on.",
            counts["failed"],
        )
        yield _gauge(
            "codex_gateway_webhooks_pending",
            "Webhook deliveries this process holds in its outbox, queued or in flight.",
            counts["pending"],
        )
        yield _labelled(
            "codex_gateway_trigger_fires",
            "Trigger fires this process ran, by how the run ended.",
            "outcome",
            self.fires.fired,
        )
        yield _labelled(
            "codex_gateway_trigger_misfires",
            "Trigger instants missed or run late, by reason (late: claimed a minute or more past"
            " the instant; unrecorded: the fire's record could not be written, tried again later).",
            "reason",
            self.fires.misfired,
        )
        status = self.watcher.status
        yield _counter(
            "codex_gateway_watcher_events", "File events the watcher saw.", status.events_seen
        )
        yield _counter(
            "codex_gateway_watcher_runs_started",
            "Runs the watcher's events started.",
            status.runs_started,
        )
        yield _counter(
            "codex_gateway_runs_interrupted_found",
            "Runs found running at startup (left by a crash) and recorded as interrupted.",
            self.interrupted_found(),
        )
        if self.output is not None:
            yield _counter(
                "codex_gateway_output_paced_seconds",
                "Seconds the agents' output waited in their pipes for the output budget, summed.",
                self.output.waited_s,
            )
            yield _gauge(
                "codex_gateway_output_readers",
                "Agents sharing the output budget now (those that printed in the last second).",
                self.output.readers(),
            )
        bridge = self.bridge_pid()
        agents = descendants(os.getpid()) - ({bridge} if bridge is not None else set())
        yield _gauge(
            "codex_gateway_agents_resident_memory_bytes",
            "Resident memory of the agents (codex and what it runs), summed.",
            sum(rss_bytes(pid) for pid in agents),
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _labelled(
    name: str, documentation: str, label: str, values: dict[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family
