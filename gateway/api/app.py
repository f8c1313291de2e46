"""The application of the LAN API (:mod:`gateway.api.http`): its middlewares (counting, JSON
errors, auth), the table of its routes and the factory. See docs/api.md.

The handlers live by what they do: :mod:`gateway.api.views` (reading), :mod:`gateway.api.control`
(commands, Zigbee), :mod:`gateway.api.devices_admin` (names, forget, allow),
:mod:`gateway.api.ble_keys`, :mod:`gateway.api.stream` (the WebSocket) and
:mod:`gateway.api.web` (the dashboard); :mod:`gateway.api.request` is what they read.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from gateway.api import ble_keys, control, devices_admin, http, prom, stream, views
from gateway.api import web as web_ui
from gateway.api.errors import SERVER, ApiError, Handler, error_middleware
from gateway.api.events import EventHub
from gateway.api.request import (
    CHECKER,
    COLLECTOR,
    COUNTERS,
    HUB,
    MAX_BODY,
    PREFIX,
    REGISTRY,
    SERVICE,
    SOCKETS,
    TIMING,
    read_json,
    service_of,
)
from gateway.api.timing import ApiTiming
from gateway.api.token import TokenChecker

if TYPE_CHECKING:
    from gateway.api.ws import WebSocketResponse
    from gateway.service import Service

#: Paths answered without a token.
PUBLIC_PATHS = frozenset({f"{PREFIX}/health"})

#: The routes under ``/api/v1`` (method, path, handler); the dashboard adds its own.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/health", views.health),
    ("GET", "/status", views.status),
    ("GET", "/devices", views.devices),
    ("GET", "/devices/{device_id}", views.device),
    ("GET", "/devices/{device_id}/history", views.history),
    ("POST", "/devices/{device_id}/commands", control.command),
    ("GET", "/radios", views.radios),
    ("GET", "/outbox", views.outbox),
    ("POST", "/zigbee/permit-join", control.permit_join),
    ("POST", "/zigbee/backup", control.zigbee_backup),
    ("GET", "/events", stream.events),
    ("GET", "/devices/{device_id}/events", devices_admin.device_events),
    ("POST", "/devices/{device_id}/name", devices_admin.name),
    ("DELETE", "/devices/{device_id}", devices_admin.forget),
    ("GET", "/ble/seen", devices_admin.seen),
    ("POST", "/ble/allow", devices_admin.allow),
    ("POST", "/ble/keys", ble_keys.add_key),
    ("GET", "/ble/keys", ble_keys.list_keys),
)


async def count_middleware(request: http.Request, handler: Handler) -> http.StreamResponse:
    response = await handler(request)
    request.app[COUNTERS][f"{response.status // 100}xx"] += 1
    return response


async def auth_middleware(request: http.Request, handler: Handler) -> http.StreamResponse:
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


async def _on_prepare(request: http.Request, response: http.StreamResponse) -> None:
    """No software versions in headers (the health endpoint says what a client needs).

    A request with a chunked body or an upgrade that was not accepted closes its connection
    after the answer (docs/api.md, "Slow and hostile clients").
    """
    response.headers["Server"] = SERVER
    untracked = "Transfer-Encoding" in request.headers or "Upgrade" in request.headers
    if untracked and response.status != 101:
        response.force_close()


def build_app(
    service: Service, hub: EventHub, checker: TokenChecker, timing: ApiTiming | None = None
) -> http.Application:
    max_body = service.config.api.max_body_bytes
    app = http.Application(
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
    sockets: set[WebSocketResponse] = set()
    app[SOCKETS] = sockets
    app.on_shutdown.append(stream.close_sockets)
    app.on_response_prepare.append(_on_prepare)
    r = app.router
    add = {"GET": r.add_get, "POST": r.add_post, "DELETE": r.add_delete}  # GET answers HEAD
    for method, path, handler in ROUTES:
        add[method](PREFIX + path, handler)
    r.add_get("/metrics", views.metrics)
    devices_admin.setup(app)
    web_ui.add_routes(app)
    from gateway.automations import api as automations_api

    automations_api.add_routes(r, service_of, read_json)
    return app
