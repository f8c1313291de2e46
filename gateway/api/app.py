"""The aiohttp application of the LAN API (routes, auth, limits). See docs/api.md."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.api import events as events_mod
from gateway.api import prom
from gateway.api import web as web_ui
from gateway.api.errors import SERVER, ApiError, Handler, error_middleware, json_response
from gateway.api.events import EventFilter, EventHub, Subscriber
from gateway.api.serialize import (
    DEFAULT_STALE_S,
    device_detail_json,
    device_json,
    is_stale,
    keyed_devices,
    outbox_json,
)
from gateway.api.timing import ApiTiming
from gateway.api.token import TokenChecker
from gateway.commands import CommandParseError, parse_command
from gateway.driver import ZigbeeAdmin
from gateway.model import CommandStatus, DeviceStatus, Transport

if TYPE_CHECKING:
    from gateway.service import Service

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

PREFIX = "/api/v1"
#: Paths answered without a token.
PUBLIC_PATHS = frozenset({f"{PREFIX}/health"})
MAX_DEVICE_ID_LEN = 128
MAX_HISTORY_LIMIT = 10_000
PERMIT_JOIN_DEFAULT_S = 60
PERMIT_JOIN_MAX_S = 254

SERVICE: web.AppKey[Service] = web.AppKey("service")
TIMING = web.AppKey("timing", ApiTiming)
HUB = web.AppKey("hub", EventHub)
CHECKER = web.AppKey("checker", TokenChecker)
MAX_BODY = web.AppKey("max_body", int)
COUNTERS: web.AppKey[Counter[str]] = web.AppKey("counters")
COLLECTOR = web.AppKey("collector", prom.ServiceCollector)
REGISTRY: web.AppKey[Any] = web.AppKey("registry")
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets")


def version() -> str:
    try:
        return importlib.metadata.version("mi-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------ middlewares


@web.middleware
async def count_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    request.app[COUNTERS][f"{response.status // 100}xx"] += 1
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or web_ui.is_public(request.path):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if not header and (offered := web_ui.ws_token(request)) is not None:
        scheme, presented = "bearer", offered  # a browser's WebSocket (see gateway.api.web)
    if scheme.lower() != "bearer" or not request.app[CHECKER].check(presented.strip()):
        request.app[COUNTERS]["auth_failures"] += 1
        raise ApiError(
            401,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>; "
            "see `migw token` on the gateway)",
            headers={"WWW-Authenticate": 'Bearer realm="migw"'},
        )
    return await handler(request)


# ------------------------------------------------------------------------------ helpers


def _service(request: web.Request) -> Service:
    return request.app[SERVICE]


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    """The request body as JSON: 413 when too large, 408 when too slow, 400 when malformed."""
    limit = request.app[MAX_BODY]
    body_timeout = request.app[TIMING].body_timeout_s
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body larger than {limit} bytes")
    try:
        async with asyncio.timeout(body_timeout):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"request body not received in {body_timeout:g} s",
            close=True,
        ) from None
    if not raw.strip():
        if optional:
            return None
        raise ApiError(400, "malformed_json", "a JSON body is required")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None


def _device_id(request: web.Request) -> str:
    device_id = request.match_info["device_id"]
    if not device_id or len(device_id) > MAX_DEVICE_ID_LEN or not device_id.isprintable():
        raise ApiError(404, "unknown_device", "no such device")
    return device_id


def _query_list(request: web.Request, name: str) -> list[str]:
    values: list[str] = []
    for raw in request.query.getall(name, []):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values


def _query_enum(request: web.Request, name: str, allowed: set[str]) -> set[str]:
    values = set(_query_list(request, name))
    bad = values - allowed
    if bad:
        raise ApiError(
            400,
            "invalid_query",
            f"{name}: unknown value(s) {', '.join(sorted(bad))}; use {', '.join(sorted(allowed))}",
        )
    return values


def _query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in ("1", "true", "yes", ""):
        return True
    if value in ("0", "false", "no"):
        return False
    raise ApiError(400, "invalid_query", f"{name} must be true or false")


def _query_number(
    request: web.Request, name: str, *, lo: float, hi: float, default: float | None = None
) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name} must be a number") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ApiError(400, "invalid_query", f"{name} must be between {lo:g} and {hi:g}")
    return value


def parse_time(raw: str, name: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC when it has no offset)."""
    try:
        value = float(raw)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            raise ApiError(
                400, "invalid_query", f"{name} must be Unix seconds or an ISO 8601 time"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp()
    if not math.isfinite(value):
        raise ApiError(400, "invalid_query", f"{name} must be finite")
    return value


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
    store = service.store
    if store is None:
        raise ApiError(409, "store_closed", "the state database is closed")
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


# ------------------------------------------------------------------------------ handlers


async def health(request: web.Request) -> web.Response:
    return json_response(health_json(_service(request)))


async def status(request: web.Request) -> web.Response:
    svc = _service(request)
    store = svc.store
    if store is None:
        raise ApiError(409, "store_closed", "the state database is closed")
    outbox = await outbox_figures(svc)
    devices = await store.devices()
    now = time.time()
    by_status = Counter(d.status.value for d in devices)
    try:
        disk = await asyncio.to_thread(shutil.disk_usage, svc.state_dir)
        disk_json: dict[str, Any] = {
            "path": str(svc.state_dir),
            "free_bytes": disk.free,
            "total_bytes": disk.total,
        }
    except OSError as exc:
        disk_json = {"path": str(svc.state_dir), "error": exc.strerror or str(exc)}
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
            "disk": disk_json,
            "store": {
                "last_seq": store.last_seq,
                "pending": store.pending(),
                "commits": store.counters.commits,
                "last_commit": store.last_commit_wall,
                "last_error": store.last_error,
            },
            "devices": {
                "total": len(devices),
                "stale": sum(is_stale(d, now) for d in devices),
                "by_status": dict(sorted(by_status.items())),
            },
        }
    )


