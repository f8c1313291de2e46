"""Ingest: the gateway's :class:`~gateway.driver.Sink`, stamping what drivers report."""

from __future__ import annotations

import logging
import math
from collections import Counter

from drivers.events import DeviceEvent
from gateway.clock import Clock
from gateway.devices import DeviceDirectory, merge_update
from gateway.metrics import MetricDef, metric_def
from gateway.model import DeviceUpdate, Event, Reading, Stamp, Value
from gateway.store import Store

_LOGGER = logging.getLogger(__name__)
#: Metric names whose definition a driver's sink keeps.
_DEFS_MAX = 1024


class Ingest:
    """Stamps readings (wall, monotonic, boot id, clock synced) and queues them in the store.

    With a :class:`~gateway.devices.DeviceDirectory`, only the devices it admits get in (a
    stranger's messages are noted there and counted as ``<driver>.not_added``), and device
    records carry the home owner's names and rooms.
    """

    def __init__(
        self, store: Store, clock: Clock, directory: DeviceDirectory | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self.directory = directory
        #: Per driver: readings, events, dropped (invalid values, backpressure), not_added.
        self.counters: Counter[str] = Counter()
        #: The latest full description of each device a driver reported, and which of them
        #: have their record in the store (a forgotten one is written again when it speaks).
        self._described: dict[str, DeviceUpdate] = {}
        self._recorded: set[str] = set()

    def admit(self, device_id: str) -> None:
        """A stranger was allowed in: write the record heard from it so far."""
        if self.directory is None:
            return
        update = self.directory.take_stranger(device_id)
        if update is not None:
            self._describe(update)

    def forgotten(self, device_id: str) -> None:
        """The device's record was deleted: write it again when the device speaks again."""
        self._recorded.discard(device_id)

    def _describe(self, update: DeviceUpdate) -> None:
        prev = self._described.get(update.id)
        full = update if prev is None else merge_update(prev, update)
        self._described[update.id] = full
        # a device without its record in the store (forgotten) gets all that is known of it
        out = update if update.id in self._recorded else full
        if self.directory is not None:
            out = self.directory.apply(out)
        self._recorded.add(update.id)
        if self.directory is not None:
            self.directory.members.add(update.id)
        self._store.update_device(out, seen=self._clock.wall())

    def _admits(self, device_id: str, source: str, update: DeviceUpdate | None = None) -> bool:
        directory = self.directory
        if directory is None or directory.admits(device_id):
            if device_id not in self._recorded and device_id in self._described and update is None:
                self._describe(self._described[device_id])
            return True
        directory.stranger(device_id, update)
        self.counters[f"{source}.not_added"] += 1
        return False

    def stamp(self) -> Stamp:
        c = self._clock
        return Stamp(c.wall(), c.mono(), c.boot_id, c.synchronized())  # (positional: per reading)

    def sink_for(self, source: str) -> DriverSink:
        return DriverSink(self, source)


class DriverSink:
    """The Sink one driver writes to; ``source`` names the driver in every reading."""

    def __init__(self, ingest: Ingest, source: str) -> None:
        self._ingest = ingest
        self._source = source
        # the counters' names, made once (not per reading)
        self._n_readings = f"{source}.readings"
        self._n_events = f"{source}.events"
        self._n_dropped = f"{source}.dropped"
        #: Metric name -> its definition, looked up once per name (not per reading).
        self._defs: dict[str, MetricDef | None] = {}

    def device(self, update: DeviceUpdate) -> None:
        if self._ingest._admits(update.id, self._source, update):
            self._ingest._describe(update)

    def reading(self, device_id: str, metric: str, value: Value) -> None:
        ing = self._ingest
        if not ing._admits(device_id, self._source):
            return
        defs = self._defs
        if metric in defs:
            m = defs[metric]
        else:
            m = metric_def(metric)
            if len(defs) < _DEFS_MAX:  # names come from the decoders' tables: few
                defs[metric] = m
        if not _valid(m, value):
            ing.counters[f"{self._source}.dropped_invalid"] += 1
            _LOGGER.debug("dropped invalid value %r for %s %s", value, device_id, metric)
            return
        unit = m.unit if m is not None else None
        reading = Reading(device_id, metric, value, unit, ing.stamp(), self._source)
        if ing._store.add_reading(reading):
            ing.counters[self._n_readings] += 1
        else:
            ing.counters[self._n_dropped] += 1

    def event(self, device_id: str, event: DeviceEvent) -> None:
        ing = self._ingest
        if not ing._admits(device_id, self._source):
            return
        ev = Event(
            device_id=device_id,
            event=event.event,
            action=event.action,
            button=event.button,
            stamp=ing.stamp(),
            source=self._source,
            properties=event.properties,
        )
        if ing._store.add_event(ev):
            ing.counters[self._n_events] += 1
        else:
            ing.counters[self._n_dropped] += 1


def _valid(m: MetricDef | None, value: Value) -> bool:
    """Whether ``value`` fits the metric ``m`` (its definition; None: any finite value)."""
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if m is None:
        return True
    if m.kind == "bool":
        return isinstance(value, bool)
    if m.kind == "text":
        return isinstance(value, str)
    return isinstance(value, int | float) and not isinstance(value, bool)
