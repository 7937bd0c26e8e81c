"""The webhook outbox: where a finished run's delivery waits between being queued and its outcome.

`Outbox` is the seam between the delivery loop (`webhooks.WebhookSender`: HTTP, pacing, the
retry policy) and where deliveries are kept. A delivery is queued; taken by the sender when it
is due (from then on it is this sender's: leased); its attempt is counted before it is made;
then it is delivered, retried later, failed for good, or abandoned (the sender stopped during
the attempt: the delivery is due again, in this process or another).

Two implementations: `DirectoryOutbox` here (embedded mode: files under the primary session
root, one process delivers them) and `gateway.cluster.outbox.DatabaseOutbox` (cluster mode: one
table every replica leases from). `Gateway.build` picks one.

The directory's layout:

    <outbox>/<created-ns>-<id>.json   {"id", "created_at", "attempts", "payload"}
    <outbox>/failed/<same name>       the same, plus "last_error" and "failed_at"

A delivery is written (temp file + rename, so a reader never sees half a file) before `queue`
returns, removed once delivered, moved to `failed/` when it fails for good; what is on disk when
the process stops is delivered by the next process. A delivery that cannot be written (a full
disk) is kept in memory instead: delivered if the process lives, lost if it does not.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.atomic import write_atomic
from gateway.clock import now_iso

log = logging.getLogger(__name__)

FAILED_DIR = "failed"
JsonObject = dict[str, Any]


class Unreadable(Exception):
    """The delivery's stored record cannot be read back: it can never be sent."""


@dataclass(eq=False)
class Delivery:
    """One webhook to deliver. `id` is its Idempotency-Key, the same on every attempt."""

    id: str
    # Attempts made so far: read back by `open`, raised by `count_attempt` before each attempt.
    attempts: int = 0


def _nothing() -> None:
    return None


class Outbox(ABC):
    """Where deliveries wait. Called on the event loop's thread (`queue` also before the
    delivery loop starts); `take`..`abandon` only by the one sender that delivers from it."""

    def __init__(self) -> None:
        # Set by the sender: a delivery may be due now (queued here, or signalled by another
        # process). Safe to call from the event loop's thread at any time.
        self.wake: Callable[[], None] = _nothing
        # Queued deliveries that could not be written where they should be (a full disk):
        # each was kept in memory instead.
        self.write_errors = 0

    @abstractmethod
    def queue(self, payload: JsonObject) -> str:
        """Keep one delivery of `payload` (encoded now: later changes to the caller's dicts
        change nothing); its id. Never blocks on the network; raises only when the payload
        cannot be encoded."""

    def load(self) -> None:  # noqa: B027  # optional: nothing to load by default
        """The delivery loop starts: pick up what an earlier process left."""

    async def run(self, stop: asyncio.Event) -> None:  # noqa: B027  # optional: no housekeeping by default
        """The outbox's own background work beside the delivery loop, until `stop` is set."""

    @abstractmethod
    async def take(self, limit: int) -> list[Delivery]:
        """Up to `limit` due deliveries, due order (creation order among equals); each is the
        caller's until its outcome."""

    @abstractmethod
    def due_in_s(self) -> float | None:
        """Seconds until the next delivery may be due (None: none known; `wake` says when)."""

    @abstractmethod
    async def open(self, delivery: Delivery) -> JsonObject:
        """The payload of a taken delivery, `delivery.attempts` read back; Unreadable."""

    @abstractmethod
    async def count_attempt(self, delivery: Delivery) -> None:
        """The attempt about to be made is counted (`delivery.attempts` + 1), durably where
        the outbox can, so that a restart continues the count."""

    @abstractmethod
    async def delivered(self, delivery: Delivery) -> None:
        """The receiver took it. Never raises."""

    @abstractmethod
    async def retry(self, delivery: Delivery, delay_s: float, reason: str) -> None:
        """Due again in `delay_s`. Never raises."""

    @abstractmethod
    async def failed(self, delivery: Delivery, reason: str) -> None:
        """Failed for good: kept aside, never sent again. Never raises."""

    @abstractmethod
    def abandon(self, delivery: Delivery) -> None:
        """The sender stops in the middle of an attempt: the delivery will be due again."""

    @abstractmethod
    def waiting(self) -> int:
        """Deliveries this process holds: queued, or in flight (cheap, synchronous)."""

    async def pending(self) -> int:
        """Deliveries not yet delivered nor failed, for /status."""
        return self.waiting()