async def devices(request: web.Request) -> web.Response:
    svc = _service(request)
    transports = _query_enum(request, "transport", {t.value for t in Transport})
    statuses = _query_enum(request, "status", {s.value for s in DeviceStatus})
    models = set(_query_list(request, "model"))
    stale = _query_bool(request, "stale")
    stale_s = _query_number(request, "stale_after", lo=1, hi=1e9, default=DEFAULT_STALE_S)
    assert stale_s is not None
    store = svc.store
    if store is None:
        raise ApiError(409, "store_closed", "the state database is closed")
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


async def device(request: web.Request) -> web.Response:
    svc = _service(request)
    device_id = _device_id(request)
    store = svc.store
    if store is None:
        raise ApiError(409, "store_closed", "the state database is closed")
    dev = await store.device(device_id)
    if dev is None:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    state = await store.state(device_id)
    return json_response(device_detail_json(dev, state, keyed=keyed_devices(svc.config.ble)))


async def history(request: web.Request) -> web.Response:
    svc = _service(request)
    device_id = _device_id(request)
    metric = request.query.get("metric") or None
    since_raw = request.query.get("since")
    until_raw = request.query.get("until")
    since = parse_time(since_raw, "since") if since_raw else None
    until = parse_time(until_raw, "until") if until_raw else None
    limit = _query_number(request, "limit", lo=1, hi=MAX_HISTORY_LIMIT, default=1000)
    assert limit is not None
    store = svc.store
    if store is None:
        raise ApiError(409, "store_closed", "the state database is closed")
    if await store.device(device_id) is None:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    rows = await store.history(device_id, metric, since, until, int(limit))
    return json_response(
        {
            "device": device_id,
            "metric": metric,
            "since": since,
            "until": until,
            "readings": [
                {"seq": seq, "metric": m, "value": value, "ts": ts} for seq, m, value, ts in rows
            ],
            "truncated": len(rows) >= int(limit),
        }
    )


async def radios(request: web.Request) -> web.Response:
    return json_response({"radios": radios_json(_service(request))})


async def outbox(request: web.Request) -> web.Response:
    return json_response(await outbox_figures(_service(request)))


