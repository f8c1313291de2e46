"""What every handler of the LAN API reads from its request: the application's keys (the
service, timing, hub ...), the JSON body within its limits, the device id of the path and
the query parameters, each refused with a JSON error (:class:`~gateway.api.errors.ApiError`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from gateway.api import http, prom
from gateway.api.errors import ApiError
from gateway.api.events import EventHub
from gateway.api.timing import ApiTiming
from gateway.api.token import TokenChecker

if TYPE_CHECKING:
    from gateway.api.ws import WebSocketResponse
    from gateway.service import Service
    from gateway.store import Store

PREFIX = "/api/v1"
MAX_DEVICE_ID_LEN = 128

SERVICE: http.AppKey[Service] = http.AppKey("service")
TIMING = http.AppKey("timing", ApiTiming)
HUB = http.AppKey("hub", EventHub)
CHECKER = http.AppKey("checker", TokenChecker)
MAX_BODY = http.AppKey("max_body", int)
COUNTERS: http.AppKey[Counter[str]] = http.AppKey("counters")
COLLECTOR = http.AppKey("collector", prom.ServiceCollector)
REGISTRY: http.AppKey[Any] = http.AppKey("registry")
SOCKETS: http.AppKey[set[WebSocketResponse]] = http.AppKey("sockets")


def service_of(request: http.Request) -> Service:
    return request.app[SERVICE]


def open_store(service: Service) -> Store:
    """The service's store; 409 while it is closed (the service is stopping)."""
    store = service.store
    if store is None:
        raise ApiError(409, "store_closed", "the state database is closed")
    return store


async def read_json(request: http.Request, *, optional: bool = False) -> Any:
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


def device_id_of(request: http.Request) -> str:
    device_id = request.match_info["device_id"]
    if not device_id or len(device_id) > MAX_DEVICE_ID_LEN or not device_id.isprintable():
        raise ApiError(404, "unknown_device", "no such device")
    return device_id


def query_list(request: http.Request, name: str) -> list[str]:
    values: list[str] = []
    for raw in request.query.getall(name, []):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values


def query_enum(request: http.Request, name: str, allowed: set[str]) -> set[str]:
    values = set(query_list(request, name))
    bad = values - allowed
    if bad:
        raise ApiError(
            400,
            "invalid_query",
            f"{name}: unknown value(s) {', '.join(sorted(bad))}; use {', '.join(sorted(allowed))}",
        )
    return values


def query_bool(request: http.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in ("1", "true", "yes", ""):
        return True
    if value in ("0", "false", "no"):
        return False
    raise ApiError(400, "invalid_query", f"{name} must be true or false")


def query_number(
    request: http.Request, name: str, *, lo: float, hi: float, default: float
) -> float:
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


def query_time(request: http.Request, name: str) -> float | None:
    raw = request.query.get(name)
    return parse_time(raw, name) if raw else None


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
