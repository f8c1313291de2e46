"""A bluetoothd stand-in for python-dbusmock, as much of BlueZ as bleak's scanner uses.

Run by tests/bluez.py as ``python3 -m dbusmock --template tests/bluez_mock.py`` on a private
dbus-daemon (the system python with Debian's python3-dbusmock; this file is not imported by
the test process). Written for these tests after dbusmock's own ``bluez5`` template, which
bleak cannot use as it is (its devices have no ``ServiceData`` as ``a{sv}`` and adverts,
discovery filters and advertisement monitors are not modelled).

What it models, after BlueZ's doc/org.bluez.Adapter.rst and AdvertisementMonitor*.rst:

* ``org.bluez.Adapter1`` per adapter: ``Powered``, ``Discovering``, ``Roles``;
  ``StartDiscovery`` (``NotReady`` while powered off, ``InProgress`` when already started),
  ``StopDiscovery`` (``Failed`` when not started), ``SetDiscoveryFilter`` (known keys only,
  else ``InvalidArguments``), ``GetDiscoveryFilters``.
* ``org.bluez.AdvertisementMonitorManager1`` (unless loaded with ``{"monitors": false}``,
  an old BlueZ or one without ``--experimental``): ``RegisterMonitor``/``UnregisterMonitor``,
  ``SupportedMonitorTypes`` = ``["or_patterns"]``. Adverts reach a monitor only if one of
  its ``Patterns`` (read from the client's monitor object, as BlueZ does) matches the
  advert's service-data AD structure (type 0x16).
* Devices ``org.bluez.Device1`` with ``Address``, ``Name``, ``RSSI``, ``ServiceData``
  (``a{sv}`` of ``ay``) and ``UUIDs``: added with ``InterfacesAdded`` on first sight, then
  updated with ``PropertiesChanged``; an advert is delivered only while the adapter is
  powered and discovering or a monitor matches it.

Test controls, interface ``org.bluez.Mock`` on ``/``: ``AddAdapter(name)``,
``RemoveAdapter(name)`` (``InterfacesRemoved``), ``SetPowered(name, on)``
(``PropertiesChanged``), ``Advertise(adapter, address, rssi, name, service_data)`` ->
delivered?, ``State(adapter)`` -> discovering, monitors, filter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import dbus
import dbus.service
from dbusmock import OBJECT_MANAGER_IFACE, mockobject

BUS_NAME = "org.bluez"
MAIN_OBJ = "/"
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

MOCK_IFACE = "org.bluez.Mock"
ADAPTER_IFACE = "org.bluez.Adapter1"
MONITOR_MANAGER_IFACE = "org.bluez.AdvertisementMonitorManager1"
MONITOR_IFACE = "org.bluez.AdvertisementMonitor1"
DEVICE_IFACE = "org.bluez.Device1"
AD_SERVICE_DATA16 = 0x16
FILTER_KEYS = {"UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern"}

_options = {"monitors": True}

#: A monitor's or-pattern: (start offset, AD type, content).
Pattern = tuple[int, int, bytes]
#: Service data as D-Bus gives it (``a{say}``): UUID -> bytes as a sequence of ints.
ServiceData = Mapping[str, Sequence[int]]


_F = TypeVar("_F", bound=Callable[..., object])


def _mock_method(in_signature: str, out_signature: str) -> Callable[[_F], _F]:
    """``dbus.service.method`` on the control interface (it marks and returns the function
    itself; dbus-python has no type information, so say so here once)."""
    decorator: Callable[[_F], _F] = dbus.service.method(
        MOCK_IFACE, in_signature=in_signature, out_signature=out_signature
    )
    return decorator


def _error(name: str, text: str) -> dbus.exceptions.DBusException:
    return dbus.exceptions.DBusException(text, name="org.bluez.Error." + name)


def _changed(obj: mockobject.DBusMockObject, iface: str, props: Mapping[str, object]) -> None:
    obj.EmitSignal(dbus.PROPERTIES_IFACE, "PropertiesChanged", "sa{sv}as", [iface, props, []])


def load(mock: mockobject.DBusMockObject, parameters: dict[str, Any]) -> None:
    """``parameters``: the JSON object given to ``--parameters``."""
    _options["monitors"] = bool(parameters.get("monitors", True))
    mock.monitors = {}
    for name in parameters.get("adapters", ["hci0"]):
        AddAdapter(mock, name)


# --- adapter methods ---------------------------------------------------------------------


def _adapter_path(adapter: mockobject.DBusMockObject) -> str:
    return str(adapter.__dbus_object_path__)


def StartDiscovery(adapter: mockobject.DBusMockObject) -> None:
    props = adapter.props[ADAPTER_IFACE]
    if not props["Powered"]:
        raise _error("NotReady", "Resource Not Ready")
    if props["Discovering"]:
        raise _error("InProgress", "Operation already in progress")
    props["Discovering"] = dbus.Boolean(True, variant_level=1)
    _changed(adapter, ADAPTER_IFACE, {"Discovering": dbus.Boolean(True, variant_level=1)})


def StopDiscovery(adapter: mockobject.DBusMockObject) -> None:
    props = adapter.props[ADAPTER_IFACE]
    if not props["Discovering"]:
        raise _error("Failed", "No discovery started")
    props["Discovering"] = dbus.Boolean(False, variant_level=1)
    _changed(adapter, ADAPTER_IFACE, {"Discovering": dbus.Boolean(False, variant_level=1)})


def SetDiscoveryFilter(
    adapter: mockobject.DBusMockObject, discovery_filter: Mapping[str, object]
) -> None:
    unknown = set(discovery_filter) - FILTER_KEYS
    if unknown:
        raise _error("InvalidArguments", "unknown filter keys: " + ", ".join(sorted(unknown)))
    adapter.discovery_filter = dict(discovery_filter)


def GetDiscoveryFilters(adapter: mockobject.DBusMockObject) -> list[str]:
    return sorted(FILTER_KEYS)


def RegisterMonitor(adapter: mockobject.DBusMockObject, path: str) -> None:
    monitors = mockobject.objects["/"].monitors.setdefault(_adapter_path(adapter), {})
    if str(path) in monitors:
        raise _error("AlreadyExists", "Already Exists")
    monitors[str(path)] = None  # patterns are read from the client on first use


def UnregisterMonitor(adapter: mockobject.DBusMockObject, path: str) -> None:
    monitors = mockobject.objects["/"].monitors.get(_adapter_path(adapter), {})
    if str(path) not in monitors:
        raise _error("DoesNotExist", "Does Not Exist")
    del monitors[str(path)]


# --- test controls -----------------------------------------------------------------------


@_mock_method("s", "s")
def AddAdapter(self: mockobject.DBusMockObject, name: str) -> str:
    path = "/org/bluez/" + name
    props = {
        "Address": dbus.String("00:1A:7D:DA:71:0" + name[-1], variant_level=1),
        "AddressType": dbus.String("public", variant_level=1),
        "Name": dbus.String("migw-test", variant_level=1),
        "Alias": dbus.String("migw-test", variant_level=1),
        "Powered": dbus.Boolean(True, variant_level=1),
        "Discovering": dbus.Boolean(False, variant_level=1),
        "Discoverable": dbus.Boolean(False, variant_level=1),
        "Pairable": dbus.Boolean(False, variant_level=1),
        "Roles": dbus.Array(["central", "peripheral"], signature="s", variant_level=1),
        "UUIDs": dbus.Array([], signature="s", variant_level=1),
    }
    self.AddObject(
        path,
        ADAPTER_IFACE,
        props,
        [
            ("StartDiscovery", "", "", StartDiscovery),
            ("StopDiscovery", "", "", StopDiscovery),
            ("SetDiscoveryFilter", "a{sv}", "", SetDiscoveryFilter),
            ("GetDiscoveryFilters", "", "as", GetDiscoveryFilters),
        ],
    )
    adapter = mockobject.objects[path]
    adapter.discovery_filter = {}
    interfaces = {ADAPTER_IFACE: props}
    if _options["monitors"]:
        manager_props = {
            "SupportedMonitorTypes": dbus.Array(["or_patterns"], signature="s", variant_level=1),
            "SupportedFeatures": dbus.Array([], signature="s", variant_level=1),
        }
        adapter.AddProperties(MONITOR_MANAGER_IFACE, manager_props)
        adapter.AddMethods(
            MONITOR_MANAGER_IFACE,
            [
                ("RegisterMonitor", "o", "", RegisterMonitor),
                ("UnregisterMonitor", "o", "", UnregisterMonitor),
            ],
        )
        interfaces[MONITOR_MANAGER_IFACE] = manager_props
    self.monitors[path] = {}
    self.EmitSignal(
        OBJECT_MANAGER_IFACE, "InterfacesAdded", "oa{sa{sv}}", [dbus.ObjectPath(path), interfaces]
    )
    return path


@_mock_method("s", "")
def RemoveAdapter(self: mockobject.DBusMockObject, name: str) -> None:
    """The adapter goes away (unplugged): its devices first, then itself, as BlueZ does."""
    path = "/org/bluez/" + name
    for child in [p for p in mockobject.objects if p.startswith(path + "/")]:
        self.RemoveObject(child)
        self.EmitSignal(
            OBJECT_MANAGER_IFACE,
            "InterfacesRemoved",
            "oas",
            [dbus.ObjectPath(child), [DEVICE_IFACE]],
        )
    interfaces = [ADAPTER_IFACE] + ([MONITOR_MANAGER_IFACE] if _options["monitors"] else [])
    self.RemoveObject(path)
    self.monitors.pop(path, None)
    self.EmitSignal(
        OBJECT_MANAGER_IFACE, "InterfacesRemoved", "oas", [dbus.ObjectPath(path), interfaces]
    )


@_mock_method("sb", "")
def SetPowered(self: mockobject.DBusMockObject, name: str, powered: bool) -> None:
    adapter = mockobject.objects["/org/bluez/" + name]
    props = adapter.props[ADAPTER_IFACE]
    changed = {"Powered": dbus.Boolean(powered, variant_level=1)}
    if not powered and props["Discovering"]:
        changed["Discovering"] = dbus.Boolean(False, variant_level=1)
    props.update(changed)
    _changed(adapter, ADAPTER_IFACE, changed)


@_mock_method("s", "a{sv}")
def State(self: mockobject.DBusMockObject, name: str) -> dict[str, object]:
    path = "/org/bluez/" + name
    adapter = mockobject.objects[path]
    return {
        "Discovering": adapter.props[ADAPTER_IFACE]["Discovering"],
        "Powered": adapter.props[ADAPTER_IFACE]["Powered"],
        "Monitors": dbus.UInt32(len(self.monitors.get(path, {}))),
        "FilterKeys": dbus.Array(sorted(adapter.discovery_filter), signature="s"),
    }


def _patterns(self: mockobject.DBusMockObject, path: str) -> list[Pattern]:
    """A monitor's or-patterns, read from whichever client exports it (as BlueZ reads the
    monitor object of the registering application)."""
    bus = dbus.SystemBus()
    names = bus.call_blocking(
        "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames",
        "", [],
    )  # fmt: skip
    for name in names:
        if not name.startswith(":") or name == bus.get_unique_name():
            continue
        try:
            patterns = bus.call_blocking(
                name, path, dbus.PROPERTIES_IFACE, "Get", "ss", [MONITOR_IFACE, "Patterns"],
                timeout=2.0,
            )  # fmt: skip
        except dbus.exceptions.DBusException:
            continue
        return [(int(s), int(t), bytes(bytearray(c))) for s, t, c in patterns]
    return []


def _matches(patterns: Sequence[Pattern], service_data: ServiceData) -> bool:
    for uuid, data in service_data.items():
        uuid16 = int(uuid[4:8], 16).to_bytes(2, "little") if len(uuid) == 36 else b""
        ad = uuid16 + bytes(bytearray(data))
        for start, ad_type, content in patterns:
            if ad_type == AD_SERVICE_DATA16 and ad[start : start + len(content)] == content:
                return True
    return False


@_mock_method("ssnsa{say}", "b")
def Advertise(
    self: mockobject.DBusMockObject,
    adapter_name: str,
    address: str,
    rssi: int,
    name: str,
    service_data: ServiceData,
) -> bool:
    """One advert heard by ``adapter_name``; returns whether a client could see it."""
    path = "/org/bluez/" + adapter_name
    adapter = mockobject.objects.get(path)
    if adapter is None or not adapter.props[ADAPTER_IFACE]["Powered"]:
        return False
    monitors = self.monitors.get(path, {})
    for monitor in list(monitors):
        if monitors[monitor] is None:
            monitors[monitor] = _patterns(self, monitor)
    heard = bool(adapter.props[ADAPTER_IFACE]["Discovering"]) or any(
        _matches(p, service_data) for p in monitors.values() if p
    )
    if not heard:
        return False
    sd = dbus.Dictionary(
        {
            str(u): dbus.Array(bytearray(d), signature="y", variant_level=1)
            for u, d in service_data.items()
        },
        signature="sv",
    )
    changed = {
        "RSSI": dbus.Int16(rssi, variant_level=1),
        "ServiceData": dbus.Dictionary(sd, signature="sv", variant_level=1),
    }
    dev_path = path + "/dev_" + address.replace(":", "_")
    device = mockobject.objects.get(dev_path)
    if device is None:
        props = {
            "Address": dbus.String(address, variant_level=1),
            "AddressType": dbus.String("public", variant_level=1),
            "Alias": dbus.String(name or address.replace(":", "-"), variant_level=1),
            "Adapter": dbus.ObjectPath(path, variant_level=1),
            "Paired": dbus.Boolean(False, variant_level=1),
            "Connected": dbus.Boolean(False, variant_level=1),
            "UUIDs": dbus.Array(sorted(service_data), signature="s", variant_level=1),
            **changed,
        }
        if name:
            props["Name"] = dbus.String(name, variant_level=1)
        self.AddObject(dev_path, DEVICE_IFACE, props, [])
        self.EmitSignal(
            OBJECT_MANAGER_IFACE,
            "InterfacesAdded",
            "oa{sa{sv}}",
            [dbus.ObjectPath(dev_path), {DEVICE_IFACE: props}],
        )
    else:
        device.props[DEVICE_IFACE].update(changed)
        _changed(device, DEVICE_IFACE, changed)
    return True
