"""Ingest: the gateway's :class:`~gateway.driver.Sink`, stamping what drivers report."""

from __future__ import annotations

import logging
import math
from collections import Counter

from gateway.clock import Clock
from gateway.metrics import metric_def, unit_of
from gateway.model import DeviceUpdate, Event, Reading, Stamp, Value
from gateway.store import Store

_LOGGER = logging.getLogger(__name__)


class Ingest:
    """Stamps readings (wall, monotonic, boot id, clock synced) and queues them in the store."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        #: Per driver: readings, events, dropped (invalid values, backpressure).
        self.counters: Counter[str] = Counter()

    def stamp(self) -> Stamp:
        c = self._clock
        return Stamp(wall=c.wall(), mono=c.mono(), boot=c.boot_id, synced=c.synchronized())

    def sink_for(self, source: str) -> DriverSink:
        return DriverSink(self, source)


class DriverSink:
    """The Sink one driver writes to; ``source`` names the driver in every reading."""

    def __init__(self, ingest: Ingest, source: str) -> None:
        self._ingest = ingest
        self._source = source

    def device(self, update: DeviceUpdate) -> None:
        self._ingest._store.update_device(update, seen=self._ingest._clock.wall())

    def reading(self, device_id: str, metric: str, value: Value) -> None:
        ing = self._ingest
        if not _valid(metric, value):
            ing.counters[f"{self._source}.dropped_invalid"] += 1
            _LOGGER.debug("dropped invalid value %r for %s %s", value, device_id, metric)
            return
        reading = Reading(
            device_id=device_id,
            metric=metric,
            value=value,
            unit=unit_of(metric),
            stamp=ing.stamp(),
            source=self._source,
        )
        if ing._store.add_reading(reading):
            ing.counters[f"{self._source}.readings"] += 1
        else:
            ing.counters[f"{self._source}.dropped"] += 1

    def event(
        self,
        device_id: str,
        event: str,
        action: str,
        button: int | None = None,
        properties: tuple[tuple[str, int], ...] = (),
    ) -> None:
        ing = self._ingest
        ev = Event(
            device_id=device_id,
            event=event,
            action=action,
            button=button,
            stamp=ing.stamp(),
            source=self._source,
            properties=properties,
        )
        if ing._store.add_event(ev):
            ing.counters[f"{self._source}.events"] += 1
        else:
            ing.counters[f"{self._source}.dropped"] += 1


def _valid(metric: str, value: Value) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    m = metric_def(metric)
    if m is None:
        return True
    if m.kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)
