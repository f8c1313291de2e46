"""Every metric a decoder can emit is in gateway.metrics.METRICS, with the right kind.

The names come from the decoders themselves: BTHome's object table, every MiBeacon object
driven through every product with several payloads per valid length, the other BLE formats
fed seeded random payloads, and the Zigbee interpreter driven with reports of every
attribute it knows (standard clusters, Xiaomi TLV tags, model-specific meanings) for every
model. A metric missing from METRICS would reach Home Assistant as a text sensor without
unit, device class or state class; a wrong kind would be dropped by ingest.
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Iterable
from pathlib import Path

import pytest

from drivers.ble import bthome, mibeacon, mibeacon_encode
from drivers.ble.decoder import FORMATS
from drivers.ble.errors import BleParseError
from drivers.ble.products import PRODUCTS
from drivers.errors import ParseError
from drivers.zigbee.zcl import clusters as cl
from drivers.zigbee.zcl import xiaomi
from drivers.zigbee.zcl.interpret import Interpreter
from gateway.metrics import METRICS, OLDEST_HA, ha_device_class, metric_def, version_tuple

MAC = "A4:C1:38:00:00:01"
#: name -> Python types seen
Seen = dict[str, set[type]]


def _add(seen: Seen, values: Iterable[tuple[str, object]]) -> None:
    for name, value in values:
        seen.setdefault(name, set()).add(type(value))


def bthome_metrics() -> Seen:
    seen: Seen = {}
    for obj in bthome.OBJECTS.values():
        if obj.kind in (bthome.Kind.NUMBER, bthome.Kind.BINARY, bthome.Kind.TIMESTAMP):
            data = bytes([obj.oid]) + bytes([1] * obj.length)
        elif obj.kind in (bthome.Kind.TEXT, bthome.Kind.RAW):
            data = bytes([obj.oid, 2]) + b"ok"
        else:
            continue
        decoded = bthome.decode_v2(bthome.encode_v2(data, mac=MAC), MAC, None)
        _add(seen, decoded.values.items())
        assert obj.name in decoded.values, obj
    return seen


def mibeacon_metrics() -> Seen:
    rng = random.Random(7)
    seen: Seen = {}
    for pid in PRODUCTS:
        for oid, od in mibeacon.OBJECTS.items():
            for n in sorted(od.lengths)[:8]:
                payloads = [bytes(n), bytes([1] * n), bytes([0xFF] * n), bytes([2] + [0] * (n - 1))]
                payloads += [bytes(rng.randrange(256) for _ in range(n)) for _ in range(3)]
                for data in payloads:
                    frame = mibeacon_encode.encode(
                        product_id=pid, frame_counter=1, mac=MAC, objects=[(oid, data)]
                    )
                    _add(seen, mibeacon.decode(frame, MAC, None).values.items())
    return seen


def other_ble_metrics() -> Seen:
    """pvvx/ATC, the scales and the flower pot: seeded random payloads of every length."""
    rng = random.Random(11)
    seen: Seen = {}
    skip = {"mibeacon", "bthome_v1", "bthome_v2"}
    for fdef in FORMATS.values():
        if str(fdef.format.value) in skip:
            continue
        for n in range(1, 24):
            for _ in range(300):
                data = bytes(rng.randrange(256) for _ in range(n))
                try:
                    decoded = fdef.decode(data, MAC, None)
                except (ParseError, BleParseError):
                    continue
                _add(seen, decoded.values.items())
    return seen


def _report(attr: int, type_id: int, value: bytes, tsn: int) -> bytes:
    return bytes([0x18, tsn & 0xFF, 0x0A]) + attr.to_bytes(2, "little") + bytes([type_id]) + value


def zigbee_metrics() -> Seen:
    seen: Seen = {}
    tags = set(xiaomi.COMMON_TAGS)
    for spec in xiaomi.MODELS.values():
        tags |= set(spec.tags)
    attrs: list[tuple[int, int, int, bytes]] = []
    for number in (25, 3000):  # in range for temperatures / for millivolts
        tlv = b"".join(bytes([t, 0x21]) + number.to_bytes(2, "little") for t in sorted(tags))
        attrs.append((cl.BASIC, 0xFF01, 0x42, bytes([len(tlv)]) + tlv))
    attrs += [
        (cl.ON_OFF, 0x8000, 0x20, b"\x02"),
        (cl.MULTISTATE_INPUT, 0x0055, 0x21, b"\x01\x00"),
        (cl.ANALOG_INPUT, 0x0055, 0x39, struct.pack("<f", 12.5)),
        (cl.PRESSURE, 0x0010, 0x29, b"\x10\x27"),
        (cl.IAS_ZONE, 0x0002, 0x19, b"\x0d\x00"),
        (cl.ELECTRICAL_MEASUREMENT, 0x0505, 0x21, b"\xe6\x00"),
        (cl.ELECTRICAL_MEASUREMENT, 0x0508, 0x21, b"\x10\x00"),
        (cl.ELECTRICAL_MEASUREMENT, 0x050B, 0x29, b"\x10\x00"),
        (cl.METERING, 0x0000, 0x25, b"\x10\x00\x00\x00\x00\x00"),
        (cl.METERING, 0x0400, 0x2A, b"\x10\x00\x00"),
    ]
    for cluster, attr in cl.ATTRIBUTES:
        attrs += [(cluster, attr, 0x21, b"\x10\x00"), (cluster, attr, 0x10, b"\x01")]
    it = Interpreter()
    for model in (*xiaomi.MODELS, None):
        for endpoint in (1, 2, 4):
            for n, (cluster, attr, type_id, value) in enumerate(attrs):
                res = it.interpret(
                    f"{model}-{endpoint}",
                    model,
                    cluster,
                    endpoint,
                    _report(attr, type_id, value, n),
                )
                _add(seen, res.readings)
    return seen


SOURCES = {
    "bthome": bthome_metrics,
    "mibeacon": mibeacon_metrics,
    "other_ble": other_ble_metrics,
    "zigbee": zigbee_metrics,
}
KIND_TYPES: dict[str, set[type]] = {
    "bool": {bool},
    "text": {str},
    "float": {float, int},
    "int": {int, float},
}


@pytest.mark.parametrize("source", SOURCES)
def test_every_decoder_metric_is_in_the_table(source: str) -> None:
    seen = SOURCES[source]()
    assert len(seen) >= 3, seen  # the drive reached the decoders
    missing = sorted(name for name in seen if metric_def(name) is None)
    assert missing == [], f"{source} emits metrics METRICS does not name: {missing}"
    for name, types in seen.items():
        m = metric_def(name)
        assert m is not None
        assert types <= KIND_TYPES[m.kind], (name, m.kind, types)


def test_the_table_is_consistent() -> None:
    for name, m in METRICS.items():
        assert m.name == name
        if m.kind in ("bool", "text"):
            assert m.unit is None and m.state_class is None, m
        if m.class_since:
            assert m.device_class and version_tuple(m.class_since) > version_tuple(OLDEST_HA)
    conductivity = METRICS["conductivity"]
    assert ha_device_class(conductivity) is None
    assert ha_device_class(conductivity, "2024.8") == "conductivity"
    assert metric_def("temperature_2") is METRICS["temperature"]  # a repeated BTHome object


def test_every_metric_is_documented() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text("utf-8")
    missing = [
        n
        for n in METRICS
        if not re.search(rf"^\| ({n}|[a-z0-9_]+ / {n}|{n} / [a-z0-9_]+) \|", text, re.MULTILINE)
    ]
    assert missing == [], f"not in docs/metrics.md: {missing}"
