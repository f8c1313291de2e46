"""The writer's pending queue: items accepted but not yet committed, bounded in memory while
commits fail (readings dropped first, counted)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.errors import StoreError
from gateway.model import DeviceUpdate, Event, Reading
from gateway.store import devices
from gateway.store.codec import encodable, storable
from gateway.store.limits import StoreLimits

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T", Reading, Event)


@dataclass(slots=True)
class StoreCounters:
    commits: int = 0
    rows_committed: int = 0
    commit_failures: int = 0
    dropped_backpressure: int = 0
    dropped_invalid: int = 0


@dataclass(slots=True)
class Batch:
    """Items to commit together (the whole queue, or the part the writer takes)."""

    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    devices: dict[str, DeviceUpdate] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    #: Estimated memory held by ``readings`` and ``events``.
    bytes: int = 0

    def __len__(self) -> int:
        return len(self.readings) + len(self.events)

    def empty(self) -> bool:
        return not (self.readings or self.events or self.devices or self.seen)

    def clear_items(self) -> None:
        self.readings.clear()
        self.events.clear()


class PendingQueue:
    """Accepted items not yet committed. The ``add_*`` methods never block: under
    backpressure they drop (counted in ``counters``)."""

    def __init__(self, limits: StoreLimits, counters: StoreCounters) -> None:
        self._limits = limits
        self._counters = counters
        self.items = Batch()
        self.closed = False
        self.last_drop = -math.inf

    def __len__(self) -> int:
        return len(self.items)

    def _reading_cost(self, r: Reading) -> int:
        value = r.value
        cost = self._limits.item_cost
        return cost + len(value) if type(value) is str else cost

    def _event_cost(self, e: Event) -> int:
        return self._limits.item_cost + sum(len(str(v)) for _, v in e.properties)

    def _admit(self, item: Reading | Event, cost: int) -> int:
        """The item's cost when it may be queued, 0 when it is dropped (counted)."""
        if self.closed:
            raise StoreError("store is closed")
        p, limits = self.items, self._limits
        n = len(p.readings) + len(p.events)  # (not len(p): one call less per reading)
        if n < limits.max_pending and p.bytes + cost <= limits.max_pending_bytes:
            return cost
        self._counters.dropped_backpressure += 1
        self.last_drop = time.monotonic()
        if self._counters.dropped_backpressure == 1:
            _LOGGER.error("pending queue full (writes failing?): dropping readings")
        if isinstance(item, Event) and p.readings:
            # events are rare and urgent: one takes the place of the oldest reading
            p.bytes -= self._reading_cost(p.readings.pop(0))
            return cost
        return 0

    def add_reading(self, reading: Reading) -> bool:
        if not storable(reading):
            self._counters.dropped_invalid += 1
            return False
        return self._push(self.items.readings, reading, self._reading_cost(reading))

    def add_event(self, event: Event) -> bool:
        # (events are rare: no fast path) what of an event is stored must encode
        if not encodable(
            event.device_id, event.event, event.action, *(k for k, _ in event.properties)
        ):
            self._counters.dropped_invalid += 1
            return False
        return self._push(self.items.events, event, self._event_cost(event))

    def _push(self, into: list[_T], item: _T, cost: int) -> bool:
        """Queue ``item`` at the end of ``into`` (a list of :attr:`items`) unless dropped."""
        if not self._admit(item, cost):
            return False
        into.append(item)
        self.items.bytes += cost
        self.items.seen[item.device_id] = item.stamp.wall
        return True

    def update_device(self, update: DeviceUpdate, seen: float | None) -> bool:
        if self.closed:
            raise StoreError("store is closed")
        if not encodable(
            update.id,
            update.model,
            update.name,
            update.manufacturer,
            *(update.attrs or {}).keys(),
            *(update.attrs or {}).values(),
        ):
            self._counters.dropped_invalid += 1
            return False
        known = self.items.devices
        prev = known.get(update.id)
        known[update.id] = update if prev is None else devices.merge(prev, update)
        if seen is not None:
            self.items.seen[update.id] = seen
        return True

    def take(self, max_rows: int) -> Batch:
        """The oldest ``max_rows`` items (events first: they are rare and urgent), with
        every device update and last-seen time."""
        p = self.items
        if len(p) <= max_rows:
            self.items = Batch()
            return p
        batch = Batch()
        n_events = min(len(p.events), max_rows)
        batch.events, p.events = p.events[:n_events], p.events[n_events:]
        n_readings = max_rows - n_events
        batch.readings, p.readings = p.readings[:n_readings], p.readings[n_readings:]
        batch.devices, p.devices = p.devices, {}
        batch.seen, p.seen = p.seen, {}
        batch.bytes = sum(map(self._reading_cost, batch.readings)) + sum(
            map(self._event_cost, batch.events)
        )
        p.bytes -= batch.bytes
        return batch

    def requeue(self, batch: Batch) -> None:
        """Put a batch that did not commit back in front of the queue."""
        p = self.items
        p.readings[:0] = batch.readings
        p.events[:0] = batch.events
        p.bytes += batch.bytes
        for key, upd in batch.devices.items():
            p.devices[key] = upd if key not in p.devices else devices.merge(upd, p.devices[key])
        for key, seen in batch.seen.items():
            p.seen[key] = max(seen, p.seen.get(key, seen))

    def give_up(self) -> None:
        self.items = Batch()
