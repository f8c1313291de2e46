"""API routes that change which devices the gateway keeps and what they are called
(``migw name``, ``migw forget``, ``migw devices --seen``, ``migw allow``). See docs/api.md."""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gateway.api import http
from gateway.api.errors import ApiError, json_response
from gateway.api.request import SERVICE, device_id_of, read_json
from gateway.api.serialize import device_json, keyed_devices, stored_event_json
from gateway.config import ble_device_id
from gateway.errors import ConfigError, StoreError
from gateway.model import DeviceUpdate, Transport

if TYPE_CHECKING:
    from gateway.devices import DeviceDirectory
    from gateway.ingest import Ingest
    from gateway.service import Service
    from gateway.store import Commit, Store


def _parts(request: http.Request) -> tuple[Service, Store, Ingest, DeviceDirectory]:
    svc = request.app[SERVICE]
    store, ingest = svc.store, svc.ingest
    if store is None or ingest is None or ingest.directory is None:
        raise ApiError(409, "store_closed", "the state database is closed")
    return svc, store, ingest, ingest.directory


async def _body(request: http.Request) -> dict[str, Any]:
    body = await read_json(request, optional=True)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "expected a JSON object")
    return body


async def name(request: http.Request) -> http.Response:
    """``{"name": "Kitchen", "room": "kitchen"}``: name a device (a BLE stranger joins)."""
    svc, store, ingest, directory = _parts(request)
    device_id = device_id_of(request)
    body = await _body(request)
    new_name, room = body.get("name"), body.get("room")
    if set(body) - {"name", "room"} or not isinstance(new_name, str):
        raise ApiError(422, "invalid_body", 'expected {"name": "...", "room": "..."}')
    if room is not None and not isinstance(room, str):
        raise ApiError(422, "invalid_body", "room must be a string")
    dev = await store.device(device_id)
    if dev is None and ble_device_id(device_id) != device_id:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    try:
        entry = directory.set_name(device_id, new_name.strip(), room)
    except ConfigError as exc:
        raise ApiError(422, "invalid_body", str(exc).split(": ", 1)[-1]) from None
    except StoreError as exc:
        raise ApiError(507, "write_failed", str(exc)) from None
    ingest.admit(device_id)
    if dev is not None:
        store.update_device(
            DeviceUpdate(
                id=dev.id,
                transport=dev.transport,
                name=entry.name or None,
                attrs={**dev.attrs, "room": entry.room},
            )
        )
    await store.flush()
    after = await store.device(device_id)
    keyed = keyed_devices(svc.config.ble)
    return json_response(
        {
            "status": "ok",
            "id": device_id,
            "name": entry.name,
            "room": entry.room,
            "device": None if after is None else device_json(after, keyed=keyed),
        }
    )


async def forget(request: http.Request) -> http.Response:
    """Delete a device's record, values and history; ``?ignore=true`` keeps it out."""
    _svc, store, ingest, directory = _parts(request)
    device_id = device_id_of(request)
    ignore = request.query.get("ignore", "").lower() in ("1", "true", "yes")
    dev = await store.device(device_id)
    if dev is None:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    if dev.transport is Transport.GPIO:
        raise ApiError(
            409,
            "configured_device",
            "a GPIO device comes from the config: remove it from [[gpio.devices]] and reload",
        )
    try:
        directory.forget(device_id, ignore=ignore)
    except StoreError as exc:
        raise ApiError(507, "write_failed", str(exc)) from None
    await store.flush()
    async with store.transaction() as db:
        for table, column in (("devices", "id"), ("state", "device_id"), ("history", "device_id")):
            await db.execute(f"DELETE FROM {table} WHERE {column} = ?", (device_id,))  # noqa: S608 - fixed names
    ingest.forgotten(device_id)
    request.app[RECENT].forget(device_id)
    return json_response(
        {
            "status": "ok",
            "id": device_id,
            "ignored": ignore,
            # a device still in range and admitted comes back when it speaks again
            "admitted": directory.admits(device_id),
        }
    )


async def seen(request: http.Request) -> http.Response:
    """BLE devices in range that are not ours (seen, not added)."""
    svc, _store, _ingest, directory = _parts(request)
    return json_response({"join": svc.config.ble.join, "seen": directory.strangers()})


