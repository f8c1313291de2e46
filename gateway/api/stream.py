"""``GET /api/v1/events``: the WebSocket endpoint of the :class:`~gateway.api.events.EventHub`.

Each client gets a ``hello`` with the service's health, then what its filter lets through;
a client too slow to take its messages is closed (``TRY_AGAIN_LATER``), never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from gateway.api import events as events_mod
from gateway.api import http
from gateway.api import web as web_ui
from gateway.api.errors import ApiError
from gateway.api.events import EventFilter, Subscriber
from gateway.api.request import HUB, SOCKETS, TIMING, query_enum, query_list, service_of
from gateway.api.views import health_json
from gateway.api.ws import WebSocketResponse, WSCloseCode

_LOGGER = logging.getLogger(__name__)


async def events(request: http.Request) -> http.StreamResponse:
    hub = request.app[HUB]
    flt = EventFilter(
        devices=frozenset(query_list(request, "device")),
        metrics=frozenset(query_list(request, "metric")),
        kinds=frozenset(query_enum(request, "type", set(events_mod.KINDS)) or events_mod.KINDS),
    )
    if len(hub.clients) >= events_mod.MAX_CLIENTS:
        raise ApiError(429, "too_many_clients", "too many event stream clients")
    timing = request.app[TIMING]
    ws = WebSocketResponse(
        heartbeat=timing.ws_heartbeat_s, max_msg_size=4096, protocols=(web_ui.WS_PROTOCOL,)
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "websocket_required", "this endpoint needs a WebSocket upgrade")
    try:
        await ws.prepare(request)
    except ConnectionError:  # the 101 could not be written: the client is gone, no one to answer
        _LOGGER.debug("an event stream client went away during the handshake")
        return ws
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    sub = hub.add(flt)
    sender = asyncio.create_task(_pump(ws, sub, timing.ws_send_timeout_s), name="api-ws-sender")
    try:
        hello = {"type": "hello", "filter": flt.to_json(), **health_json(service_of(request))}
        sub.offer(json.dumps(hello))
        async for _ in ws:
            pass  # clients have nothing to say; anything they send is ignored
    finally:
        hub.remove(sub)
        sockets.discard(ws)
        sender.cancel()
        await asyncio.wait([sender])
    return ws


async def _pump(ws: WebSocketResponse, sub: Subscriber, send_timeout: float) -> None:
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


async def close_sockets(app: http.Application) -> None:
    """At shutdown: every open event stream is closed (``GOING_AWAY``)."""
    sockets: set[WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"service stopping")
