"""Fan-out of live readings, events and status changes to WebSocket clients.

The store calls :meth:`EventHub.on_commit` after each commit (on the loop, synchronously);
each message is serialised once and offered to every matching client's bounded queue. A
client that cannot keep up loses messages (counted), and after :data:`LAG_LIMIT` losses in
a row it is disconnected: a slow client never slows the service or other clients.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.api.serialize import event_json, reading_json

if TYPE_CHECKING:
    from gateway.store import Commit

#: Messages buffered per client before it starts losing them.
QUEUE_SIZE = 1000
#: Consecutive lost messages after which a client is disconnected as too slow.
LAG_LIMIT = 1000
#: WebSocket clients at most (each costs a queue and a task).
MAX_CLIENTS = 32

KINDS = frozenset({"reading", "event", "status"})


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Empty sets match everything."""

    devices: frozenset[str] = frozenset()
    metrics: frozenset[str] = frozenset()
    kinds: frozenset[str] = KINDS

    def matches(self, kind: str, device: str | None, metric: str | None) -> bool:
        if kind not in self.kinds:
            return False
        if kind == "status":
            return True
        if self.devices and device not in self.devices:
            return False
        # a metric filter lets events through only when "event" was asked for explicitly
        return not self.metrics or metric in self.metrics

    def to_json(self) -> dict[str, Any]:
        return {
            "device": sorted(self.devices),
            "metric": sorted(self.metrics),
            "type": sorted(self.kinds),
        }


@dataclass(eq=False, slots=True)  # hashed by identity: it lives in a set
class Subscriber:
    filter: EventFilter
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    lag_limit: int = LAG_LIMIT
    dropped: int = 0
    lagging: int = 0
    too_slow: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1
            self.lagging += 1
            if self.lagging >= self.lag_limit:
                self.too_slow.set()
            return False
        self.lagging = 0
        return True


@dataclass(slots=True)
class EventHub:
    #: Per client: messages buffered, and lost in a row before it is dropped.
    queue_size: int = QUEUE_SIZE
    lag_limit: int = LAG_LIMIT
    clients: set[Subscriber] = field(default_factory=set)
    sent: int = 0
    dropped: int = 0
    disconnected_slow: int = 0
    _last_status: str = ""

    def add(self, flt: EventFilter) -> Subscriber:
        sub = Subscriber(flt, asyncio.Queue(self.queue_size), self.lag_limit)
        self.clients.add(sub)
        return sub

    def remove(self, sub: Subscriber) -> None:
        self.clients.discard(sub)

    def _offer(self, kind: str, device: str | None, metric: str | None, data: Any) -> None:
        text = ""
        for sub in list(self.clients):
            if not sub.filter.matches(kind, device, metric):
                continue
            text = text or json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            if sub.offer(text):
                self.sent += 1
            else:
                self.dropped += 1

    def on_commit(self, commit: Commit) -> None:
        if not self.clients:
            return
        readings, events = commit.readings, commit.events
        for r in readings:
            self._offer("reading", r.device_id, r.metric, reading_json(r))
        for e in events:
            self._offer("event", e.device_id, "event", event_json(e))

    def on_status(self, health: Mapping[str, Any]) -> None:
        """Offer a status message when the service health changed since the last one."""
        key = json.dumps(health, sort_keys=True, default=str)
        if key == self._last_status:
            return
        self._last_status = key
        if self.clients:
            self._offer("status", None, None, {"type": "status", **health})