async def allow(request: http.Request) -> http.Response:
    """``{"id": "ble-..."}`` (or a MAC): let a BLE device join."""
    _svc, _store, ingest, directory = _parts(request)
    body = await _body(request)
    raw = body.get("id")
    device_id = ble_device_id(raw) if isinstance(raw, str) else None
    if device_id is None or set(body) != {"id"}:
        raise ApiError(422, "invalid_body", 'expected {"id": "ble-<12 hex>" or a MAC}')
    try:
        directory.allow(device_id)
    except StoreError as exc:
        raise ApiError(507, "write_failed", str(exc)) from None
    ingest.admit(device_id)
    return json_response({"status": "ok", "id": device_id, "ts": time.time()})


#: Button and other events kept per device for ``migw device`` and the dashboard (since the
#: service started: the store keeps readings, not events, as history).
RECENT_EVENTS = 20
#: Devices whose events are kept at most (the least recently active are dropped first).
RECENT_DEVICES = 1024


#: One kept event, packed: seq, wall time, button (:data:`_NO_BUTTON`: none), and the numbers
#: of its event, action and source names (:attr:`RecentEvents._names`).
_PACKED = struct.Struct("<qdqIII")
_NO_BUTTON = -(2**63)


class RecentEvents:
    """The last events of each device, from the store's commits.

    Kept packed (36 bytes an event, in one ``bytes`` per device, in a plain dict ordered
    from the least to the most recently active device; the event, action and source names,
    a few dozen from the drivers' tables, numbered once) and serialised on request: instead
    of a dict per event (~0.4 kB) and a deque per device."""

    def __init__(self) -> None:
        self._by_device: dict[str, bytes] = {}
        self._numbers: dict[str, int] = {}
        self._names: list[str] = []

    def _number(self, name: str) -> int:
        number = self._numbers.get(name)
        if number is None:
            number = self._numbers[name] = len(self._names)
            self._names.append(name)
        return number

    def __call__(self, commit: Commit) -> None:
        by_device, number = self._by_device, self._number
        for e in commit.events:
            button = _NO_BUTTON if e.button is None else e.button
            packed = _PACKED.pack(
                e.seq, e.stamp.wall, button, number(e.event), number(e.action), number(e.source)
            )
            kept = by_device.pop(e.device_id, b"")  # re-inserted last: the most recent
            by_device[e.device_id] = (kept + packed)[-_PACKED.size * RECENT_EVENTS :]
            if len(by_device) > RECENT_DEVICES:
                del by_device[next(iter(by_device))]

    def of(self, device_id: str) -> list[dict[str, Any]]:
        """The device's events as :func:`~gateway.api.serialize.event_json` shows them."""
        names = self._names
        return [
            stored_event_json(
                device_id,
                seq,
                names[event],
                names[action],
                None if button == _NO_BUTTON else button,
                ts,
                names[source],
            )
            for seq, ts, button, event, action, source in _PACKED.iter_unpack(
                self._by_device.get(device_id, b"")
            )
        ]

    def forget(self, device_id: str) -> None:
        self._by_device.pop(device_id, None)


RECENT: http.AppKey[RecentEvents] = http.AppKey("recent_events", RecentEvents)


async def device_events(request: http.Request) -> http.Response:
    """The device's last events (newest last) since the service started."""
    _svc, store, _ingest, _directory = _parts(request)
    device_id = device_id_of(request)
    if await store.device(device_id) is None:
        raise ApiError(404, "unknown_device", f"no device {device_id!r}")
    return json_response({"device": device_id, "events": request.app[RECENT].of(device_id)})


async def _follow_commits(app: http.Application) -> AsyncIterator[None]:
    store = app[SERVICE].store
    unsubscribe = store.subscribe(app[RECENT]) if store is not None else None
    yield
    if unsubscribe is not None:
        unsubscribe()


def setup(app: http.Application) -> None:
    """The recent events the device endpoints answer from, following the store's commits
    while the app runs (the routes are in :data:`gateway.api.app.ROUTES`)."""
    app[RECENT] = RecentEvents()
    app.cleanup_ctx.append(_follow_commits)
