"""``/metrics``: Prometheus text exposition from live service state.

A private :class:`~prometheus_client.CollectorRegistry` per application (no global state, so
tests and several services in one process never collide). Collectors read the service at
scrape time; figures that need the database are gathered by the handler just before.

``prometheus_client`` (with the http.server, wsgiref, urllib and email modules it imports,
about 1 MB of a Pi's memory) is imported when ``/metrics`` is first served, not at start:
most gateways are never scraped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.driver import Health

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

    from gateway.api.events import EventHub
    from gateway.service import Service

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class Snapshot:
    """Figures read from the database by the handler (async) before a scrape."""

    outbox: dict[str, Any] = field(default_factory=dict)
    devices: dict[tuple[str, str], int] = field(default_factory=dict)


def _label(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


class ServiceCollector:
    """The service's figures as metric families (a ``prometheus_client`` collector)."""

    def __init__(self, service: Service, hub: EventHub, counters: Mapping[str, int]) -> None:
        self._service = service
        self._hub = hub
        self._api_counters = counters
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        svc = self._service
        health = svc.health()
        yield _gauge("migw_up", "1 while the service answers.", 1)
        yield _gauge(
            "migw_health_ok",
            "1 when the service is healthy, 0 when degraded.",
            1 if health["status"] == "ok" else 0,
        )
        yield _gauge(
            "migw_uptime_seconds",
            "Seconds since the service started.",
            time.time() - svc.started_wall,
        )

        readings = CounterMetricFamily(
            "migw_ingest_readings", "Readings accepted from drivers.", labels=["source"]
        )
        events = CounterMetricFamily(
            "migw_ingest_events", "Events (buttons) accepted from drivers.", labels=["source"]
        )
        dropped = CounterMetricFamily(
            "migw_ingest_dropped", "Readings dropped at ingest.", labels=["source", "reason"]
        )
        if svc.ingest is not None:
            for key, value in sorted(svc.ingest.counters.items()):
                source, _, what = key.partition(".")
                if what == "readings":
                    readings.add_metric([source], value)
                elif what == "events":
                    events.add_metric([source], value)
                elif what.startswith("dropped"):
                    reason = what.removeprefix("dropped").lstrip("_") or "backpressure"
                    dropped.add_metric([source, reason], value)
        yield readings
        yield events
        yield dropped
        if svc.ingest is not None:
            ing = svc.ingest
            yield _gauge("migw_devices", "Devices counted against the device limit.", ing.devices)
            yield _gauge(
                "migw_devices_max", "The device limit (gateway.max_devices).", ing.max_devices()
            )
            yield _counter(
                "migw_devices_refused",
                "New devices refused at the device limit.",
                ing.devices_refused,
            )

        store = svc.store
        if store is not None:
            c = store.counters
            yield _counter(
                "migw_store_commits", "Durable commits of the state database.", c.commits
            )
            yield _counter(
                "migw_store_rows_committed", "Readings and events committed.", c.rows_committed
            )
            yield _counter(
                "migw_store_commit_failures", "Failed commits (retried).", c.commit_failures
            )
            sd = CounterMetricFamily(
                "migw_store_dropped", "Items the store refused.", labels=["reason"]
            )
            sd.add_metric(["backpressure"], c.dropped_backpressure)
            sd.add_metric(["invalid"], c.dropped_invalid)
            yield sd
            yield _gauge(
                "migw_store_pending", "Items waiting for the next commit.", store.pending()
            )
            yield _gauge(
                "migw_store_last_seq", "Last gateway sequence number committed.", store.last_seq
            )

        ob = self.snapshot.outbox
        for key, name, help_ in (
            ("depth", "migw_outbox_depth", "Readings and events waiting for upstream."),
            ("bytes", "migw_outbox_bytes", "Approximate bytes waiting for upstream."),
            ("oldest_age_s", "migw_outbox_oldest_age_seconds", "Age of the oldest waiting item."),
        ):
            figure = ob.get(key)
            if isinstance(figure, int | float):
                yield _gauge(name, help_, figure)
        for key, name, help_ in (
            ("dropped", "migw_outbox_dropped", "Outbox items dropped (full)."),
            ("expired", "migw_outbox_expired", "Outbox items expired (TTL)."),
        ):
            figure = ob.get(key)
            if isinstance(figure, int | float):
                yield _counter(name, help_, figure)
        if ob.get("source") == "sync" and ob.get("upstream") != "disabled":
            up = 1 if str(ob.get("upstream", "")).lower() in ("connected", "online", "up") else 0
            yield _gauge("migw_upstream_connected", "1 while connected to the broker.", up)

        radio_up = GaugeMetricFamily(
            "migw_radio_up",
            "1 when a radio/component is healthy, 0 when degraded.",
            labels=["radio"],
        )
        restarts = CounterMetricFamily(
            "migw_radio_restarts",
            "Supervisor restarts (reconnects) of a radio/component.",
            labels=["radio"],
        )
        radio_values = GaugeMetricFamily(
            "migw_radio_value",
            "Driver/component figures that go up and down (outbox rows, clients ...).",
            labels=["radio", "name"],
        )
        radio_counters = CounterMetricFamily(
            "migw_radio_counter",
            "Driver counters: adverts, duplicates_dropped, "
            "decrypt_failures, bad_frames, reconnects ...",
            labels=["radio", "counter"],
        )
        for r in svc.radios():
            radio_up.add_metric([r.name], 0 if r.health is Health.DEGRADED else 1)
            restarts.add_metric([r.name], r.restarts)
            for cname, value in sorted(r.counters.items()):
                family = radio_values if _is_gauge(cname) else radio_counters
                family.add_metric([r.name, _label(cname)], value)
        yield radio_up
        yield restarts
        yield radio_counters
        yield radio_values

        devices = GaugeMetricFamily(
            "migw_devices", "Known devices.", labels=["transport", "status"]
        )
        for (transport, status), n in sorted(self.snapshot.devices.items()):
            devices.add_metric([transport, status], n)
        yield devices

        cmd = svc.commands.counters
        yield _counter(
            "migw_commands", "Commands received (API, MQTT, CLI).", cmd.get("commands", 0)
        )
        yield _counter(
            "migw_commands_failed", "Commands that did not succeed.", cmd.get("failed", 0)
        )
        yield _gauge(
            "migw_api_ws_clients", "Connected WebSocket event clients.", len(self._hub.clients)
        )
        yield _counter(
            "migw_api_ws_dropped", "Event messages dropped for slow clients.", self._hub.dropped
        )
        api = CounterMetricFamily(
            "migw_api_requests", "API requests by status class.", labels=["code"]
        )
        for code, n in sorted(self._api_counters.items()):
            if code.endswith("xx"):
                api.add_metric([code], n)
        yield api
        yield _counter(
            "migw_api_auth_failures",
            "API requests refused for a missing or wrong token.",
            self._api_counters.get("auth_failures", 0),
        )