_COMMAND_ERRORS: dict[CommandStatus, tuple[int, str]] = {
    CommandStatus.UNKNOWN_DEVICE: (404, "unknown_device"),
    CommandStatus.UNSUPPORTED: (422, "unsupported_command"),
    CommandStatus.INVALID: (422, "invalid_command"),
    CommandStatus.UNREACHABLE: (409, "device_unreachable"),
    CommandStatus.TIMEOUT: (504, "device_timeout"),
    CommandStatus.ERROR: (502, "driver_error"),
}


async def command(request: web.Request) -> web.Response:
    svc = _service(request)
    device_id = _device_id(request)
    body = await read_json(request)
    try:
        cmd = parse_command(body)
    except CommandParseError as exc:
        raise ApiError(422, "invalid_command", str(exc)) from None
    result = await svc.command(device_id, cmd)
    if not result.ok:
        status_, code = _COMMAND_ERRORS.get(result.status, (502, "driver_error"))
        raise ApiError(status_, code, result.detail or result.status.value)
    return json_response(
        {"device": device_id, "command": cmd.action, "status": "ok", "state": result.state}
    )


def _zigbee(svc: Service) -> ZigbeeAdmin:
    admin = svc.zigbee
    if admin is None:
        raise ApiError(
            409, "zigbee_unavailable", "no Zigbee coordinator in this service (zigbee disabled)"
        )
    return admin


async def _ask_coordinator(what: str, call: Awaitable[_T], limit_s: float) -> _T:
    """``call`` on the Zigbee coordinator, its failures as API answers: 504 when it does not
    answer within ``limit_s``, 409 (not ready) for any driver failure."""
    try:
        async with asyncio.timeout(limit_s):
            return await call
    except TimeoutError:
        raise ApiError(
            504, "zigbee_timeout", f"the coordinator did not answer in {limit_s:g} s"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any driver failure is a "not ready" answer
        _LOGGER.warning("%s failed: %s", what, exc)
        raise ApiError(409, "zigbee_not_ready", str(exc)[:200] or type(exc).__name__) from None


async def permit_join(request: web.Request) -> web.Response:
    svc = _service(request)
    body = await read_json(request, optional=True)
    seconds: Any = PERMIT_JOIN_DEFAULT_S
    if body is not None:
        if not isinstance(body, dict) or set(body) - {"seconds"}:
            raise ApiError(422, "invalid_body", 'expected {"seconds": 0-254}')
        seconds = body.get("seconds", PERMIT_JOIN_DEFAULT_S)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not 0 <= seconds <= PERMIT_JOIN_MAX_S
    ):
        raise ApiError(422, "invalid_body", f"seconds must be an integer 0-{PERMIT_JOIN_MAX_S}")
    admin = _zigbee(svc)
    timeout = request.app[TIMING].permit_join_timeout_s
    await _ask_coordinator("permit join", admin.permit_join(seconds), timeout)
    return json_response({"status": "ok", "seconds": seconds})


async def zigbee_backup(request: web.Request) -> web.Response:
    """Back the Zigbee network up into the state dir (mode 0600). The network key stays on
    the gateway: the answer names the file and summarises it, never the key."""
    svc = _service(request)
    await read_json(request, optional=True)
    admin = _zigbee(svc)
    timeout = request.app[TIMING].backup_timeout_s
    doc = await _ask_coordinator("zigbee backup", admin.backup(), timeout)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = svc.state_dir / f"zigbee_backup-{stamp}.json"
    try:
        await asyncio.to_thread(admin.write_backup, path, doc)
    except OSError as exc:
        raise ApiError(
            507, "backup_write_failed", f"cannot write {path}: {exc.strerror or exc}"
        ) from None
    summary = doc if isinstance(doc, dict) else {}
    devices = summary.get("devices")
    return json_response(
        {
            "status": "ok",
            "path": str(path),
            "pan_id": summary.get("pan_id"),
            "extended_pan_id": summary.get("extended_pan_id"),
            "channel": summary.get("channel"),
            "devices": len(devices) if isinstance(devices, list) else None,
        }
    )


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    flt = EventFilter(
        devices=frozenset(_query_list(request, "device")),
        metrics=frozenset(_query_list(request, "metric")),
        kinds=frozenset(_query_enum(request, "type", set(events_mod.KINDS)) or events_mod.KINDS),
    )
    if len(hub.clients) >= events_mod.MAX_CLIENTS:
        raise ApiError(429, "too_many_clients", "too many event stream clients")
    timing = request.app[TIMING]
    ws = web.WebSocketResponse(
        heartbeat=timing.ws_heartbeat_s, max_msg_size=4096, protocols=(web_ui.WS_PROTOCOL,)
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "websocket_required", "this endpoint needs a WebSocket upgrade")
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    sub = hub.add(flt)
    sender = asyncio.create_task(_pump(ws, sub, timing.ws_send_timeout_s), name="api-ws-sender")
    try:
        hello = {"type": "hello", "filter": flt.to_json(), **health_json(_service(request))}
        sub.offer(json.dumps(hello))
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
            # clients have nothing to say; anything they send is ignored
    finally:
        hub.remove(sub)
        sockets.discard(ws)
        sender.cancel()
        await asyncio.wait([sender])
    return ws