@dataclass(eq=False)
class _FileDelivery(Delivery):
    created_ns: int = 0
    # Where the delivery lives (or would live, if writing it failed).
    path: Path = Path()
    # Only a delivery that could not be written is held in memory; the others are read back
    # from disk when their turn comes, so a large backlog does not sit in memory.
    record: JsonObject | None = None
    # time.monotonic() at which the next attempt may start (0: at once).
    due: float = 0.0
    # The record as read for the attempt in progress (None: unreadable, or not read yet).
    current: JsonObject | None = None

    @property
    def saved(self) -> bool:
        return self.record is None


class DirectoryOutbox(Outbox):
    """Embedded mode's outbox: one file per delivery in a directory, a queue in memory."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self._pending: dict[str, _FileDelivery] = {}  # by file name
        # (due, created_ns, tie-break, delivery): the next attempt to start is at the top.
        self._queue: list[tuple[float, int, int, _FileDelivery]] = []
        self._order = itertools.count()

    def queue(self, payload: JsonObject) -> str:
        delivery_id = str(uuid.uuid4())
        created_ns = time.time_ns()
        record = {"id": delivery_id, "created_at": now_iso(), "attempts": 0, "payload": payload}
        # Encoded now, so that later changes to the caller's dicts cannot change what is sent.
        data = encode(record)
        delivery = _FileDelivery(
            delivery_id,
            created_ns=created_ns,
            path=self.directory / f"{created_ns}-{delivery_id}.json",
            due=time.monotonic(),
        )
        try:
            write_outbox_file(delivery.path, data)
        except OSError as exc:
            self.write_errors += 1
            delivery.record = json.loads(data)
            log.error(
                "webhook %s: cannot write to the outbox (%s); kept in memory only", delivery_id, exc
            )
        self._push(delivery)
        return delivery_id

    def _push(self, delivery: _FileDelivery) -> None:
        self._pending[delivery.path.name] = delivery
        self._requeue(delivery)

    def _requeue(self, delivery: _FileDelivery) -> None:
        entry = (delivery.due, delivery.created_ns, next(self._order), delivery)
        heapq.heappush(self._queue, entry)

    def load(self) -> None:
        """Queue the deliveries an earlier process left on disk."""
        found = list_outbox(self.directory)
        if found is None:
            return
        for path, created_ns, delivery_id in found:
            if path.name in self._pending:
                continue  # queued by this process before the loop started
            self._push(_FileDelivery(delivery_id, created_ns=created_ns, path=path))
        if found:
            log.info("webhook: %d pending deliveries in %s", len(self._pending), self.directory)

    async def take(self, limit: int) -> list[Delivery]:
        now = time.monotonic()
        taken: list[Delivery] = []
        while self._queue and len(taken) < limit and self._queue[0][0] <= now:
            taken.append(heapq.heappop(self._queue)[-1])
        return taken

    def due_in_s(self) -> float | None:
        if not self._queue:
            return None
        return max(0.0, self._queue[0][0] - time.monotonic())

    async def open(self, delivery: Delivery) -> JsonObject:
        file = _file(delivery)
        file.current = None
        if file.record is not None:
            record = file.record
        else:
            try:
                record = json.loads(file.path.read_bytes())
            except (OSError, ValueError) as exc:
                raise Unreadable(str(exc)) from exc
            if not isinstance(record, dict) or not isinstance(record.get("payload"), dict):
                raise Unreadable("not a delivery record")
            file.id = str(record.get("id") or file.id)
            attempts = record.get("attempts", 0)
            file.attempts = attempts if isinstance(attempts, int) else 0
        file.current = record
        payload: JsonObject = record["payload"]
        return payload

    async def count_attempt(self, delivery: Delivery) -> None:
        """Written before the attempt, so a restart continues the count."""
        file = _file(delivery)
        file.attempts += 1
        record = file.current
        if record is None:
            return
        record["attempts"] = file.attempts
        try:
            write_outbox_file(file.path, encode(record))
        except OSError as exc:
            if file.saved:
                # The file keeps its lower count; the delivery goes on regardless.
                log.warning("webhook %s: cannot record attempt: %s", file.id, exc)
            return
        file.record = None  # on disk now (the disk may have recovered)

    async def delivered(self, delivery: Delivery) -> None:
        file = _file(delivery)
        self._pending.pop(file.path.name, None)
        try:
            file.path.unlink(missing_ok=True)
        except OSError as exc:
            # Sent again after a restart: the receiver drops it by its Idempotency-Key.
            log.warning("webhook %s: delivered but cannot remove its file: %s", file.id, exc)

    async def retry(self, delivery: Delivery, delay_s: float, reason: str) -> None:
        file = _file(delivery)
        file.due = time.monotonic() + delay_s
        self._requeue(file)

    async def failed(self, delivery: Delivery, reason: str) -> None:
        file = _file(delivery)
        self._pending.pop(file.path.name, None)
        target = self.directory / FAILED_DIR / file.path.name
        record = file.current
        try:
            if record is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                file.path.replace(target)
            else:
                failed = {**record, "last_error": reason, "failed_at": now_iso()}
                write_outbox_file(target, encode(failed))
                file.path.unlink(missing_ok=True)
            kept = str(target)
        except OSError as exc:
            kept = f"nowhere: {exc}" if not file.saved else f"{file.path} ({exc})"
        log.warning(
            "webhook %s failed after %d attempt(s): %s; kept in %s",
            file.id,
            file.attempts,
            reason,
            kept,
        )

    def abandon(self, delivery: Delivery) -> None:
        # Back in the queue, so a restarted loop in this process sends it too.
        self._requeue(_file(delivery))

    def waiting(self) -> int:
        return len(self._pending)


def _file(delivery: Delivery) -> _FileDelivery:
    if not isinstance(delivery, _FileDelivery):
        raise TypeError("not a delivery of this outbox")
    return delivery


def list_outbox(directory: Path) -> list[tuple[Path, int, str]] | None:
    """The deliveries in an outbox directory, oldest first: (path, created ns, id); None when
    the directory cannot be read. Removes what interrupted writes left."""
    try:
        # A temp file is a write that never finished: its complete copy, if there was one,
        # is the .json it was going to replace.
        for leftover in directory.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        paths = sorted(directory.glob("*.json"))
    except OSError as exc:
        log.error("webhook: cannot read the outbox %s: %s", directory, exc)
        return None
    found = []
    for path in paths:
        stamp, _, delivery_id = path.stem.partition("-")
        try:
            created_ns = int(stamp) if stamp.isdigit() else path.stat().st_mtime_ns
        except OSError:
            continue  # gone since the listing
        found.append((path, created_ns, delivery_id or path.stem))
    return found


def encode(value: Any) -> bytes:
    """Compact JSON, UTF-8: what is stored and, for a payload, the exact body sent."""
    # default=str: a stray Path or datetime in a payload is sent as text rather than lost.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def write_outbox_file(path: Path, data: bytes) -> None:
    # The outbox may be gone (removed by hand): made again. A power loss may cost the newest
    # deliveries (write_atomic does not fsync), and the runner's hook stays fast.
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
