"""The API's JSON shapes (shared with the CLI's read-only fallback)."""

from __future__ import annotations

import pytest

from gateway.api import devices_admin
from gateway.api.devices_admin import RecentEvents
from gateway.api.serialize import (
    device_json,
    event_json,
    is_stale,
    key_status,
    keyed_devices,
    outbox_json,
    reading_json,
)
from gateway.config import BleSection, Secret
from gateway.model import Device, DeviceStatus, Event, Reading, Stamp, Transport
from gateway.store import Commit, OutboxRow, OutboxStats

NOW = 1_800_000_000.0


def ble(
    status: DeviceStatus = DeviceStatus.OK,
    *,
    last_seen: float | None = None,
    battery: float | None = None,
    rssi: int | None = None,
    sleepy: bool = False,
    attrs: dict[str, str] | None = None,
) -> Device:
    return Device(
        id="ble-a4c1381a2b3c",
        transport=Transport.BLE,
        model="LYWSD03MMC",
        name="kitchen",
        last_seen=last_seen,
        battery=battery,
        rssi=rssi,
        status=status,
        sleepy=sleepy,
        attrs=attrs or {},
    )


def test_key_status() -> None:
    keyed = keyed_devices(BleSection(keys={"A4:C1:38:1A:2B:3C": Secret("0" * 32)}))
    assert keyed == frozenset({"ble-a4c1381a2b3c"})
    assert key_status(ble(), keyed) == "ok"
    assert key_status(ble()) == "none"
    assert key_status(ble(attrs={"encrypted": "true"})) == "ok"
    assert key_status(ble(DeviceStatus.NEEDS_KEY), keyed) == "needs_key"
    assert key_status(ble(DeviceStatus.KEY_INVALID), keyed) == "key_invalid"
    gpio = Device(id="gpio-a", transport=Transport.GPIO, model="gpio-relay", name="a")
    assert key_status(gpio, frozenset({"gpio-a"})) == "none"


def test_staleness_honours_sleepy_devices() -> None:
    assert is_stale(ble(last_seen=NOW - 7200), NOW)
    assert not is_stale(ble(last_seen=NOW - 60), NOW)
    assert not is_stale(ble(last_seen=NOW - 86400, sleepy=True), NOW)
    assert is_stale(ble(DeviceStatus.UNAVAILABLE, last_seen=NOW, sleepy=True), NOW)
    assert is_stale(ble(), NOW)  # never seen


def test_device_json_is_whole() -> None:
    dev = ble(DeviceStatus.NEEDS_KEY, last_seen=NOW - 30, rssi=-70, battery=88.0)
    assert device_json(dev, NOW) == {
        "id": "ble-a4c1381a2b3c",
        "name": "kitchen",
        "room": "",
        "transport": "ble",
        "model": "LYWSD03MMC",
        "manufacturer": "",
        "status": "needs_key",
        "key_status": "needs_key",
        "last_seen": NOW - 30,
        "last_seen_age_s": 30.0,
        "battery": 88.0,
        "rssi": -70,
        "lqi": None,
        "sleepy": False,
        "stale": False,
        "attrs": {},
    }


def test_outbox_json_overlays_the_sync_agent() -> None:
    stats = OutboxStats(depth=3, bytes=300, oldest_ts=NOW - 10, oldest_seq=7, events=1)
    row = OutboxRow(
        7, 0, "gpio-a", '{"metric":"switch","value":true}', NOW - 10, "b", 1.0, True, 100
    )
    sync = {"state": "backoff", "dropped": 2, "expired": 1, "dead_letters": 0, "x": object}
    out = outbox_json(stats, row, sync, NOW)
    assert out == {
        "depth": 3,
        "bytes": 300,
        "events": 1,
        "oldest_seq": 7,
        "oldest_ts": NOW - 10,
        "oldest_age_s": 10.0,
        "dropped": 2,
        "expired": 1,
        "dead_letters": 0,
        "upstream": "backoff",
        "uplink": True,
        "source": "sync",
        "sync": {
            "state": "backoff",
            "dropped": 2,
            "expired": 1,
            "dead_letters": 0,
            "x": str(object),
        },
        "oldest": {
            "seq": 7,
            "kind": "reading",
            "device": "gpio-a",
            "ts": NOW - 10,
            "clock_synced": True,
            "body": {"metric": "switch", "value": True},
        },
    }
    assert outbox_json(stats, None, None, NOW)["upstream"] == "disabled"


STAMP = Stamp(wall=NOW, mono=12.5, boot="b", synced=True)


def press(device: str, seq: int, action: str = "single", button: int | None = 1) -> Event:
    return Event(device, "button", action, STAMP, "zigbee", button=button, seq=seq)


def test_reading_and_event_json_are_whole() -> None:
    r = Reading("gpio-a", "switch", True, None, STAMP, "gpio", seq=7)
    assert reading_json(r) == {
        "type": "reading",
        "seq": 7,
        "device": "gpio-a",
        "metric": "switch",
        "value": True,
        "unit": None,
        "ts": NOW,
        "source": "gpio",
    }
    e = Event("zigbee-1", "button", "double", STAMP, "zigbee", button=2, seq=8,
              properties=(("presses", 2),))  # fmt: skip
    assert event_json(e) == {
        "type": "event",
        "seq": 8,
        "device": "zigbee-1",
        "event": "button",
        "action": "double",
        "button": 2,
        "ts": NOW,
        "source": "zigbee",
    }


def test_recent_events_keep_the_last_of_each_device_as_event_json_shows_them() -> None:
    recent = RecentEvents()
    n = devices_admin.RECENT_EVENTS + 5
    a = [press("zigbee-a", seq) for seq in range(1, n + 1)]
    b = [press("zigbee-b", 100, "long", None)]
    recent(Commit(readings=[], events=a[:3] + b, outbox_bytes=0))
    recent(Commit(readings=[], events=a[3:], outbox_bytes=0))
    assert recent.of("zigbee-a") == [event_json(e) for e in a[-devices_admin.RECENT_EVENTS :]]
    assert recent.of("zigbee-b") == [event_json(b[0])]
    assert recent.of("zigbee-c") == []
    recent.forget("zigbee-a")
    assert recent.of("zigbee-a") == []


def test_recent_events_drop_the_least_recently_active_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(devices_admin, "RECENT_DEVICES", 2)
    recent = RecentEvents()
    for seq, device in enumerate(["zigbee-a", "zigbee-b", "zigbee-a", "zigbee-c"], 1):
        recent(Commit(readings=[], events=[press(device, seq)], outbox_bytes=0))
    # b was the least recently active when c came: a (active again after b) stays
    assert [e["seq"] for e in recent.of("zigbee-a")] == [1, 3]
    assert recent.of("zigbee-b") == []
    assert [e["seq"] for e in recent.of("zigbee-c")] == [4]