async def _pump(ws: web.WebSocketResponse, sub: Subscriber, send_timeout: float) -> None:
    """Send a client's queued messages; drop the client when it is too slow."""
    try:
        while not sub.too_slow.is_set():
            text = await sub.queue.get()
            async with asyncio.timeout(send_timeout):
                await ws.send_str(text)
    except TimeoutError:
        pass
    except ConnectionError:
        return
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(send_timeout):
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow")


async def metrics(request: web.Request) -> web.Response:
    svc = _service(request)
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
    return web.Response(body=body, headers={"Content-Type": prom.CONTENT_TYPE})


async def _close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"service stopping")


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """No software versions in headers (the health endpoint says what a client needs).

    A request the connection guard cannot follow to its end (a chunked body, an upgrade
    that was not accepted) closes its connection after the answer, so that no later
    request head on it goes untimed (see :mod:`gateway.api.guard`).
    """
    response.headers["Server"] = SERVER
    untracked = "Transfer-Encoding" in request.headers or "Upgrade" in request.headers
    if untracked and response.status != 101:
        response.force_close()


# ------------------------------------------------------------------------------ factory


def build_app(
    service: Service, hub: EventHub, checker: TokenChecker, timing: ApiTiming | None = None
) -> web.Application:
    max_body = service.config.api.max_body_bytes
    app = web.Application(
        middlewares=[count_middleware, error_middleware, auth_middleware],
        client_max_size=max_body,
    )
    app[SERVICE] = service
    app[TIMING] = timing or ApiTiming()
    app[HUB] = hub
    app[CHECKER] = checker
    app[MAX_BODY] = max_body
    counters: Counter[str] = Counter()
    app[COUNTERS] = counters
    registry, collector = prom.make_registry(service, hub, counters)
    app[REGISTRY] = registry
    app[COLLECTOR] = collector
    sockets: set[web.WebSocketResponse] = set()
    app[SOCKETS] = sockets
    app.on_shutdown.append(_close_sockets)
    app.on_response_prepare.append(_on_prepare)
    r = app.router
    r.add_get(f"{PREFIX}/health", health)
    r.add_get(f"{PREFIX}/status", status)
    r.add_get(f"{PREFIX}/devices", devices)
    r.add_get(f"{PREFIX}/devices/{{device_id}}", device)
    r.add_get(f"{PREFIX}/devices/{{device_id}}/history", history)
    r.add_post(f"{PREFIX}/devices/{{device_id}}/commands", command)
    r.add_get(f"{PREFIX}/radios", radios)
    r.add_get(f"{PREFIX}/outbox", outbox)
    r.add_post(f"{PREFIX}/zigbee/permit-join", permit_join)
    r.add_post(f"{PREFIX}/zigbee/backup", zigbee_backup)
    r.add_get(f"{PREFIX}/events", events)
    r.add_get("/metrics", metrics)
    from gateway.api import ble_keys, devices_admin  # their handlers use this module's helpers

    devices_admin.add_routes(app)
    web_ui.add_routes(app)
    ble_keys.add_routes(app)
    from gateway.automations import api as automations_api

    automations_api.add_routes(r, _service, read_json)
    return app
