"""The MQTT wire contract as pure code: batch encoding, re-stamping, refusals, commands,
topics and Home Assistant discovery payloads (no broker)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.metrics import METRICS, ha_device_class
from gateway.model import Device, DeviceStatus, Transport, Value
from gateway.store import OUTBOX_EVENT, OUTBOX_READING, OutboxRow, event_body, reading_body
from gateway.sync import ha
from gateway.sync.outbox import is_priority
from gateway.sync.payload import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_ZLIB,
    REFUSALS,
    ClockFix,
    Refusal,
    RowError,
    Topics,
    classify_refusal,
    decode_batch,
    encode_batch,
    is_corrupt,
    item_json,
    result_payload,
    split_command_body,
)
from tests.helpers import event, reading

BOOT = "00000000-0000-0000-0000-000000000001"
FIX = ClockFix(BOOT, None)
T = Topics("migw", "gw1")


def _row(seq: int, body: str, kind: int = OUTBOX_READING, synced: bool = True) -> OutboxRow:
    return OutboxRow(seq, kind, "d", body, 1700000000.5, BOOT, 12.25, synced, len(body) + 48)


def test_reading_item_is_spliced_from_the_stored_body() -> None:
    body = reading_body(reading("gpio-a", "temperature", 21.5, "°C"))
    assert json.loads(item_json(_row(7, body), FIX)) == {
        "seq": 7,
        "device": "gpio-a",
        "metric": "temperature",
        "value": 21.5,
        "unit": "°C",
        "ts": 1700000000.5,
        "boot": BOOT,
        "mono": 12.25,
    }


def test_unitless_reading_gets_unit_null_and_event_has_no_unit() -> None:
    body = reading_body(reading("gpio-door", "opening", True, None))
    assert json.loads(item_json(_row(1, body), FIX))["unit"] is None
    ev = json.loads(item_json(_row(2, event_body(event("gpio-b")), OUTBOX_EVENT), FIX))
    assert ev == {
        "seq": 2,
        "device": "gpio-b",
        "event": "button",
        "action": "single",
        "ts": 1700000000.5,
        "boot": BOOT,
        "mono": 12.25,
    }


def test_restamp_rules() -> None:
    synced = _row(1, "{}", synced=True)
    unsynced = _row(2, "{}", synced=False)
    other = OutboxRow(3, 0, "d", "{}", 5.0, "other-boot", 3.0, False, 50)
    assert ClockFix(BOOT, 1000.0).restamp(synced) == (1700000000.5, True)
    assert ClockFix(BOOT, 1000.0).restamp(unsynced) == (1012.25, True)
    assert ClockFix(BOOT, None).restamp(unsynced) == (1700000000.5, False)
    assert ClockFix(BOOT, 1000.0).restamp(other) == (5.0, False)
    assert json.loads(item_json(other, ClockFix(BOOT, 1000.0)))["clock"] == "unsynced"


def test_corrupt_body_raises_our_error() -> None:
    with pytest.raises(RowError):
        item_json(_row(1, "not json"), FIX)
    broken_event = _row(2, '{"device":"d",}', OUTBOX_EVENT)
    with pytest.raises(RowError):
        item_json(broken_event, FIX)
    good_event = _row(3, event_body(event("gpio-b")), OUTBOX_EVENT)
    assert [is_corrupt(r) for r in (_row(1, "not json"), broken_event, good_event)] == [
        True,
        True,
        False,
    ]


values = st.one_of(
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
names = st.text(min_size=1, max_size=20)


@given(
    st.lists(
        st.tuples(
            names,
            names,
            values,
            st.one_of(st.none(), st.sampled_from(["°C", "%", 'a"b'])),
            st.booleans(),
        ),
        min_size=0,
        max_size=30,
    ),
    st.booleans(),
    st.booleans(),
)
def test_batch_round_trip(
    items: list[tuple[str, str, Value, str | None, bool]], compress: bool, backlog: bool
) -> None:
    rows = []
    expected_readings = []
    expected_events = []
    for i, (dev, metric, value, unit, is_event) in enumerate(items, start=1):
        if is_event:
            body = json.dumps(
                {"device": dev, "event": "button", "action": metric}, separators=(",", ":")
            )
            rows.append(_row(i, body, OUTBOX_EVENT))
            expected_events.append({"seq": i, "device": dev, "event": "button", "action": metric})
        else:
            r = reading(dev, metric, value, unit)
            rows.append(_row(i, reading_body(r)))
            expected_readings.append(
                {"seq": i, "device": dev, "metric": metric, "value": value, "unit": unit}
            )
    enc = encode_batch("gw1", 9, rows, FIX, backlog=backlog, compress=compress)
    assert enc.content_type in (CONTENT_TYPE_JSON, CONTENT_TYPE_ZLIB)
    batch = decode_batch(enc.payload, enc.content_type)
    assert decode_batch(enc.payload) == batch  # sniffing works without a content type
    assert (batch.gateway, batch.batch, batch.backlog) == ("gw1", 9, backlog)
    stamp = {"ts": 1700000000.5, "boot": BOOT, "mono": 12.25}
    assert list(batch.readings) == [{**e, **stamp} for e in expected_readings]
    assert list(batch.events) == [{**e, **stamp} for e in expected_events]
    assert batch.seqs() == list(range(1, len(items) + 1))


@given(st.binary(max_size=200))
def test_decode_random_bytes_raises_value_error_only(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_batch(data)


def test_every_refusal_code_is_classified() -> None:
    for code, refusal in REFUSALS.items():
        assert code >= 0x80
        assert classify_refusal(code) is refusal
    assert classify_refusal(0x00) is None
    assert classify_refusal(0x10) is None  # no matching subscribers: delivered
    assert classify_refusal(0xA0) is Refusal.MESSAGE


def test_command_bodies() -> None:
    assert split_command_body(b'{"switch": true}') == ({"switch": True}, None)
    assert split_command_body(b"toggle") == ("toggle", None)
    assert split_command_body(b'{"command":"pulse","seconds":2,"id":"r-1"}') == (
        {"command": "pulse", "seconds": 2},
        "r-1",
    )
    for bad in (b"", b"\xff", b"{nope", b'{"switch": true, "id": {"x": 1}}'):
        with pytest.raises(ValueError):
            split_command_body(bad)


@given(st.binary(max_size=100))
def test_command_parsing_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        split_command_body(data)


def test_result_payload() -> None:
    assert json.loads(result_payload("gpio-r", "ok", state={"switch": True}, request_id="7")) == {
        "device": "gpio-r",
        "status": "ok",
        "ok": True,
        "state": {"switch": True},
        "id": "7",
    }


def test_topics() -> None:
    assert T.telemetry == "migw/gw1/telemetry"
    assert T.status == "migw/gw1/status"
    assert T.commands == "migw/gw1/cmd/#"
    assert T.parse_command_topic("migw/gw1/cmd/gpio-relay/set") == "gpio-relay"
    for bad in (
        "migw/gw1/cmd/a/b/set",
        "migw/gw1/cmd//set",
        "migw/gw2/cmd/a/set",
        "migw/gw1/cmd/a",
    ):
        assert T.parse_command_topic(bad) is None
    assert T.result("x") == "migw/gw1/result/x"  # outside cmd/#: never read back


def test_priority_rows() -> None:
    assert is_priority(OUTBOX_EVENT, "{}")
    assert is_priority(OUTBOX_READING, '{"device":"d","metric":"water_leak","value":true}')
    assert not is_priority(OUTBOX_READING, '{"device":"d","metric":"temperature","value":1}')
    assert not is_priority(OUTBOX_READING, "garbage")


DEV = Device(
    id="a4:c1:38:00:11:22",
    transport=Transport.BLE,
    model="LYWSD03MMC",
    name="Kitchen",
    manufacturer="Xiaomi",
    status=DeviceStatus.OK,
)


def test_sensor_discovery_payload() -> None:
    d = ha.metric_entity(T, DEV, "temperature", commandable=False)
    assert d.topic == "homeassistant/sensor/migw_gw1/a4_c1_38_00_11_22_temperature/config"
    assert d.config == {
        "name": "Temperature",
        "unique_id": "migw_gw1_a4_c1_38_00_11_22_temperature",
        "state_topic": "migw/gw1/state/a4:c1:38:00:11:22",
        "device": {
            "identifiers": ["migw_gw1_a4_c1_38_00_11_22"],
            "name": "Kitchen",
            "via_device": "migw_gw1",
            "model": "LYWSD03MMC",
            "manufacturer": "Xiaomi",
        },
        "availability": [
            {
                "topic": "migw/gw1/status",
                "payload_available": "online",
                "payload_not_available": "offline",
            },
            {
                "topic": "migw/gw1/availability/a4:c1:38:00:11:22",
                "payload_available": "online",
                "payload_not_available": "offline",
            },
        ],
        "availability_mode": "all",
        "value_template": '{{ value_json["temperature"] }}',
        "unit_of_measurement": "°C",
        "device_class": "temperature",
        "state_class": "measurement",
    }


def test_every_metric_has_a_discovery_entity() -> None:
    for name, m in METRICS.items():
        d = ha.metric_entity(T, DEV, name, commandable=False)
        component = d.topic.split("/")[1]
        assert component == ("binary_sensor" if m.kind == "bool" else "sensor")
        assert d.config.get("device_class") == ha_device_class(m)
        assert d.config.get("unit_of_measurement") == m.unit
        assert d.config.get("state_class") == m.state_class
        assert d.config["unique_id"].endswith(name)
        assert (d.config.get("entity_category") == "diagnostic") is m.diagnostic


def test_gateway_entity_and_availability() -> None:
    gw = ha.gateway_entity(T)
    assert gw.topic == "homeassistant/binary_sensor/migw_gw1/status/config"
    assert gw.config["state_topic"] == "migw/gw1/status"
    assert ha.availability_payload(DeviceStatus.UNAVAILABLE) == b"offline"
    assert ha.availability_payload(DeviceStatus.OK) == b"online"
    # event entities and payloads: tests/test_sync_ha.py


def _pairs(text: str) -> list[tuple[str, Any]]:
    """The key/value pairs of a JSON object, duplicates kept."""
    pairs: list[tuple[str, Any]] = json.loads(text, object_pairs_hook=list)
    return pairs


def test_event_properties_never_duplicate_a_published_key() -> None:
    """Event properties are merged into the event object; one named like a key the event
    or the splicing sets (seq, ts, boot, mono, clock, device, event, action, button) is
    dropped, even from a body the store did not filter (an older outbox row)."""
    body = (
        '{"device":"zb-1","event":"dimmer","action":"rotate","button":2,"steps":3,'
        '"seq":99,"ts":1.0,"boot":"x","mono":2.0,"clock":"ok","device":"evil",'
        '"event":"e","action":"a","button":7,"direction":"left","raw":{"a":[1,{"b":2}]}}'
    )
    item = item_json(_row(5, body, OUTBOX_EVENT, synced=False), FIX)
    assert _pairs(item) == [
        ("seq", 5),
        ("device", "zb-1"),
        ("event", "dimmer"),
        ("action", "rotate"),
        ("button", 2),
        ("steps", 3),
        ("direction", "left"),
        ("raw", [("a", [1, [("b", 2)]])]),
        ("ts", 1700000000.5),
        ("boot", BOOT),
        ("mono", 12.25),
        ("clock", "unsynced"),
    ]


@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(
                    ["seq", "ts", "boot", "mono", "clock", "device", "event", "action", "button"]
                ),
                st.text(max_size=8),
            ),
            values,
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_spliced_events_never_have_duplicate_keys(
    props: list[tuple[str, Any]], synced: bool
) -> None:
    head = '{"device":"d","event":"button","action":"single"'
    body = head + "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in props) + "}"
    keys = [k for k, _ in _pairs(item_json(_row(1, body, OUTBOX_EVENT, synced), FIX))]
    assert len(keys) == len(set(keys))
    assert keys[:4] == ["seq", "device", "event", "action"]
