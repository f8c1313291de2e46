"""Watches BlueZ on the D-Bus system bus for what bleak does not report to a scanner.

bleak keeps a scanner "running" when its adapter is unplugged, powered off or when
bluetoothd restarts (its advertisement monitor and discovery session are gone): no error is
raised and adverts simply stop. BlueZ announces each of these on the bus:

* ``InterfacesRemoved`` of ``org.bluez.Adapter1`` for ``/org/bluez/<adapter>``;
* ``PropertiesChanged`` of the adapter with ``Powered`` false;
* ``NameOwnerChanged`` of ``org.bluez`` (bluetoothd stopped, or restarted with a new name
  owner);
* and the bus connection itself dropping (dbus-daemon restarted).

:class:`AdapterWatch` listens for them on a connection of its own (registered before the
scanner starts, so nothing is missed) and sets :attr:`AdapterWatch.lost` with a reason;
:class:`~drivers.ble.scanner.BleScanner` then restarts scanning through its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)

BLUEZ = "org.bluez"
ADAPTER_IFACE = "org.bluez.Adapter1"
_DBUS = "org.freedesktop.DBus"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"


class AdapterWatch:
    """Reports the loss of one BlueZ adapter (or of bluetoothd) via :attr:`lost`."""

    def __init__(self, adapter: str = "hci0") -> None:
        self.adapter = adapter
        self.path = f"/org/bluez/{adapter}"
        self.lost = asyncio.Event()
        self.reason = ""
        self._bus: Any = None
        self._owner: str | None = None
        self._disconnect_task: asyncio.Task[None] | None = None

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()

    async def start(self) -> None:
        """Connect and subscribe; raises (``OSError``, ``RuntimeError`` with a reason a user
        acts on) when the bus, bluetoothd or the adapter is not there or it is off."""
        from dbus_fast import BusType
        from dbus_fast.aio import MessageBus

        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        self._bus = bus
        try:
            bus.add_message_handler(self._on_message)
            for rule in self._rules():
                await _call(bus, _DBUS, "/org/freedesktop/DBus", _DBUS, "AddMatch", "s", [rule])
            owner = await _call(
                bus, _DBUS, "/org/freedesktop/DBus", _DBUS, "GetNameOwner", "s", [BLUEZ]
            )
            self._owner = str(owner[0])
            powered = await _call(
                bus, BLUEZ, self.path, _PROPERTIES, "Get", "ss", [ADAPTER_IFACE, "Powered"]
            )
            _require_powered(self.adapter, bool(powered[0].value))
        except BaseException:
            self.close()
            raise
        self._disconnect_task = asyncio.create_task(
            self._watch_disconnect(bus), name="ble-bluez-watch"
        )

    def _rules(self) -> tuple[str, ...]:
        owner = f"member='NameOwnerChanged',arg0='{BLUEZ}'"
        removed = f"member='InterfacesRemoved',arg0path='{self.path}'"
        changed = f"member='PropertiesChanged',path='{self.path}',arg0='{ADAPTER_IFACE}'"
        return (
            f"type='signal',sender='{_DBUS}',interface='{_DBUS}',{owner}",
            f"type='signal',interface='{_OBJECT_MANAGER}',{removed}",
            f"type='signal',interface='{_PROPERTIES}',{changed}",
        )

    async def _watch_disconnect(self, bus: Any) -> None:
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()
        self._lose("the D-Bus system bus connection was lost (dbus-daemon restarted?)")

    def _on_message(self, message: Any) -> None:
        member, body = message.member, message.body
        try:
            if member == "NameOwnerChanged" and body[0] == BLUEZ:
                if not body[2]:
                    self._lose("bluetoothd stopped (org.bluez left the bus)")
                elif body[2] != self._owner:
                    self._lose("bluetoothd restarted (org.bluez has a new owner)")
            elif member == "InterfacesRemoved" and body[0] == self.path:
                if ADAPTER_IFACE in body[1]:
                    self._lose(f"adapter {self.adapter} removed (InterfacesRemoved)")
            elif (
                member == "PropertiesChanged"
                and message.path == self.path
                and body[0] == ADAPTER_IFACE
                and "Powered" in body[1]
                and not body[1]["Powered"].value
            ):
                self._lose(f"adapter {self.adapter} powered off")
        except (IndexError, KeyError, TypeError, AttributeError):  # a malformed signal
            _LOGGER.debug("ignoring a malformed BlueZ signal %s", member)

    def close(self) -> None:
        task, self._disconnect_task = self._disconnect_task, None
        if task is not None:
            task.cancel()
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()


_NO_BLUETOOTHD = "bluetoothd is not running (no org.bluez on the system bus)"
#: D-Bus errors that say what is missing, in words a user acts on.
_MISSING = {
    "org.freedesktop.DBus.Error.NameHasNoOwner": _NO_BLUETOOTHD,
    "org.freedesktop.DBus.Error.ServiceUnknown": _NO_BLUETOOTHD,
    "org.freedesktop.DBus.Error.UnknownObject": "adapter {adapter} not found in BlueZ",
    "org.freedesktop.DBus.Error.UnknownInterface": "adapter {adapter} not found in BlueZ",
    "org.freedesktop.DBus.Error.UnknownMethod": "adapter {adapter} not found in BlueZ",
}


async def _call(
    bus: Any, dest: str, path: str, iface: str, member: str, sig: str, body: list[Any]
) -> list[Any]:
    from dbus_fast import Message, MessageType

    reply = await bus.call(
        Message(
            destination=dest, path=path, interface=iface, member=member, signature=sig, body=body
        )
    )
    if reply.message_type == MessageType.ERROR:
        what = _MISSING.get(reply.error_name or "")
        if what is not None:
            adapter = path.rsplit("/", 1)[-1]
            raise RuntimeError(f"{what.format(adapter=adapter)} ({reply.error_name})")
        detail = " ".join(map(str, reply.body)).strip()
        raise RuntimeError(f"{reply.error_name}: {detail}")
    return list(reply.body)


def _require_powered(adapter: str, powered: bool) -> None:
    if not powered:
        raise RuntimeError(f"adapter {adapter} powered off")
