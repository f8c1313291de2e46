"""The LAN API's reading endpoints: health, status, devices and their history, radios, the
outbox and ``/metrics`` (docs/api.md). Nothing here changes the service."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from gateway.api import http, prom
from gateway.api.errors import ApiError, json_response
from gateway.api.request import (
    COLLECTOR,
    REGISTRY,
    device_id_of,
    open_store,
    query_bool,
    query_enum,
    query_list,
    query_number,
    query_time,
    service_of,
)
from gateway.api.serialize import (
    DEFAULT_STALE_S,
    device_detail_json,
    device_json,
    devices_summary_json,
    disk_json,
    is_stale,
    keyed_devices,
    outbox_json,
)
from gateway.model import DeviceStatus, Transport

if TYPE_CHECKING:
    from gateway.service import Service

_LOGGER = logging.getLogger(__name__)

MAX_HISTORY_LIMIT = 10_000


@functools.cache
def version() -> str:
    """The installed package's version, read once (the code running does not change)."""
    import importlib.metadata  # ~0.7 MB: loaded when first asked, not with the API

    try:
        return importlib.metadata.version("mi-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def sync_stats(service: Service) -> dict[str, Any] | None:
    """The sync agent's figures when one runs."""
    agent = service.sync
    if agent is None:
        return None
    try:
        return dict(agent.stats())
    except Exception:
        _LOGGER.exception("sync stats failed")
        return None


async def outbox_figures(service: Service) -> dict[str, Any]:
    store = open_store(service)
    stats = await store.outbox_stats()
    oldest = await store.outbox_fetch(1)
    return outbox_json(stats, oldest[0] if oldest else None, await sync_stats(service))


def radios_json(service: Service) -> list[dict[str, Any]]:
    drivers = {d.name for d in service.drivers}
    return [
        {
            "name": r.name,
            "kind": "radio" if r.name in drivers else "component",
            "state": r.state,
            "health": r.health.value,
            "reason": r.reason,
            "restarts": r.restarts,
            "counters": dict(r.counters),
            "info": dict(r.info),
        }
        for r in service.radios()
    ]


def health_json(service: Service) -> dict[str, Any]:
    h = service.health()
    return {
        "status": h["status"],
        "reasons": list(h["reasons"]),
        "uptime_s": round(time.time() - service.started_wall, 3),
        "version": version(),
    }


async def health(request: http.Request) -> http.Response:
    return json_response(health_json(service_of(request)))


async def status(request: http.Request) -> http.Response:
    svc = service_of(request)
    store = open_store(svc)
    outbox = await outbox_figures(svc)
    devices = await store.devices()
    return json_response(
        {
            "service": {
                "state": "running",
                **health_json(svc),
                "started": svc.started_wall,
                "pid": os.getpid(),
                "gateway_id": svc.config.gateway.id,
                "demo": svc.demo is not None,
                "state_dir": str(svc.state_dir),
            },
            "radios": radios_json(svc),
            "upstream": outbox["upstream"],
            "outbox": outbox,
            "clock": {"synchronized": svc.clock.synchronized()},
            "disk": await asyncio.to_thread(disk_json, svc.state_dir),
            "store": {
                "last_seq": store.last_seq,
                "pending": store.pending(),
                "commits": store.counters.commits,
                "last_commit": store.last_commit_wall,
                "last_error": store.last_error,
            },
            "devices": {
                **devices_summary_json(devices, time.time()),
                **device_limit_json(svc),
            },
        }
    )


def device_limit_json(service: Service) -> dict[str, Any]:
    """The device limit, the devices ingest counts against it and the new ones it refused."""
    ingest = service.ingest
    if ingest is None:
        return {}
    return {
        "max": ingest.max_devices(),
        "admitted": ingest.devices,
        "refused": ingest.devices_refused,
    }


async def devices(request: http.Request) -> http.Response:
    svc = service_of(request)
    transports = query_enum(request, "transport", {t.value for t in Transport})
    statuses = query_enum(request, "status", {s.value for s in DeviceStatus})
    models = set(query_list(request, "model"))
    stale = query_bool(request, "stale")
    stale_s = query_number(request, "stale_after", lo=1, hi=1e9, default=DEFAULT_STALE_S)
    store = open_store(svc)
    now = time.time()
    out = []
    for d in await store.devices():
        if transports and d.transport.value not in transports:
            continue
        if statuses and d.status.value not in statuses:
            continue
        if models and d.model not in models:
            continue
        if stale is not None and is_stale(d, now, stale_s) != stale:
            continue
        out.append(device_json(d, now, keyed_devices(svc.config.ble)))
    return json_response({"devices": out, "count": len(out)})


async def device(request: http.Request) -> http.Response:
    svc = service_of(request)
    device_id = device_id_of(request)
    store = open_store(svc)
    dev = await store.device(device_id)
    if dev is None:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    state = await store.state(device_id)
    return json_response(device_detail_json(dev, state, keyed=keyed_devices(svc.config.ble)))


async def history(request: http.Request) -> http.Response:
    svc = service_of(request)
    device_id = device_id_of(request)
    metric = request.query.get("metric") or None
    since = query_time(request, "since")
    until = query_time(request, "until")
    limit = int(query_number(request, "limit", lo=1, hi=MAX_HISTORY_LIMIT, default=1000))
    store = open_store(svc)
    if await store.device(device_id) is None:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    rows = await store.history(device_id, metric, since, until, limit)
    return json_response(
        {
            "device": device_id,
            "metric": metric,
            "since": since,
            "until": until,
            "readings": [
                {"seq": seq, "metric": m, "value": value, "ts": ts} for seq, m, value, ts in rows
            ],
            "truncated": len(rows) >= limit,
        }
    )


async def radios(request: http.Request) -> http.Response:
    return json_response({"radios": radios_json(service_of(request))})


async def outbox(request: http.Request) -> http.Response:
    return json_response(await outbox_figures(service_of(request)))


async def metrics(request: http.Request) -> http.Response:
    svc = service_of(request)
    collector = request.app[COLLECTOR]
    snapshot = prom.Snapshot()
    if svc.store is not None:
        snapshot.outbox = await outbox_figures(svc)
        counts: Counter[tuple[str, str]] = Counter(
            (d.transport.value, d.status.value) for d in await svc.store.devices()
        )
        snapshot.devices = dict(counts)
    collector.snapshot = snapshot
    body = prom.render(request.app[REGISTRY])
    return http.Response(body=body, headers={"Content-Type": prom.CONTENT_TYPE})