#: Driver "counters" that are levels, not monotonic counts (exported as gauges).
_GAUGE_HINTS = ("clients", "depth", "pending", "outbox_rows", "outbox_bytes", "devices")


def _is_gauge(name: str) -> bool:
    return any(h in name for h in _GAUGE_HINTS)


def _gauge(name: str, help_: str, value: float) -> GaugeMetricFamily:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, help_, value=value)


def _counter(name: str, help_: str, value: float) -> CounterMetricFamily:
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name, help_, value=value)


class Registry:
    """The application's registry, made (and ``prometheus_client`` imported) at the first
    scrape."""

    def __init__(self, collector: ServiceCollector) -> None:
        self.collector = collector
        self._registry: CollectorRegistry | None = None

    def _made(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client import CollectorRegistry, ProcessCollector
            from prometheus_client.registry import Collector

            class _Adapter(Collector):
                def __init__(self, inner: ServiceCollector) -> None:
                    self._inner = inner

                def collect(self) -> Iterator[Metric]:
                    return self._inner.collect()

            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Adapter(self.collector))
            # process_resident_memory_bytes, cpu seconds, open fds (Linux /proc)
            ProcessCollector(registry=registry)
            self._registry = registry
        return self._registry

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self._made())


def make_registry(
    service: Service, hub: EventHub, counters: Mapping[str, int]
) -> tuple[Registry, ServiceCollector]:
    collector = ServiceCollector(service, hub, counters)
    return Registry(collector), collector


def render(registry: Registry) -> bytes:
    return registry.render()
