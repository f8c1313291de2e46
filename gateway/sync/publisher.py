"""Home Assistant state publisher: discovery, retained state, availability and events.

Runs inside the connection session that carries Home Assistant (the upstream one, or a
separate broker). The entity and payload definitions are :mod:`gateway.sync.ha`; this keeps
the latest value per device (:meth:`HaPublisher.note`, from the store's commit listener) and
publishes what changed every ``ha_tick_s``, availability every ``ha_availability_s``, and
everything again when Home Assistant comes online (:meth:`HaPublisher.republish`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from drivers.aio import wait_event
from gateway.config import HomeAssistantSection
from gateway.model import Event, Reading, Value
from gateway.sync import ha
from gateway.sync.deps import SyncDeps
from gateway.sync.mqtt import Link

#: Events kept for Home Assistant between two ticks (more are dropped, never queued).
MAX_PENDING_EVENTS = 1000


@dataclass(slots=True)
class _HaCache:
    """Latest state per device for the retained Home Assistant state topics."""

    values: dict[str, dict[str, Value]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    announced: dict[str, set[str]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    #: Event entities announced per device (re-announced with new action types).
    event_entities: ha.EventCatalog = field(default_factory=ha.EventCatalog)
    availability: dict[str, bytes] = field(default_factory=dict)


class HaPublisher:
    def __init__(self, deps: SyncDeps, cfg: HomeAssistantSection) -> None:
        self._deps = deps
        self._cfg = cfg
        self._topics = deps.topics
        self._store = deps.store
        self._cache = _HaCache()
        self._wake = asyncio.Event()
        self._republish = asyncio.Event()

    def note(self, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        """From the store's commit listener (cheap, never raises)."""
        cache = self._cache
        for r in readings:
            cache.values.setdefault(r.device_id, {})[r.metric] = r.value
            cache.dirty.add(r.device_id)
        for e in events:
            if len(cache.events) < MAX_PENDING_EVENTS:
                cache.events.append(e)
        if readings or events:
            self._wake.set()

    def republish(self) -> None:
        """Home Assistant came online: discovery, state and availability again."""
        self._republish.set()
        self._wake.set()

    async def run(self, link: Link) -> None:
        """Until the connection ends: everything once, then changes as they come."""
        await self._publish_all(link)
        # a first refresh soon after connecting picks up devices registered meanwhile
        timing = self._deps.timing
        last_avail = time.monotonic() - timing.ha_availability_s + timing.ha_first_refresh_s
        while True:
            await wait_event(self._wake, timing.ha_tick_s)
            self._wake.clear()
            if self._republish.is_set():
                self._republish.clear()
                await self._publish_all(link)
                continue
            await self._publish_changes(link)
            if time.monotonic() - last_avail >= timing.ha_availability_s:
                last_avail = time.monotonic()
                await self._availability(link)

    async def _publish_all(self, link: Link) -> None:
        t = self._topics
        cache = self._cache
        gw = ha.gateway_entity(t)
        await link.publish(gw.topic, gw.payload(), qos=1, retain=True)
        cache.announced.clear()
        cache.event_entities.forget()
        for dev in await self._store.devices():
            stored = await self._store.state(dev.id)
            values = {m: v[0] for m, v in stored.items()}
            values.update(cache.values.get(dev.id, {}))
            cache.values[dev.id] = values
            await self._announce(link, dev.id, set(values))
            avail = ha.availability_payload(dev.status)
            cache.availability[dev.id] = avail
            await link.publish(t.availability(dev.id), avail, qos=1, retain=True)
            if values:
                await link.publish(t.state(dev.id), ha.state_payload(values), qos=1, retain=True)
        cache.dirty.clear()

    async def _announce(
        self, link: Link, device_id: str, metrics: set[str], event: Event | None = None
    ) -> int | None:
        """Announce what is new of a device: how many entities; None when it is no device
        (an automation's events have no entity to go to)."""
        cache = self._cache
        known = cache.announced.get(device_id)
        new = metrics - (known or set())
        if not new and event is None and known is not None:
            return 0
        dev = await self._store.device(device_id)
        if dev is None:
            return None
        entities = ha.device_entities(
            self._topics,
            dev,
            new,
            commandable=self._deps.router.owns(device_id),
            values=cache.values.get(device_id),
            min_version=self._cfg.min_version,
        )
        entities += cache.event_entities.device(self._topics, dev)
        if event is not None:
            entities += cache.event_entities.event(
                self._topics, dev, event.event, event.action, event.button
            )
        for ent in entities:
            await link.publish(ent.topic, ent.payload(), qos=1, retain=True)
            self._deps.counters.discovery_published += 1
        if not entities and known is not None:
            return 0
        seen = cache.announced.setdefault(device_id, set())
        seen |= new
        if device_id not in cache.availability:
            cache.availability[device_id] = b"online"
            await link.publish(self._topics.availability(device_id), b"online", qos=1, retain=True)
        return len(entities)

    async def _publish_changes(self, link: Link) -> None:
        cache = self._cache
        t = self._topics
        events, cache.events = cache.events, []
        announced = [(ev, await self._announce(link, ev.device_id, set(), ev)) for ev in events]
        if any(n for _, n in announced):
            # Home Assistant subscribes to a new entity's topic a moment after its discovery:
            # an event published at once would be lost.
            await asyncio.sleep(ha.NEW_ENTITY_SETTLE_S)
        for ev, n in announced:
            if n is not None:
                topic, payload = ha.event_message(t, ev)
                await link.publish(topic, payload, qos=1)
        dirty, cache.dirty = cache.dirty, set()
        for device_id in sorted(dirty):
            values = cache.values.get(device_id, {})
            await self._announce(link, device_id, set(values))
            await link.publish(t.state(device_id), ha.state_payload(values), qos=1, retain=True)

    async def _availability(self, link: Link) -> None:
        """Availability changes, and discovery of devices not announced yet (a button that
        has sent nothing since the start)."""
        cache = self._cache
        for dev in await self._store.devices():
            if dev.id not in cache.announced:
                stored = await self._store.state(dev.id)
                values = cache.values.setdefault(dev.id, {})
                for metric, v in stored.items():
                    values.setdefault(metric, v[0])
                await self._announce(link, dev.id, set(values))
            avail = ha.availability_payload(dev.status)
            if cache.availability.get(dev.id) != avail:
                cache.availability[dev.id] = avail
                await link.publish(self._topics.availability(dev.id), avail, qos=1, retain=True)
