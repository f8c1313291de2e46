"""Ingest: the gateway's :class:`~gateway.driver.Sink`, stamping what drivers report."""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable

from drivers.events import DeviceEvent
from gateway.clock import Clock
from gateway.devices import DeviceDirectory, merge_update
from gateway.metrics import MetricDef, metric_def
from gateway.model import DeviceUpdate, Event, Reading, Stamp, Value
from gateway.store import Store

_LOGGER = logging.getLogger(__name__)
#: Metric names whose definition a driver's sink keeps.
_DEFS_MAX = 1024
#: The device limit when none is given (``[gateway] max_devices``' default).
MAX_DEVICES = 2000
#: Refused device ids remembered (so one refused device heard again is counted once while
#: it is among the last this many refused; the least recently refused are forgotten first).
REFUSED_IDS_MAX = 1024
#: Health says the device limit was reached while a device was refused this recently.
REFUSED_REASON_S = 3600.0


class Ingest:
    """Stamps readings (wall, monotonic, boot id, clock synced) and queues them in the store.

    With a :class:`~gateway.devices.DeviceDirectory`, only the devices it admits get in (a
    stranger's messages are noted there and counted as ``<driver>.not_added``), and device
    records carry the home owner's names and rooms.

    At most ``max_devices()`` devices get in (``known``: those the database holds at start
    count): a new device past the limit is refused, its updates, readings and events dropped
    and counted (:attr:`devices_refused`, ``<driver>.dropped_device_limit``), so a flood of
    new ids (spoofed BLE addresses) cannot grow memory without bound. The limit is checked
    only for a device id not seen before; forgetting a device frees its place.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        directory: DeviceDirectory | None = None,
        *,
        max_devices: Callable[[], int] = lambda: MAX_DEVICES,
        known: Iterable[str] = (),
    ) -> None:
        self._store = store
        self._clock = clock
        self.directory = directory
        #: Per driver: readings, events, dropped (invalid values, backpressure, device
        #: limit), not_added.
        self.counters: Counter[str] = Counter()
        #: The latest full description of each device a driver reported, and which of them
        #: have their record in the store (a forgotten one is written again when it speaks).
        self._described: dict[str, DeviceUpdate] = {}
        self._recorded: set[str] = set()
        #: The devices let in (at most :attr:`max_devices`), ``_recorded`` among them.
        self._known: set[str] = set(known)
        self.max_devices = max_devices
        #: New devices refused at the limit (each counted once while among the last
        #: :data:`REFUSED_IDS_MAX` refused), and when the last was (monotonic).
        self.devices_refused = 0
        self._refused: OrderedDict[str, None] = OrderedDict()
        self._refused_mono: float | None = None
        #: Whether the limit's WARNING was logged since a device last got in.
        self._warned = False

    @property
    def devices(self) -> int:
        """The devices let in: those in the database at start, and new ones since."""
        return len(self._known)

    def problems(self) -> list[str]:
        """Why ingest is degraded (for health): new devices refused at the limit lately."""
        last = self._refused_mono
        if last is None or self._clock.mono() - last > REFUSED_REASON_S:
            return []
        reason = (
            f"device limit {self.max_devices():,} reached: {self.devices_refused:,} new"
            ' device(s) refused; raise gateway.max_devices or set [ble] join = "allowlisted"'
        )
        return [reason]

    def admit(self, device_id: str) -> None:
        """A stranger was allowed in: write the record heard from it so far."""
        if self.directory is None:
            return
        update = self.directory.take_stranger(device_id)
        if update is not None:
            self._describe(update)

    def forgotten(self, device_id: str) -> None:
        """The device's record was deleted: write it again when the device speaks again
        (if there is room then: its place is free)."""
        self._recorded.discard(device_id)
        self._known.discard(device_id)

    def _describe(self, update: DeviceUpdate) -> None:
        prev = self._described.get(update.id)
        full = update if prev is None else merge_update(prev, update)
        self._described[update.id] = full
        # a device without its record in the store (forgotten) gets all that is known of it
        out = update if update.id in self._recorded else full
        if self.directory is not None:
            out = self.directory.apply(out)
        self._recorded.add(update.id)
        self._known.add(update.id)  # (one an operator admitted gets in past the limit)
        if self.directory is not None:
            self.directory.members.add(update.id)
        self._store.update_device(out, seen=self._clock.wall())

    def _admits(self, device_id: str, source: str, update: DeviceUpdate | None = None) -> bool:
        directory = self.directory
        if directory is None or directory.admits(device_id):
            if device_id not in self._recorded:  # (per reading: a known device stops here)
                if device_id not in self._known and not self._enrol(device_id, source):
                    return False
                if device_id in self._described and update is None:
                    self._describe(self._described[device_id])
            return True
        directory.stranger(device_id, update)
        self.counters[f"{source}.not_added"] += 1
        return False

    def _enrol(self, device_id: str, source: str) -> bool:
        """A device not seen before: let in while there is room, else refuse and count it."""
        limit = self.max_devices()
        if len(self._known) < limit:
            self._known.add(device_id)
            self._warned = False
            return True
        self.counters[f"{source}.dropped_device_limit"] += 1
        self._refused_mono = self._clock.mono()
        refused = self._refused
        if device_id in refused:
            refused.move_to_end(device_id)
        else:
            refused[device_id] = None
            if len(refused) > REFUSED_IDS_MAX:
                refused.popitem(last=False)
            self.devices_refused += 1
        if not self._warned:
            self._warned = True
            _LOGGER.warning(
                "device limit %d reached: new device %s (%s) refused, its messages dropped"
                " (counted as devices_refused); raise gateway.max_devices or set"
                ' [ble] join = "allowlisted"',
                limit,
                device_id,
                source,
            )
        else:
            _LOGGER.debug("device limit %d reached: new device %s refused", limit, device_id)
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
